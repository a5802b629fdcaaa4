import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli, spawnCliAndWait } from './support/cli.ts';
import { insertApp, insertVersion, databaseFingerprint, bucketFingerprint } from './support/seed.ts';
import { hasTmux, Terminal, widest } from './support/terminal.ts';
import { query } from '../src/db.ts';
import { appsInRollout } from '../src/sql/scope.ts';

const TMUX = hasTmux();
if (!TMUX && process.env.REQUIRE_SHELLS === '1') throw new Error('REQUIRE_SHELLS=1 but tmux is not installed');

/** The rendered screen of a finished command, without the line the harness adds. */
const text = (lines: string[]) => lines.join('\n');

// The operator's terminal, driven as one: a tmux pane 80 or 140 columns wide, its screen read back.
describe.skipIf(!TMUX || ON_PGLITE)("the operator's terminal", () => {
  let env: TestEnv;
  let apps: string[];
  const terminals: Terminal[] = [];
  const open = async (args: string[], columns: number, extra: NodeJS.ProcessEnv = {}) => {
    const terminal = await Terminal.start(args, { ...env.cliEnv, NO_COLOR: undefined, ...extra }, { columns });
    terminals.push(terminal);
    return terminal;
  };

  beforeAll(async () => {
    env = await createTestEnv();
    apps = [];
    for (let a = 0; a < 20; a++) {
      const app = await insertApp(env.db, `app ${a}`);
      apps.push(app);
      await query(env.db, `INSERT INTO app_files (app_id, path, content) SELECT $1::bigint, 'src/components/deeply/nested/' || i || '-component.tsx', repeat('x' || i, 800 + i * 40) FROM generate_series(1, 12) i`, [app]);
      await insertVersion(env.db, app, '1', JSON.stringify({ 'a.txt': 'y'.repeat(3000) }));
    }
  });
  afterAll(async () => {
    for (const terminal of terminals) await terminal.close();
    await env?.close();
  });

  it('every table and line fits 80 and 140 columns; off a terminal each record stays one line', async () => {
    // Something in every table: a run with history, items, sizes.
    expect((await cli(['migrate', '--yes', '--app', apps[0]], env.cliEnv)).code).toBe(0);
    for (const args of [['doctor'], ['report'], ['report', '--runs'], ['status'], ['migrate', '--dry-run'], ['verify'], ['schema'], ['reclaim', '--dry-run', '--offline']]) {
      for (const columns of [80, 140]) {
        const terminal = await open(args, columns);
        const { lines } = await terminal.exit();
        // -J joins what the terminal wrapped: a joined line wider than the pane is one it had to wrap.
        expect(widest(lines), `${args.join(' ')} at ${columns} columns:\n${text(lines)}`).toBeLessThanOrEqual(columns);
        expect(lines.length, args.join(' ')).toBeGreaterThan(2);
        await terminal.close();
      }
    }
    // Text meant to be pasted or parsed is never re-broken, even on a terminal: markdown rows stay whole.
    const markdown = await open(['report', '--format', 'markdown'], 80);
    const rows = (await markdown.exit()).lines.filter((line) => line.startsWith('|'));
    expect(rows.length).toBeGreaterThan(5);
    for (const row of rows) expect(row, row).toMatch(/\|$/);
    // A pipe gets whole records: doctor's row for the database is one line, with every cell.
    const piped = await spawnCliAndWait(['doctor'], env.cliEnv);
    expect(piped.stdout).toMatch(/^✓ +the database and the bucket are reachable with these settings +required +bucket "/m);
    expect(piped.stdout).not.toMatch(/ +$/m);
  });

  it('at 80 columns the worker table of `status` turns into key: value lines; at 140 it is a table', async () => {
    const slow = await open(['migrate', '--yes', '--app', apps[1], '--max-rate', '1'], 140);
    await slow.waitFor(/\d+\/13 rows/);
    const narrow = await open(['status'], 80);
    const { lines } = await narrow.exit();
    expect(text(lines)).toMatch(/^  worker: +\S+:\d+$/m);
    expect(text(lines)).toMatch(/^  concurrency: +16$/m);
    const wide = await open(['status'], 140);
    expect(text((await wide.exit()).lines)).toMatch(/^  worker +state +rows\/s/m);
    expect((await cli(['cancel', '--all', '--yes'], env.cliEnv)).code).toBe(0);
    expect((await slow.exit()).code).toBe(130);
  });

  it('the plan and the prompt name the database, the bucket and the rollout as K of M apps; "n" changes nothing and is no error', async () => {
    const before = await databaseFingerprint(env.db);
    const objects = await bucketFingerprint(env.store);
    const terminal = await open(['migrate', '--rollout', '50%'], 80);
    const shown = text(await terminal.waitFor(/\(y\/N\)/));
    const { selected } = await appsInRollout(env.db, 50);
    const database = new URL(env.databaseUrl).pathname.slice(1);
    expect(shown).toMatch(new RegExp(`^Database: "${database}" on 127\\.0\\.0\\.1:5432 as postgres$`, 'm'));
    expect(shown).toMatch(new RegExp(`^Bucket: +"${env.s3.bucket}" at 127\\.0\\.0\\.1:${env.s3.port}$`, 'm'));
    expect(shown).toMatch(new RegExp(`^Scope: +rollout 50% = ${selected} of 20 apps$`, 'm'));
    // The question itself names the target, not only the plan above it.
    const question = shown.slice(shown.lastIndexOf('? Upload'));
    expect(question.replace(/\s+/g, '')).toMatch(new RegExp(`ofrollout50%=${selected}of20appstobucket"${env.s3.bucket}".*indatabase"${database}"`));
    await terminal.keys('n', 'Enter');
    const { code, lines } = await terminal.exit();
    expect(code).toBe(0);
    expect(text(lines)).toMatch(/Not confirmed; nothing was changed\./);
    expect(text(lines)).not.toMatch(/error:/);
    expect(await databaseFingerprint(env.db)).toBe(before);
    expect(await bucketFingerprint(env.store)).toEqual(objects);
  });

  it('rollback and restore-version name what they act on in their questions: the app, the version, the database, the bucket', async () => {
    expect((await cli(['migrate', '--yes', '--app', apps[9]], env.cliEnv)).code).toBe(0);
    const database = new URL(env.databaseUrl).pathname.slice(1);
    const rollback = await open(['rollback', '--app', apps[9], '--purge'], 80);
    const screen = text(await rollback.waitFor(/\(y\/N\)/));
    // Broken between words, never inside one: each line break stands where a space was.
    const prompt = screen.slice(screen.lastIndexOf('? Roll back'));
    for (const line of prompt.split('\n')) expect(line.length, line).toBeLessThanOrEqual(80);
    expect(prompt.replace(/\s*\n\s*/g, ' ')).toContain(`in database "${database}" on 127.0.0.1:5432 as postgres, and delete their objects from bucket "${env.s3.bucket}" at 127.0.0.1:`);
    const asked = screen.replace(/\s+/g, '');
    expect(asked).toMatch(new RegExp(`Rollback13rowsofapp${apps[9]}tothedatabaseindatabase"${database}"on127\\.0\\.0\\.1:5432aspostgres,anddeletetheirobjectsfrombucket"${env.s3.bucket}"`));
    await rollback.keys('n', 'Enter');
    expect((await rollback.exit()).code).toBe(0);
    await query(env.db, "UPDATE app_files SET content = 'broken' || content WHERE app_id = $1 AND path LIKE '%/1-component.tsx'", [apps[9]]);
    const restore = await open(['restore-version', apps[9], '1'], 80);
    // The prompt library breaks its own long lines: compared without whitespace.
    const question = text(await restore.waitFor(/\(y\/N\)/)).replace(/\s+/g, '');
    expect(question).toMatch(new RegExp(`Restoreapp${apps[9]}toversion1\\(#\\d+\\):\\d+filechanges?,recordedasanewversion"1-restored-<itsid>"indatabase"${database}"on127\\.0\\.0\\.1:5432aspostgres\\?`));
    await restore.keys('n', 'Enter');
    expect((await restore.exit()).code).toBe(0);
  });

  it('one progress line across tables refreshes within a batch, fits 80 columns, and is cleared before the results', async () => {
    // 240 rows in one batch at 4 objects/s: a display that moved only per batch would sit at 0% for a minute.
    const terminal = await open(['migrate', '--yes', '--app', apps[2], '--app', apps[3], '--batch-size', '500', '--max-rate', '4', '--concurrency', '2'], 80);
    const seen = new Set<string>();
    await terminal.waitFor(/\d+\/26 rows/);
    const until = Date.now() + 4500;
    while (Date.now() < until) {
      const line = (await terminal.visible()).find((candidate) => /\d+\/\d+ rows/.test(candidate));
      if (line) {
        seen.add(line);
        expect(line.length).toBeLessThanOrEqual(80);
        // The overall count, formatted one way on both sides.
        expect(line).toMatch(/ \d{1,3}(,\d{3})*\/26 rows/);
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const counts = new Set([...seen].map((line) => /(\d+)\/26 rows/.exec(line)![1]));
    expect(counts.size, [...seen].join('\n')).toBeGreaterThanOrEqual(3);
    expect([...seen].some((line) => /ETA \d/.test(line)), [...seen].join('\n')).toBe(true);
    const { code, lines } = await terminal.exit();
    expect(code).toBe(0);
    // Cleared: no bar is left on the screen, and the table's rule is whole.
    expect(text(lines)).not.toMatch(/█|░/);
    expect(lines.some((line) => /^─+( +─+)+$/.test(line))).toBe(true);
    expect(text(lines)).toMatch(/^Done: 26 rows now hybrid in /m);
  });

  it('Ctrl-C: said above the progress line, the result table intact, and the last line is the command that goes on', async () => {
    const terminal = await open(['migrate', '--yes', '--app', apps[4], '--app', apps[5], '--max-rate', '3'], 80);
    await terminal.waitFor(/\d+\/26 rows/);
    await terminal.keys('C-c');
    const { code, lines } = await terminal.exit();
    expect(code).toBe(130);
    const screen = text(lines);
    expect(screen).toMatch(/^(\^C)?Interrupted: stopping after the batches in flight \(Ctrl-C again: stop at once\)$/m);
    expect(lines.some((line) => /^─+( +─+)+$/.test(line)), screen).toBe(true);
    expect(screen).not.toMatch(/█|░/);
    expect(screen).toMatch(/^Interrupted: \d+ rows? now hybrid in /m);
    expect(screen).not.toMatch(/refused or failed above/);
    expect(lines.at(-2)).toBe('To go on where it stopped:');
    expect(lines.at(-1)).toBe(`  overskill-storage migrate --yes --app ${apps[4]} --app ${apps[5]} --max-rate 3`);
    expect(widest(lines)).toBeLessThanOrEqual(80);
  });

  it('pause and cancel from another terminal are told in the running one: who, when, and what to type next', async () => {
    const terminal = await open(['migrate', '--yes', '--app', apps[6], '--app', apps[7], '--max-rate', '3', '--batch-size', '5'], 80);
    await terminal.waitFor(/\d+\/26 rows/);
    expect((await cli(['pause', '--all', '--yes', '--operator', 'alice'], env.cliEnv)).code).toBe(0);
    const paused = text(await terminal.waitFor(/paused at \d\d:\d\d:\d\d UTC/));
    const runId = /Run (\d+) paused at/.exec(paused)![1];
    expect(paused.replace(/\n/g, ' ')).toMatch(new RegExp(`Run ${runId} paused at \\d\\d:\\d\\d:\\d\\d UTC \\(paused by alice@[^)]+\\); nothing is written while it waits\\. To go on: \`overskill-storage resume ${runId}\``));
    // The progress line says so instead of a rate.
    await terminal.waitFor(/\d+\/26 rows · paused \(paused by alice/);
    expect((await cli(['cancel', runId, '--yes', '--operator', 'bob'], env.cliEnv)).code).toBe(0);
    const { code, lines } = await terminal.exit();
    expect(code).toBe(130);
    const screen = text(lines).replace(/\n/g, ' ');
    expect(screen).toMatch(new RegExp(`Run ${runId} was cancelled at \\d\\d:\\d\\d:\\d\\d UTC \\(cancelled by bob@`));
    expect(screen).not.toMatch(/refused or failed above/);
    expect(lines.at(-2)).toBe('To go on where it stopped:');
    expect(lines.at(-1)).toBe(`  overskill-storage migrate --yes --app ${apps[6]} --app ${apps[7]} --max-rate 3 --batch-size 5`);
  });

  it('doctor is one screen at 80 columns: what was checked, the database and the store apart, a short name per check; what fails is said in full', async () => {
    const healthy = await open(['doctor'], 80);
    const { lines, code } = await healthy.exit();
    expect(code).toBe(0);
    expect(lines.length, text(lines)).toBeLessThanOrEqual(40);
    expect(text(lines)).toMatch(/^Database: ".+" on 127\.0\.0\.1:\d+ as \w+$/m);
    expect(text(lines)).toMatch(/^ +database +seen$/m);
    expect(text(lines)).toMatch(/^✓ +encoding +UTF8$/m);
    expect(text(lines)).toMatch(/^ +store +seen$/m);
    expect(text(lines)).toMatch(/^✓ +PUT If-None-Match: \* +refused: 412 PreconditionFailed$/m);
    expect(text(lines)).toMatch(/^Everything this tool relies on holds here\.$/m);
    // The same database, every transaction read-only: the short row is marked, and the sentence below says it all.
    const readOnly = await open(['doctor'], 80, { PGOPTIONS: '-c default_transaction_read_only=on' });
    const failing = await readOnly.exit();
    expect(failing.code).toBe(1);
    expect(text(failing.lines)).toMatch(/^✗ +writable +transaction_read_only is on$/m);
    expect(text(failing.lines)).toMatch(/Not safe for this tool: 1 required property does not hold\./);
    expect(text(failing.lines).replace(/\s+/g, ' ')).toMatch(/the database accepts writes \(not a standby, transactions not read-only\): without it, every command that moves rows refuses/);
  });

  it('off a terminal the output is what scripts read: start and finish lines, no bar, no colour, one line per record', async () => {
    const run = await spawnCliAndWait(['migrate', '--yes', '--app', apps[8]], { ...env.cliEnv, NO_COLOR: undefined });
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/^migrate files: started \(12 rows, [\d.]+ KiB\)$/m);
    expect(run.stderr).toMatch(/^migrate files: done, 12 rows, [\d.]+ KiB in /m);
    // eslint-disable-next-line no-control-regex
    expect(run.stdout + run.stderr).not.toMatch(/\u001b\[|█/);
    expect(run.stdout).toMatch(/^files +12 +12 +[\d.]+ KiB +0 +0 +0$/m);
    expect(run.stdout).toMatch(/^Done: 13 rows now hybrid in /m);
  });
});

describe('CLI conventions', () => {
  it('--version names the build and the runtime; -v says what it connects to; -q says nothing but errors', async () => {
    const version = await spawnCliAndWait(['--version'], {});
    expect(version.stdout).toMatch(/^overskill-storage \d+\.\d+\.\d+\nbuild: +.+\nruntime: node v\d+\.\d+\.\d+ on linux x64\n$/);
    const env = await createTestEnv();
    try {
      const verbose = await cli(['status', '-v'], env.cliEnv);
      expect(verbose.code).toBe(0);
      expect(verbose.stderr).toMatch(/connected to database "oss_test_\w+" on 127\.0\.0\.1:5432 as postgres, at most \d+ connections \(\d+ ms\)/);
      const quiet = await cli(['migrate', '--yes', '-q'], env.cliEnv);
      expect(quiet.code).toBe(0);
      expect(quiet.stderr).toBe('');
    } finally {
      await env.close();
    }
  });

  it('help leads with usage and examples, lists the global options once, and one option has one default everywhere', async () => {
    const help = await cli(['restore-version', '--help'], {});
    const sections = help.stdout.split(/\n(?=\S)/).map((section) => section.split('\n')[0]);
    expect(sections[0]).toMatch(/^Usage: overskill-storage restore-version/);
    expect(sections.indexOf('Examples:')).toBeLessThan(sections.indexOf('Options:'));
    expect(help.stdout).not.toMatch(/--database-url <url>/);
    expect(help.stdout).toMatch(/Global options \(any command\): --database-url/);
    // --concurrency: 16 wherever a command takes it.
    for (const command of ['migrate', 'verify', 'finalize', 'rollback', 'restore-version', 'export', 'cleanup', 'maintain', 'prune-versions']) {
      expect((await cli([command, '--help'], {})).stdout.replace(/\s+/g, ' '), command).toMatch(/--concurrency <n> [^-]*\(default: 16\)/);
    }
  });

  it('completion scripts for bash, zsh and fish name every command and its options, and load in their shells', async () => {
    const bash = await cli(['completion', 'bash'], {});
    expect(bash.code).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), 'oss-completion-'));
    const saved = (name: string, script: string) => {
      writeFileSync(join(dir, name), script);
      return join(dir, name);
    };
    const bashFile = saved('overskill-storage.bash', bash.stdout);
    const complete = (line: string) =>
      execFileSync('bash', ['-c', `source ${bashFile}; COMP_WORDS=(${line}); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); _overskill_storage; echo "\${COMPREPLY[@]}"`]).toString().trim().split(' ');
    expect(complete('overskill-storage mig')).toEqual(['migrate']);
    expect(complete('overskill-storage migrate --roll')).toEqual(['--rollout']);
    expect(complete('overskill-storage --bucket b restore-version --conc')).toEqual(['--concurrency']);
    expect(complete('overskill-storage co')).toEqual(['completion']);
    for (const shell of ['zsh', 'fish'] as const) {
      const script = await cli(['completion', shell], {});
      expect(script.code).toBe(0);
      expect(script.stdout).toMatch(/migrate/);
      expect(script.stdout).toMatch(/rollout/);
      let available = true;
      try {
        execFileSync(shell, ['--version'], { stdio: 'ignore' });
      } catch {
        available = false;
      }
      if (!available && process.env.REQUIRE_SHELLS === '1') throw new Error(`REQUIRE_SHELLS=1 but ${shell} is not installed`);
      if (!available) continue;
      // Each shell parses its script without running it.
      const file = saved(`completion.${shell}`, script.stdout);
      execFileSync(shell, shell === 'zsh' ? ['-n', file] : ['--no-execute', file]);
    }
    const fish = await cli(['completion', 'fish'], {});
    expect(fish.stdout).toMatch(/^complete -c overskill-storage -n '__fish_seen_subcommand_from migrate' -l rollout -d '/m);
    const zsh = await cli(['completion', 'zsh'], {});
    expect(zsh.stdout).toMatch(/^ {4}'migrate:Upload eligible contents'$/m);
    const unknown = await cli(['completion', 'powershell'], {});
    expect(unknown.code).toBe(2);
    rmSync(dir, { recursive: true, force: true });
  });

  it('report --runs gives times with their zone, and counts agree with their nouns', async () => {
    const env = await createTestEnv();
    try {
      const app = await insertApp(env.db);
      await query(env.db, "INSERT INTO app_files (app_id, path, content) VALUES ($1, 'one.txt', repeat('z', 2000))", [app]);
      const migrate = await cli(['migrate', '--yes'], env.cliEnv);
      expect(migrate.stdout).toMatch(/^Done: 1 row now hybrid in /m);
      const runs = await cli(['report', '--runs'], env.cliEnv);
      expect(runs.stdout).toMatch(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/);
      const detail = await cli(['report', '--runs', '--items', /^\s*(\d+)\s+migrate/m.exec(runs.stdout)![1]], env.cliEnv);
      expect(detail.stdout).toMatch(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/);
      const all = migrate.stdout + migrate.stderr + runs.stdout + detail.stdout;
      expect(all).not.toMatch(/\w\(s\)/);
    } finally {
      await env.close();
    }
  });
});
