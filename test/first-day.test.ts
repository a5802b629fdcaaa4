import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli, spawnCli } from './support/cli.ts';
import { insertApp, insertFile, insertVersion, text } from './support/seed.ts';
import { query } from '../src/db.ts';
import { formatDuration } from '../commands/support/render/format.ts';

/** What a new operator trips on in a first day with the tool, each once. */
describe("a new operator's first day", () => {
  let env: TestEnv;

  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  it("`export APP --version 1.1.0 --out DIR`, the help's own example, exports that version, not the tool's version", async () => {
    const app = await insertApp(env.db, 'versioned');
    await insertFile(env.db, app, 'src/now.ts', 'export const now = 2;\n');
    await insertVersion(env.db, app, '1.1.0', JSON.stringify({ 'src/then.ts': 'export const then = 1;\n' }));
    const out = mkdtempSync(join(tmpdir(), 'oss-first-day-'));
    try {
      const run = await cli(['export', app, '--version', '1.1.0', '--out', out], env.cliEnv);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).not.toMatch(/^overskill-storage \d/m);
      expect(readdirSync(join(out, 'src'))).toEqual(['then.ts']);
      expect(readFileSync(join(out, 'src', 'then.ts'), 'utf8')).toBe('export const then = 1;\n');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
    // Before any command, --version is still the tool's own.
    expect((await cli(['--version'], env.cliEnv)).stdout).toMatch(/^overskill-storage \d+\.\d+\.\d+/);
  });

  it.skipIf(ON_PGLITE)('`pause --all` without a terminal and without --yes says the change is not made yet, refuses (exit 2), and the run goes on', async () => {
    const app = await insertApp(env.db, 'paused');
    for (let i = 0; i < 20; i++) await insertFile(env.db, app, `src/p${i}.ts`, text(3000 + i, `p${i} `));
    const child = spawnCli(['migrate', '--yes', '--app', app, '--concurrency', '1', '--batch-size', '1', '--max-rate', '2'], env.cliEnv);
    const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
    try {
      let live = false;
      for (let waited = 0; waited < 30_000 && !live; waited += 250) {
        live = ((await cli(['status', '--json'], env.cliEnv)).json().active ?? []).some((run: { run: { state: string } }) => run.run.state === 'running');
        if (!live) await new Promise((r) => setTimeout(r, 250));
      }
      expect(live).toBe(true);
      const pause = await cli(['pause', '--all'], env.cliEnv);
      expect(pause.code).toBe(2);
      expect(pause.stdout).toMatch(/^run \d+: running → pausing, if confirmed$/m);
      expect(pause.stdout).not.toMatch(/^run \d+: running → pausing$/m);
      expect(pause.stderr).toMatch(/--yes/);
      const [{ state }] = await query<{ state: string }>(env.db, "SELECT state FROM overskill_storage_runs WHERE state NOT IN ('done', 'failed', 'interrupted', 'cancelled') ORDER BY id DESC LIMIT 1");
      expect(state).toBe('running');
    } finally {
      await cli(['cancel', '--all', '--yes'], env.cliEnv);
      await exited;
    }
  });

  it('the installed package carries docs/, which the README and the commands cite', () => {
    const packed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { encoding: 'utf8' })) as { files: { path: string }[] }[];
    const files = packed[0].files.map((file) => file.path);
    for (const doc of readdirSync('docs').filter((name) => name.endsWith('.md'))) expect(files).toContain(`docs/${doc}`);
    const readme = readFileSync('README.md', 'utf8');
    for (const [, link] of readme.matchAll(/\]\((docs\/[^)#]+)/g)) expect(files, link).toContain(link);
  });

  it.skipIf(ON_PGLITE)("maintain's log says how many objects its deep sample hashed, and reclaim counts tables as tables", async () => {
    const app = await insertApp(env.db, 'sampled');
    for (let i = 0; i < 40; i++) await insertFile(env.db, app, `src/s${i}.ts`, text(2000 + i, `s${i} `));
    expect((await cli(['migrate', '--yes', '--app', app], env.cliEnv)).code).toBe(0);
    const maintain = await cli(['maintain', '--dry-run', '--deep-sample', '10'], env.cliEnv);
    expect(maintain.code, maintain.stderr).toBe(0);
    const line = /verify objects \(deep\): done, (\d+) stored rows? in today's sample, (\d+) downloaded and hashed/.exec(maintain.stderr);
    expect(line, maintain.stderr).not.toBeNull();
    expect(Number(line![2])).toBe(Number(line![1]));
    expect(Number(line![1])).toBeLessThan(40);
    const reclaim = await cli(['reclaim', '--offline', '--tables', 'files', '--yes'], env.cliEnv);
    expect(reclaim.code, reclaim.stderr).toBe(0);
    expect(reclaim.stderr).toMatch(/reclaim app_files: started \(1 table, /);
    expect(reclaim.stderr).not.toMatch(/\(1 row, /);
  });

  it('`rollback --purge` after a plain rollback deletes the objects that rollback left, after a question; a dry run says it will', async () => {
    const app = await insertApp(env.db, 'purge-later');
    for (let i = 0; i < 5; i++) await insertFile(env.db, app, `src/r${i}.ts`, text(3000 + i, `r${i} `));
    expect((await cli(['migrate', '--yes', '--app', app], env.cliEnv)).code).toBe(0);
    expect((await cli(['rollback', '--yes', '--app', app], env.cliEnv)).code).toBe(0);
    const objects = async () => {
      const keys: string[] = [];
      for await (const object of env.store.list(`apps/${app}/`)) keys.push(object.key);
      return keys;
    };
    expect(await objects()).toHaveLength(5);
    const dry = await cli(['rollback', '--purge', '--dry-run', '--app', app], env.cliEnv);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/A real run deletes the objects of ours that no row names under this scope/);
    const refused = await cli(['rollback', '--purge', '--app', app], env.cliEnv);
    expect(refused.code).toBe(2);
    expect(await objects()).toHaveLength(5);
    const purge = await cli(['rollback', '--purge', '--yes', '--app', app], env.cliEnv);
    expect(purge.code, purge.stderr).toBe(0);
    expect(purge.stdout).toMatch(/Nothing to roll back[\s\S]*5 objects \([^)]*\) no row names any more[\s\S]*Objects deleted: 5\./);
    expect(await objects()).toEqual([]);
    const [{ rows }] = await query<{ rows: number }>(env.db, "SELECT count(*)::int AS rows FROM app_files WHERE app_id = $1 AND storage_location = 'database' AND content IS NOT NULL", [app]);
    expect(rows).toBe(5);
  });

  it('durations are said as people say them: `cleanup --grace 1m` is older than 1 min', () => {
    expect(formatDuration(60_000)).toBe('1 min');
    expect(formatDuration(90_000)).toBe('1 min 30 s');
    expect(formatDuration(24 * 3_600_000)).toBe('24 h');
  });
});
