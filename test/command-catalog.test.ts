import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { Help } from 'commander';
import { CATALOG } from '../commands/catalog.ts';
import { BIN, cli } from './support/cli.ts';

const run = async () => undefined;
const runtime = { streams: { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: {} }, cwd: process.cwd(), signal: new AbortController().signal };

describe('the command catalog', () => {
  it('names every command as its module builds it: the help term of a command not loaded is the loaded one', async () => {
    expect(new Set(CATALOG.map((entry) => entry.name)).size).toBe(CATALOG.length);
    const help = new Help();
    for (const entry of CATALOG) {
      const command = (await entry.load())(runtime, run);
      expect(command.name(), entry.name).toBe(entry.name);
      expect([entry.name, entry.usage].filter(Boolean).join(' '), entry.name).toBe(help.subcommandTerm(command));
      expect(command.description(), `${entry.name} sets its description in the catalog only`).toBe('');
    }
  });

  it('the top-level help lists every command with its usage and description; a command named loads with its options', async () => {
    const top = await cli(['--help'], {});
    expect(top.code).toBe(0);
    for (const entry of CATALOG) {
      const term = [entry.name, entry.usage.replace(/^\[options\] ?/, '')].filter(Boolean).join(' ');
      expect(top.stdout, entry.name).toMatch(new RegExp(`^  ${term.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s+${entry.description.slice(0, 30).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'));
    }
    const migrate = await cli(['migrate', '--help'], {});
    expect(migrate.stdout).toMatch(/--key-layout <layout>/);
    expect(migrate.stdout).toContain(CATALOG.find((entry) => entry.name === 'migrate')!.description.slice(0, 40));
    const typo = await cli(['migrat'], {});
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/Did you mean migrate\?/);
  });

  it('the built CLI loads a command module only when the command line names it', async () => {
    // A loader hook that prints every module the process loads, on stderr.
    const dir = await mkdtemp(join(tmpdir(), 'catalog-'));
    try {
      const hook = join(dir, 'hook.mjs');
      await writeFile(hook, 'export async function load(url, context, next) { process._rawDebug(url); return next(url, context); }\n');
      const register = join(dir, 'register.mjs');
      await writeFile(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hook).href)});\n`);
      const loaded = async (args: string[]) => {
        const { stderr } = await promisify(execFile)(process.execPath, ['--import', register, BIN, ...args], { env: { ...process.env, NO_COLOR: '1' } });
        return stderr
          .split('\n')
          .map((line) => /\/dist\/commands\/([a-z-]+)\.js$/.exec(line)?.[1])
          .filter((name): name is string => Boolean(name) && name !== 'main' && name !== 'program' && name !== 'catalog');
      };
      expect(await loaded(['--version'])).toEqual([]);
      expect(await loaded(['--help'])).toEqual([]);
      expect(await loaded(['migrate', '--help'])).toEqual(['migrate']);
      expect(await loaded(['help', 'pause'])).toEqual(['run-control']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
