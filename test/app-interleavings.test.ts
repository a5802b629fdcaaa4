import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { insertApp, insertFile, text } from './support/seed.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { R2Emulation } from '../src/local/r2-emulation.ts';
import { PlanApp, RUBY_APP } from './support/plan-app.ts';
import { query } from '../src/db.ts';
import { sha256Hex } from '../src/hashing.ts';

/**
 * Invariant 3 under ActiveRecord's partial writes, every interleaving, deterministically. The app is the
 * plan's own Ruby model code (test/app/plan_models.rb): `AppFile.find`, then `content=` (which uploads), then
 * `save!`, which writes only the attributes that changed against the row as it was loaded. For each command
 * that flips rows, each branch of `content=` (database below 1 KiB, hybrid to 10 KiB, r2 above) and each
 * row state the command starts from, the app loads the row before the command starts or while the command
 * holds it (claimed, its object request held at the proxy, not yet flipped), and saves while the command
 * holds it or after it ended. Then the command runs again, and the plan's reader must return the app's last
 * content, or, where ActiveRecord raised, the content before.
 */
const BRANCHES = { database: 500, hybrid: 5_000, r2: 20_000 } as const;
type Branch = keyof typeof BRANCHES;
type RowState = 'database' | 'stale-hybrid' | 'hybrid' | 'r2';

interface Scenario {
  name: string;
  args: string[];
  /** The states of the rows the command finds. */
  states: RowState[];
}

const SCENARIOS: Scenario[] = [
  { name: 'migrate', args: ['migrate'], states: ['database'] },
  { name: 'migrate --refresh-stale', args: ['migrate', '--refresh-stale'], states: ['stale-hybrid'] },
  { name: 'finalize', args: ['finalize'], states: ['hybrid'] },
  { name: 'rollback', args: ['rollback'], states: ['r2', 'hybrid'] },
  { name: 'rollback --keep-hybrid', args: ['rollback', '--keep-hybrid'], states: ['r2'] },
  { name: 'rollback --purge', args: ['rollback', '--purge'], states: ['r2', 'hybrid'] },
];

type Timing = 'load before, save while held' | 'load before, save after' | 'load while held, save while held' | 'load while held, save after';
const TIMINGS: Timing[] = ['load before, save while held', 'load before, save after', 'load while held, save while held', 'load while held, save after'];

/** Sequences of commands between one load and its save: a row loaded before a whole phase. */
const SEQUENCES: { start: RowState; commands: string[][] }[] = [
  { start: 'database', commands: [['migrate'], ['finalize']] },
  { start: 'hybrid', commands: [['finalize'], ['rollback']] },
  { start: 'hybrid', commands: [['finalize'], ['rollback', '--keep-hybrid']] },
  { start: 'r2', commands: [['rollback'], ['migrate']] },
  { start: 'r2', commands: [['rollback'], ['migrate'], ['rollback', '--purge']] },
  { start: 'r2', commands: [['rollback', '--keep-hybrid'], ['rollback']] },
  { start: 'r2', commands: [['rollback', '--keep-hybrid'], ['migrate', '--refresh-stale']] },
];

describe.skipIf(ON_PGLITE || !RUBY_APP.available)("every interleaving of the plan's Ruby models (ActiveRecord partial writes) with each flipping command", () => {
  let env: TestEnv;
  let r2: R2Emulation;
  let toolProxy: S3Proxy;
  let appProxy: S3Proxy;
  let app: PlanApp;
  let toolEnv: NodeJS.ProcessEnv;
  let serial = 0;

  beforeAll(async () => {
    env = await createTestEnv();
    r2 = new R2Emulation(env.s3.barePort);
    toolProxy = await new S3Proxy(env.s3.barePort, env.s3.bucket, r2).start();
    appProxy = await new S3Proxy(env.s3.barePort, env.s3.bucket, r2).start();
    toolEnv = { ...env.cliEnv, R2_ENDPOINT: toolProxy.endpoint };
    app = new PlanApp({ databaseUrl: env.databaseUrl, endpoint: appProxy.endpoint, bucket: env.s3.bucket, accessKeyId: env.s3.accessKeyId, secretAccessKey: env.s3.secretAccessKey });
  });
  afterAll(async () => {
    await app?.close();
    await toolProxy?.stop();
    await appProxy?.stop();
    await env?.close();
  });

  const tool = async (args: string[], appId: string) => {
    const run = await cli([...args, '--yes', '--json', '--app', appId, '--batch-size', '100', '--request-timeout', '10s'], toolEnv);
    expect([0, 1], `${args.join(' ')}: ${run.stderr}`).toContain(run.code);
    return run;
  };

  /** Runs the tool with its first object request held at the proxy, and `during` run while it is held. */
  async function holding(args: string[], appId: string, during: () => Promise<void>): Promise<void> {
    let arrived!: () => void;
    const atGate = new Promise<void>((resolve) => (arrived = resolve));
    let open!: () => void;
    const opened = new Promise<void>((resolve) => (open = resolve));
    toolProxy.clearFaults();
    toolProxy.inject((request) => request.key.startsWith('apps/') && (request.method === 'PUT' || request.method === 'GET'), { kind: 'gate', arrived, opened });
    const running = tool(args, appId);
    // A run that stops moving leaves what each side last sent in the log.
    const watchdog = setTimeout(() => {
      // eslint-disable-next-line no-console
      console.log(`still running after 60 s: ${args.join(' ')}\n  tool: ${JSON.stringify(toolProxy.seen.slice(-12))}\n  app: ${JSON.stringify(appProxy.seen.slice(-4))}\n  writes: ${JSON.stringify(r2.journal.slice(-8))}`);
    }, 60_000);
    void running.finally(() => clearTimeout(watchdog));
    await atGate;
    await during();
    open();
    await running;
    toolProxy.clearFaults();
  }

  /** Rows of one app brought into `state` by the tool itself (and, for stale-hybrid, by pre-plan code). */
  async function rowsIn(state: RowState, count: number): Promise<{ appId: string; ids: string[] }> {
    const appId = await insertApp(env.db, `interleave-${serial++}`);
    const ids: string[] = [];
    for (let i = 0; i < count; i++) ids.push(await insertFile(env.db, appId, `${i % 2 ? '/' : ''}src/row ${i}.tsx`, text(12_000 + i, `${appId}:${i}:seed `)));
    if (state !== 'database') await tool(['migrate'], appId);
    if (state === 'r2') await tool(['finalize'], appId);
    if (state === 'stale-hybrid') await query(env.db, "UPDATE app_files SET content = content || ' (edited by old code)' WHERE app_id = $1", [appId]);
    const [{ n }] = await query<{ n: number }>(env.db, 'SELECT count(*)::int AS n FROM app_files WHERE app_id = $1 AND storage_location = $2', [appId, state === 'stale-hybrid' ? 'hybrid' : state]);
    expect(n, `setup of ${state} rows`).toBe(count);
    return { appId, ids };
  }

  /** What the plan's reader returns for each row, against what the app last wrote successfully. */
  async function expectAppContent(expected: Map<string, string>, label: string): Promise<void> {
    const lost: string[] = [];
    for (const [id, hash] of expected) {
      const read = await app.read(id);
      if (read.sha256 !== hash) {
        const [row] = await query(env.db, 'SELECT storage_location, r2_object_key, content_hash, octet_length(content) AS bytes FROM app_files WHERE id = $1', [id]);
        lost.push(`#${id}: reads ${read.sha256?.slice(0, 8) ?? 'nil'}, the app last wrote ${hash.slice(0, 8)}; row ${JSON.stringify(row)}`);
      }
    }
    expect(lost, label).toEqual([]);
  }

  /**
   * One command against rows in each starting state, one row per state and branch: the app's slots load
   * and save at the moments `timing` names. Returns the content each row must read as afterwards.
   */
  async function interleave(scenario: Scenario, timing: Timing): Promise<void> {
    const rows: { id: string; branch: Branch; state: RowState; appId: string }[] = [];
    const appIds: string[] = [];
    for (const state of scenario.states) {
      const made = await rowsIn(state, 3);
      appIds.push(made.appId);
      (Object.keys(BRANCHES) as Branch[]).forEach((branch, index) => rows.push({ id: made.ids[index], branch, state, appId: made.appId }));
    }
    expect(new Set(appIds).size).toBe(appIds.length);
    const expected = new Map<string, string>();
    const load = async () => {
      for (const row of rows) await app.load(`r${row.id}`, row.id);
    };
    const assignAndSave = async () => {
      for (const row of rows) {
        const content = text(BRANCHES[row.branch], `${timing} ${scenario.name} ${row.branch} #${row.id} `);
        await app.assign(`r${row.id}`, content);
        const saved = await app.save(`r${row.id}`);
        if (saved.saved) expected.set(row.id, sha256Hex(content));
        else {
          // ActiveRecord refused the save (the app sees it): the row must read as it did before.
          expect(saved.error, `${row.id}: ${saved.message}`).toBe('ActiveRecord::StaleObjectError');
        }
      }
    };
    for (const row of rows) expected.set(row.id, (await app.read(row.id)).sha256!);
    if (timing.startsWith('load before')) await load();
    // The tool's first object request is held: its batch is claimed and not flipped while the app acts.
    const args = [...scenario.args, ...appIds.slice(1).flatMap((id) => ['--app', id])];
    await holding(args, appIds[0], async () => {
      if (timing.startsWith('load while held')) await load();
      if (timing.endsWith('save while held')) await assignAndSave();
    });
    if (timing.endsWith('save after')) await assignAndSave();
    // The tool again: what it left, or what the app's save left, must come out readable as the app's.
    await tool(args, appIds[0]);
    await expectAppContent(expected, `${scenario.name}, ${timing}`);
    const verify = await cli(['verify', '--json', ...appIds.flatMap((id) => ['--app', id])], toolEnv);
    expect(verify.json().problems, `${scenario.name}, ${timing}: verify after the rerun`).toEqual([]);
    expect(verify.code).toBe(0);
  }

  for (const scenario of SCENARIOS) {
    it(`${scenario.name}: every branch, loaded before or while the command holds the row, saved while it holds it or after`, async () => {
      for (const timing of TIMINGS) await interleave(scenario, timing);
    }, 240_000);
  }

  /** The state a command's rows start from, for a row that only paces it (its object request is the one held). */
  const PACER: Record<string, RowState> = { migrate: 'database', finalize: 'hybrid', rollback: 'r2' };

  it('a row loaded before a whole phase (several commands), saved after it or while its last command holds the row', async () => {
    for (const sequence of SEQUENCES) {
      for (const during of [false, true]) {
        const rows: { id: string; branch: Branch }[] = [];
        const made = await rowsIn(sequence.start, 3);
        (Object.keys(BRANCHES) as Branch[]).forEach((branch, index) => rows.push({ id: made.ids[index], branch }));
        for (const row of rows) await app.load(`s${row.id}`, row.id);
        const last = sequence.commands[sequence.commands.length - 1];
        for (const command of sequence.commands.slice(0, -1)) await tool(command, made.appId);
        const expected = new Map<string, string>();
        const label = `loaded as ${sequence.start}, then ${sequence.commands.map((c) => c.join(' ')).join(' → ')}, saved ${during ? `while ${last.join(' ')} held it` : 'after'}`;
        const save = async () => {
          for (const row of rows) {
            const content = text(BRANCHES[row.branch], `${label} ${row.branch} #${row.id} `);
            await app.assign(`s${row.id}`, content);
            const saved = await app.save(`s${row.id}`);
            expected.set(row.id, saved.saved ? sha256Hex(content) : (await app.read(row.id)).sha256!);
          }
        };
        if (during) {
          const pacer = await rowsIn(last.includes('--refresh-stale') ? 'stale-hybrid' : PACER[last[0]], 1);
          await holding([...last, '--app', pacer.appId], made.appId, save);
        } else {
          await tool(last, made.appId);
          await save();
        }
        await tool(last, made.appId);
        await expectAppContent(expected, label);
        const verify = await cli(['verify', '--json', '--app', made.appId], toolEnv);
        expect(verify.json().problems, `${label}: verify after the rerun`).toEqual([]);
      }
    }
  }, 240_000);

  it("the plan's Ruby models racing every flipping command, with a request's time between load and save", async () => {
    const seed = Number(process.env.RACE_SEED ?? Math.floor(Math.random() * 1_000_000));
    const made = await rowsIn('database', 24);
    const cycle = [['migrate'], ['finalize'], ['rollback', '--keep-hybrid'], ['rollback'], ['migrate'], ['finalize'], ['rollback', '--purge'], ['migrate', '--refresh-stale']];
    const writer = app.race(made.ids, 6, seed, { minRows: 11 });
    let finished = false;
    void writer.finally(() => (finished = true));
    let runs = 0;
    while (!finished) await tool(cycle[runs++ % cycle.length], made.appId);
    const report = await writer;
    // The tool once more, then every row the app saved reads as the app's last save.
    await tool(['migrate'], made.appId);
    await expectAppContent(new Map(Object.entries(report.last)), `race (RACE_SEED=${seed}): ${report.writes} writes ${JSON.stringify(report.counts)}, ${runs} tool runs`);
    expect(Object.keys(report.last).length).toBeGreaterThan(10);
    const verify = await cli(['verify', '--json', '--app', made.appId], toolEnv);
    expect(verify.json().problems, `race (RACE_SEED=${seed}): verify`).toEqual([]);
  }, 240_000);

  it("verify names a database row whose content_hash does not match its content, and the app's hash over a restored content", async () => {
    const made = await rowsIn('database', 2);
    await query(env.db, "UPDATE app_files SET content_hash = repeat('0', 64) WHERE id = $1", [made.ids[0]]);
    const restored = await rowsIn('r2', 1);
    await tool(['rollback'], restored.appId);
    await query(env.db, "UPDATE app_files SET content_hash = repeat('1', 64) WHERE id = $1", [restored.ids[0]]); // what a stale save leaves
    const verify = await cli(['verify', '--json', '--app', made.appId, '--app', restored.appId], toolEnv);
    expect(verify.code).toBe(1);
    const problems = new Map((verify.json().problems as { id: string; problem: string }[]).map((p) => [p.id, p.problem]));
    expect(problems.get(made.ids[0])).toMatch(/database content does not match content_hash/);
    expect(problems.get(restored.ids[0])).toMatch(/the app saved a new content_hash without its content/);
    expect(problems.has(made.ids[1])).toBe(false);
  });

  it('a small hybrid row is left alone when its object holds its content (migrated under a lower threshold)', async () => {
    const appId = await insertApp(env.db, 'lower-threshold');
    const id = await insertFile(env.db, appId, 'src/small.ts', text(600, 'small '));
    await tool(['migrate', '--hybrid-threshold', '100'], appId);
    for (const command of [['finalize'], ['migrate']]) {
      const run = await tool(command, appId);
      expect(run.json().result?.repairedAppWrites ?? 0, command[0]).toBe(0);
    }
    const [row] = await query<{ storage_location: string }>(env.db, 'SELECT storage_location FROM app_files WHERE id = $1', [id]);
    expect(row.storage_location).toBe('hybrid');
    expect((await cli(['verify', '--json', '--app', appId], toolEnv)).json().problems).toEqual([]);
  });

  it("the plan's reader returns every file and snapshot byte-identical after migrate and after finalize", async () => {
    const appId = await insertApp(env.db, 'reader');
    const ids = [];
    for (let i = 0; i < 6; i++) ids.push(await insertFile(env.db, appId, `src/f${i}.ts`, text([300, 4_000, 30_000][i % 3] + i, `reader ${i} ✓ `)));
    const before = new Map<string, string>();
    for (const id of ids) before.set(id, (await app.read(id)).sha256!);
    const [version] = await query<{ id: string }>(env.db, "INSERT INTO app_versions (app_id, version_number, files_snapshot) VALUES ($1, '1.0.0', $2) RETURNING id", [appId, JSON.stringify({ 'src/a.ts': text(20_000, 'snap ') })]);
    const snapshot = (await app.readSnapshot(version.id)).sha256;
    for (const command of [['migrate'], ['finalize']]) {
      await tool(command, appId);
      await expectAppContent(before, `after ${command[0]}`);
      expect((await app.readSnapshot(version.id)).sha256, `snapshot after ${command[0]}`).toBe(snapshot);
    }
    const [{ r2 }] = await query<{ r2: number }>(env.db, "SELECT count(*)::int AS r2 FROM app_files WHERE app_id = $1 AND storage_location = 'r2'", [appId]);
    expect(r2).toBe(2);
  }, 120_000);
});
