import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli, spawnCli } from './support/cli.ts';
import { insertApp } from './support/seed.ts';
import { R2Emulation } from '../src/local/r2-emulation.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { checkConsistency } from './support/consistency.ts';
import { query } from '../src/db.ts';
import { moveRun } from '../src/sql/runs.ts';
import { recordItems, runItems } from '../src/sql/run-items.ts';
import { canMove, RUN_STATES } from '../src/runs/states.ts';
import { findConflict, maskArguments, runIdentity, scopesOverlap, type RunScope } from '../src/runs/identity.ts';
import type { RunRow } from '../src/sql/runs.ts';
import { sha256Hex } from '../src/hashing.ts';
import { startWorkerSession } from '../src/workers.ts';

// A failed test must not leave its workers running (paused ones would wait for ever and block later tests).
const children = new Set<ChildProcessWithoutNullStreams>();

interface Child {
  process: ChildProcessWithoutNullStreams;
  exited: Promise<number>;
  stdout: () => string;
  stderr: () => string;
}

function start(args: string[], env: NodeJS.ProcessEnv): Child {
  const child = spawnCli(args, env) as unknown as ChildProcessWithoutNullStreams;
  children.add(child);
  child.on('exit', () => children.delete(child));
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<number>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal === 'SIGKILL' ? 137 : 1))));
  return { process: child, exited, stdout: () => stdout, stderr: () => stderr };
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// Several processes and a session per worker: real PostgreSQL only.
describe('run scopes, identities and masked arguments', () => {
  const run = (command: string, scope: RunScope, state = 'running'): RunRow =>
    ({ id: '7', command, scope, operator: 'bob', host: 'h', pid: 1, started_at: new Date(0), state, live_workers: 1 }) as unknown as RunRow;
  it('finds overlapping rows conservatively, and disjoint ones only when sure', () => {
    const all: RunScope = { tables: ['app_files', 'app_versions'] };
    expect(scopesOverlap(all, { tables: ['app_files'], appIds: ['1'] })).toBe(true);
    expect(scopesOverlap({ tables: ['app_files'], appIds: ['1', '2'] }, { tables: ['app_files'], appIds: ['2'] })).toBe(true);
    expect(scopesOverlap({ tables: ['app_files'], appIds: ['1'] }, { tables: ['app_files'], appIds: ['2'] })).toBe(false);
    expect(scopesOverlap({ tables: ['app_files'] }, { tables: ['app_versions'] })).toBe(false);
    expect(scopesOverlap({ tables: ['app_files'], shard: { index: 0, count: 2 } }, { tables: ['app_files'], shard: { index: 1, count: 2 } })).toBe(false);
    expect(scopesOverlap({ tables: ['app_files'], rolloutPercent: 10 }, { tables: ['app_files'], appIds: ['5'] })).toBe(true);
  });
  it('names the conflicting run: opposite directions on shared rows, or another key layout', () => {
    expect(findConflict('rollback', { tables: ['app_files'] }, [run('migrate', { tables: ['app_files'] })])?.sentence).toMatch(/Refusing to start rollback: run 7 \(migrate by bob on h, pid 1, .+, running\) is working on overlapping rows/);
    expect(findConflict('finalize', { tables: ['app_files'] }, [run('migrate', { tables: ['app_files'] })])).toBeDefined();
    expect(findConflict('migrate', { tables: ['app_files'] }, [run('rollback', { tables: ['app_files'] })])).toBeDefined();
    expect(findConflict('migrate', { tables: ['app_files'], keyLayout: 'path' }, [run('migrate', { tables: ['app_files'], keyLayout: 'content-addressed' })])?.sentence).toMatch(/another|content-addressed layout/);
    expect(findConflict('migrate', { tables: ['app_files'], keyLayout: 'path' }, [run('migrate', { tables: ['app_files'], keyLayout: 'path' })])).toBeUndefined();
    expect(findConflict('rollback', { tables: ['app_files'], appIds: ['1'] }, [run('migrate', { tables: ['app_files'], appIds: ['2'] })])).toBeUndefined();
    expect(findConflict('verify', { tables: ['app_files'] }, [run('migrate', { tables: ['app_files'] })])).toBeUndefined();
    // a run whose workers are all gone blocks nothing
    expect(findConflict('rollback', { tables: ['app_files'] }, [{ ...run('migrate', { tables: ['app_files'] }), live_workers: 0 }])).toBeUndefined();
  });
  it('joins processes that differ only in shard and pace', () => {
    const base = runIdentity('migrate', { tables: ['app_files', 'app_versions'], appIds: ['2', '1'] });
    expect(runIdentity('migrate', { tables: ['app_versions', 'app_files'], appIds: ['1', '2'], shard: { index: 1, count: 4 } })).toBe(base);
    expect(runIdentity('migrate', { tables: ['app_files'], appIds: ['1', '2'] })).not.toBe(base);
    expect(runIdentity('rollback', { tables: ['app_files', 'app_versions'], appIds: ['1', '2'] })).not.toBe(base);
  });
  it('masks secret-bearing flags and credentials in URLs', () => {
    expect(maskArguments(['migrate', '--database-url', 'postgres://u:pw@h/db', '--app', '3'])).toEqual(['migrate', '--database-url', '***', '--app', '3']);
    expect(maskArguments(['--database-url=postgres://u:pw@h/db'])).toEqual(['--database-url=***']);
    expect(maskArguments(['--endpoint', 'https://key:s3cret@r2.example/x'])).toEqual(['--endpoint', 'https://key:***@r2.example/x']);
    expect(maskArguments(['--db-load-probe', 'SELECT 1'])).toEqual(['--db-load-probe', 'SELECT 1']);
  });
});

describe.skipIf(ON_PGLITE)('run records: status, pause, resume, tune, cancel, history', () => {
  let env: TestEnv;
  let proxy: S3Proxy;
  let viaProxy: NodeJS.ProcessEnv;
  beforeAll(async () => {
    env = await createTestEnv();
    proxy = await new S3Proxy(env.s3.port, env.s3.bucket).start();
    viaProxy = { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint };
  });
  afterEach(() => {
    for (const child of children) child.kill('SIGKILL');
  });
  afterAll(async () => {
    await proxy?.stop();
    await env?.close();
  });

  async function appWithFiles(count: number, bytes = 1500): Promise<string> {
    const app = await insertApp(env.db);
    await query(env.db, `INSERT INTO app_files (app_id, path, content) SELECT $1::bigint, 'p/' || i || '.txt', left(repeat(md5(i::text || $1::text), 200), $3::int) FROM generate_series(1, $2::int) i`, [app, count, bytes]);
    return app;
  }
  const hybrid = async (app: string) =>
    (await query<{ n: number }>(env.db, "SELECT count(*)::int AS n FROM app_files WHERE app_id = $1 AND storage_location = 'hybrid'", [app]))[0].n;
  const claims = async () => (await query<{ n: number }>(env.db, 'SELECT count(*)::int AS n FROM overskill_storage_claims'))[0].n;
  const liveRunOf = async (app: string) =>
    (
      await query<{ id: string; workers: number; state: string }>(
        env.db,
        `SELECT r.id, r.state, (SELECT count(*)::int FROM overskill_storage_run_workers w WHERE w.run_id = r.id AND w.ended_at IS NULL) AS workers
           FROM overskill_storage_runs r WHERE r.scope -> 'appIds' ? $1 AND r.state IN ('running', 'pausing', 'paused', 'cancelling') ORDER BY r.id DESC LIMIT 1`,
        [app],
      )
    )[0];

  it('four processes join one run; pause holds them all with no claim, tune and resume change their pace, nothing is done twice', async () => {
    const app = await appWithFiles(480);
    proxy.latencyMs = 10;
    const before = proxy.seen.length;
    const args = ['migrate', '--yes', '--json', '--app', app, '--tables', 'files', '--batch-size', '8', '--concurrency', '2', '--max-rate', '15'];
    const workers = [0, 1, 2, 3].map((i) => start(i % 2 ? [...args, '--shard', `${i % 2}/2`] : args, viaProxy));
    const run = await until('four workers in one run', async () => {
      const found = await liveRunOf(app);
      return found && found.workers === 4 && (await hybrid(app)) >= 40 ? found : undefined;
    });

    const pausedAt = Date.now();
    const paused = await cli(['pause', '--yes', '--all', '--json'], env.cliEnv);
    expect(paused.code).toBe(0);
    expect(paused.json().runs).toEqual([expect.objectContaining({ runId: run.id, from: 'running', to: 'pausing', settled: 'paused' })]);
    console.log(`pause of 4 workers settled in ${Date.now() - pausedAt} ms`);
    // Paused: no claim held, and nothing moves.
    expect(await claims()).toBe(0);
    const frozen = await hybrid(app);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await hybrid(app)).toBe(frozen);
    const status = await cli(['status', '--json'], env.cliEnv);
    expect(status.code).toBe(0);
    const active = status.json().active.find((s: { run: { id: string } }) => s.run.id === run.id);
    expect(active.run.state).toBe('paused');
    expect(active.workers.filter((w: { live: boolean; state: string }) => w.live && w.state === 'paused')).toHaveLength(4);
    expect(active.waiting.join(' ')).toMatch(/paused by .+@/);
    expect(active.remaining.etaSeconds).toBeNull();
    const text = await cli(['status'], env.cliEnv);
    expect(text.stdout).toMatch(new RegExp(`run ${run.id} migrate paused`));
    expect(text.stdout).toMatch(/ETA paused/);

    // A second pause is not an error; resume with a new pace; tune again while running.
    expect((await cli(['pause', '--yes', run.id], env.cliEnv)).stdout).toMatch(/already paused/);
    const resumed = await cli(['resume', '--yes', run.id, '--max-rate', '40', '--concurrency', '3', '--json'], env.cliEnv);
    expect(resumed.code).toBe(0);
    await until('rows moving again', async () => (await hybrid(app)) > frozen);
    await until('the new pace adopted by every worker', async () => {
      const rows = await query<{ n: number }>(env.db, 'SELECT count(*)::int AS n FROM overskill_storage_run_workers WHERE run_id = $1 AND ended_at IS NULL AND max_rate = 40 AND concurrency = 3', [run.id]);
      return rows[0].n === 4 || (await liveRunOf(app)) === undefined;
    });
    const codes = await Promise.all(workers.map((w) => w.exited));
    expect(codes).toEqual([0, 0, 0, 0]);
    const uploaded = workers.map((w) => JSON.parse(w.stdout()).result.uploaded as number);
    expect(uploaded.reduce((a, b) => a + b, 0)).toBe(480);
    expect(new Set(workers.map((w) => JSON.parse(w.stdout()).result.run.id))).toEqual(new Set([run.id]));
    // Exactly once: each object was uploaded by one PUT, across pause and resume.
    const puts = new Map<string, number>();
    for (const request of proxy.seen.slice(before)) if (request.method === 'PUT' && request.key.startsWith('apps/')) puts.set(request.key, (puts.get(request.key) ?? 0) + 1);
    expect(puts.size).toBe(480);
    expect([...puts.values()].every((n) => n === 1)).toBe(true);
    await checkConsistency(env);

    const history = await cli(['report', '--runs', '--json', '--command', 'migrate'], env.cliEnv);
    const recorded = history.json().runs.find((r: { id: string }) => r.id === run.id);
    expect(recorded).toMatchObject({ command: 'migrate', state: 'succeeded', rows_done: 480, workers: 4, failed: 0, refused: 0 });
    expect(recorded.arguments).toEqual(expect.arrayContaining(['migrate', '--app', app]));
    expect(history.json().progress.some((p: { run_id: string }) => p.run_id === run.id)).toBe(true);
    const moves = await query<{ from_state: string; to_state: string }>(env.db, 'SELECT from_state, to_state FROM overskill_storage_run_transitions WHERE run_id = $1 ORDER BY at', [run.id]);
    expect(moves.map((m) => `${m.from_state}>${m.to_state}`)).toEqual(['new>running', 'running>pausing', 'pausing>paused', 'paused>running', 'running>succeeded']);
    proxy.latencyMs = 0;
  }, 180_000);

  it('a SIGKILLed worker shows as interrupted, its claims lapse, and a rerun converges', async () => {
    const app = await appWithFiles(200);
    proxy.latencyMs = 20;
    const child = start(['migrate', '--yes', '--app', app, '--tables', 'files', '--batch-size', '10', '--concurrency', '2', '--max-rate', '30'], viaProxy);
    const run = await until('the run under way', async () => {
      const found = await liveRunOf(app);
      return found && (await hybrid(app)) >= 10 ? found : undefined;
    });
    child.process.kill('SIGKILL');
    expect(await child.exited).toBe(137);
    const status = await until('the run seen as interrupted', async () => {
      const answer = await cli(['status', run.id, '--json'], env.cliEnv);
      const found = answer.json().recent[0];
      return found?.run.state === 'interrupted' ? found : undefined;
    });
    expect(status.workers[0]).toMatchObject({ state: 'interrupted', live: false });
    expect(status.run.state_reason).toMatch(/vanished/);
    // Its claims may still be in the table, but they name a dead worker: they bind nobody.
    proxy.latencyMs = 0;
    const rerun = await cli(['migrate', '--yes', '--json', '--app', app, '--tables', 'files'], env.cliEnv);
    expect(rerun.code).toBe(0);
    expect(await hybrid(app)).toBe(200);
    expect((await cli(['verify', '--app', app], env.cliEnv)).code).toBe(0);
    await checkConsistency(env);
  }, 120_000);

  it('pauses while the store is failing requests, then finishes with everything verified', async () => {
    const app = await appWithFiles(240);
    proxy.latencyMs = 10;
    // One PUT in three answered 503 for a while: the SDK retries them. Each key at most once, so that no
    // key can draw 503 on all its attempts by chance (that would be a failed item, not what this tests).
    const refusedOnce = new Set<string>();
    proxy.inject(
      (request, index) => request.method === 'PUT' && request.key.startsWith('apps/') && index % 3 === 0 && !refusedOnce.has(request.key) && Boolean(refusedOnce.add(request.key)),
      { kind: 'status', status: 503, code: 'SlowDown' },
      60,
    );
    const child = start(['migrate', '--yes', '--json', '--app', app, '--tables', 'files', '--batch-size', '8', '--concurrency', '4', '--max-rate', '40'], viaProxy);
    const run = await until('the run under way', async () => {
      const found = await liveRunOf(app);
      return found && (await hybrid(app)) >= 16 ? found : undefined;
    });
    const paused = await cli(['pause', '--yes', run.id, '--json'], env.cliEnv);
    expect(paused.json().runs[0].settled).toBe('paused');
    expect(await claims()).toBe(0);
    await checkConsistency(env);
    proxy.clearFaults();
    expect((await cli(['resume', '--yes', run.id], env.cliEnv)).code).toBe(0);
    expect(await child.exited).toBe(0);
    expect(JSON.parse(child.stdout()).result.run.state).toBe('succeeded');
    expect(await hybrid(app)).toBe(240);
    expect((await cli(['verify', '--deep', '--app', app], env.cliEnv)).code).toBe(0);
    proxy.latencyMs = 0;
  }, 120_000);

  it('cancel stops every worker after its batches (exit 130), and a rerun converges with verify clean', async () => {
    const app = await appWithFiles(300);
    proxy.latencyMs = 10;
    const args = ['migrate', '--yes', '--json', '--app', app, '--tables', 'files', '--batch-size', '10', '--concurrency', '2', '--max-rate', '20'];
    const workers = [start(args, viaProxy), start(args, viaProxy)];
    const run = await until('two workers under way', async () => {
      const found = await liveRunOf(app);
      return found && found.workers === 2 && (await hybrid(app)) >= 20 ? found : undefined;
    });
    const cancelled = await cli(['cancel', '--yes', run.id, '--json'], env.cliEnv);
    expect(cancelled.code).toBe(0);
    expect(cancelled.json().runs[0]).toMatchObject({ from: 'running', to: 'cancelling', settled: 'cancelled' });
    expect(await Promise.all(workers.map((w) => w.exited))).toEqual([130, 130]);
    expect(workers[0].stdout()).toMatch(/"cancelled"/);
    expect(await claims()).toBe(0);
    const done = await hybrid(app);
    expect(done).toBeGreaterThan(0);
    expect(done).toBeLessThan(300);
    await checkConsistency(env);
    // Cancelled is final.
    const again = await cli(['resume', '--yes', run.id], env.cliEnv);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(new RegExp(`Run ${run.id} is cancelled: it cannot become running`));
    proxy.latencyMs = 0;
    const rerun = await cli(['migrate', '--yes', '--json', '--app', app, '--tables', 'files'], env.cliEnv);
    expect(rerun.code).toBe(0);
    expect(rerun.json().result.uploaded).toBe(300 - done);
    expect((await cli(['verify', '--deep', '--app', app], env.cliEnv)).code).toBe(0);
  }, 120_000);

  it('refuses a rollback or finalize over rows a running migrate works on, and a migrate with another key layout (exit 2) unless --force', async () => {
    const app = await appWithFiles(200);
    const other = await appWithFiles(20);
    expect((await cli(['migrate', '--yes', '--app', other, '--tables', 'files'], env.cliEnv)).code).toBe(0);
    proxy.latencyMs = 10;
    const child = start(['migrate', '--yes', '--app', app, '--tables', 'files', '--batch-size', '5', '--concurrency', '1', '--max-rate', '10'], viaProxy);
    const run = await until('the run under way', async () => {
      const found = await liveRunOf(app);
      return found && (await hybrid(app)) >= 5 ? found : undefined;
    });
    // A dry run changes nothing; without --yes and without a terminal, nothing is paused either (exit 2).
    const dry = await cli(['pause', run.id, '--dry-run', '--json'], env.cliEnv);
    expect(dry.code).toBe(0);
    expect(dry.json()).toMatchObject({ dryRun: true, runs: [{ runId: run.id, from: 'running', to: 'pausing' }] });
    const unconfirmed = await cli(['pause', run.id], env.cliEnv);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toMatch(/Refusing to write without confirmation/);
    expect((await liveRunOf(app))?.state).toBe('running');
    expect((await cli(['pause', '--yes', run.id], env.cliEnv)).code).toBe(0);
    for (const command of [['rollback', '--yes'], ['finalize', '--yes'], ['rollback', '--yes', '--app', app]]) {
      const refused = await cli(command, env.cliEnv);
      expect(refused.code, command.join(' ')).toBe(2);
      expect(refused.stderr).toMatch(new RegExp(`run ${run.id} \\(migrate by .+\\) is working on overlapping rows`));
    }
    // Another app's rows do not overlap; --force overrides.
    expect((await cli(['rollback', '--yes', '--app', other, '--tables', 'files'], env.cliEnv)).code).toBe(0);
    const layout = await cli(['migrate', '--yes', '--key-layout', 'content-addressed', '--app', other, '--tables', 'files'], env.cliEnv);
    expect(layout.code).toBe(2);
    expect(layout.stderr).toMatch(new RegExp(`Refusing to start migrate with the content-addressed key layout: run ${run.id} \\(migrate .+\\) writes the path layout`));
    expect((await cli(['migrate', '--yes', '--app', other, '--tables', 'files', '--force'], env.cliEnv)).code).toBe(0);
    expect((await cli(['rollback', '--yes', '--app', other, '--tables', 'files', '--force'], env.cliEnv)).code).toBe(0);
    expect((await cli(['cancel', '--yes', run.id], env.cliEnv)).code).toBe(0);
    expect(await child.exited).toBe(130);
    proxy.latencyMs = 0;
    await checkConsistency(env);
  }, 120_000);

  it('names why a run waits: the database load probe, with its value', async () => {
    const app = await appWithFiles(20);
    const child = start(['migrate', '--yes', '--app', app, '--tables', 'files', '--max-db-load', '3', '--db-load-probe', 'SELECT 7'], viaProxy);
    const status = await until('the worker waiting for the database', async () => {
      const found = await liveRunOf(app);
      if (!found) return undefined;
      const answer = (await cli(['status', found.id, '--json'], env.cliEnv)).json().active[0];
      return answer?.waiting.length ? answer : undefined;
    });
    expect(status.waiting.join(' ')).toMatch(/waits: --max-db-load: the probe says 7, above 3/);
    expect(status.workers[0]).toMatchObject({ state: 'waiting', wait_reason: '--max-db-load: the probe says 7, above 3' });
    expect((await cli(['status'], env.cliEnv)).stdout).toMatch(/waiting: worker .+ waits: --max-db-load: the probe says 7, above 3/);
    expect((await cli(['cancel', '--yes', status.run.id], env.cliEnv)).code).toBe(0);
    expect(await child.exited).toBe(130);
    expect(await hybrid(app)).toBe(0);
  }, 60_000);

  it('keeps every failed or refused item, and --retry-failed retries exactly those', async () => {
    const app = await appWithFiles(60);
    const doomed = ['p/7.txt', 'p/21.txt', 'p/44.txt'];
    proxy.inject((request) => request.method === 'PUT' && doomed.some((path) => request.key.endsWith(`/${path}`)), { kind: 'status', status: 500, code: 'InternalError' }, 1000);
    const first = await cli(['migrate', '--yes', '--json', '--app', app, '--tables', 'files', '--max-attempts', '2'], viaProxy);
    expect(first.code).toBe(1);
    const runId = first.json().result.run.id as string;
    expect(first.json().result.run.state).toBe('failed');
    const items = await cli(['report', '--items', runId, '--json'], env.cliEnv);
    expect(items.json().items.map((item: { path: string }) => item.path).sort()).toEqual([...doomed].sort());
    expect(items.json().items[0]).toMatchObject({ table_name: 'app_files', outcome: 'failed', error_class: 'ObjectStoreError', attempts: 1 });
    expect(items.json().items[0].message).toMatch(/InternalError|500/);
    // Still failing: a retry run records a second attempt.
    const second = await cli(['migrate', '--yes', '--json', '--retry-failed', runId, '--max-attempts', '1'], viaProxy);
    expect(second.code).toBe(1);
    expect(second.json().plan.rows).toBe(3);
    const secondId = second.json().result.run.id as string;
    const retried = await cli(['report', '--items', secondId, '--json'], env.cliEnv);
    expect(retried.json().items.map((item: { attempts: number }) => item.attempts)).toEqual([2, 2, 2]);
    proxy.clearFaults();
    const third = await cli(['migrate', '--yes', '--json', '--retry-failed', secondId], viaProxy);
    expect(third.code).toBe(0);
    expect(third.json().result.uploaded).toBe(3);
    expect(third.json().result.run.state).toBe('succeeded');
    expect(await hybrid(app)).toBe(60);
    const history = await cli(['report', '--runs', '--json', '--status', 'failed'], env.cliEnv);
    expect(history.json().runs.map((r: { id: string }) => r.id)).toEqual(expect.arrayContaining([runId, secondId]));
    expect((await cli(['migrate', '--yes', '--retry-failed', '999999'], env.cliEnv)).code).toBe(2);
  }, 120_000);

  it('a row met more than once within one flush of the item log is kept with every attempt and its last outcome, beside the others', async () => {
    const app = await appWithFiles(3);
    const run = await cli(['migrate', '--yes', '--json', '--app', app, '--tables', 'files'], env.cliEnv);
    expect(run.code).toBe(0);
    const runId = run.json().result.run.id as string;
    const item = (rowId: string, outcome: 'failed' | 'refused', message: string) => ({ table: 'app_files', rowId, appId: app, path: `p/${rowId}.txt`, key: null, outcome, errorClass: 'Error', message });
    await recordItems(env.db, runId, [item('1', 'failed', 'first'), item('2', 'failed', 'other'), item('1', 'refused', 'second'), item('1', 'failed', 'third')]);
    await recordItems(env.db, runId, [item('2', 'refused', 'later')]);
    const kept = await runItems(env.db, runId);
    expect(kept.map(({ row_id, outcome, message, attempts }) => ({ row_id, outcome, message, attempts }))).toEqual([
      { row_id: '1', outcome: 'failed', message: 'third', attempts: 3 },
      { row_id: '2', outcome: 'refused', message: 'later', attempts: 2 },
    ]);
  });

  it('never stores a secret: not in arguments, reasons, items or anywhere in the run tables', async () => {
    const app = await appWithFiles(5);
    const url = new URL(env.databaseUrl);
    url.password = 'Sup3rSecretDbPw';
    // A store whose secret is the one that must not leak (the emulation checks signatures with it).
    const secretStore = await new S3Proxy(env.s3.barePort, env.s3.bucket, new R2Emulation(env.s3.barePort, { accessKeyId: env.s3.accessKeyId, secretAccessKey: 'TopSecretR2Key987' })).start();
    const secretEnv = { ...env.cliEnv, R2_ENDPOINT: secretStore.endpoint, R2_SECRET_ACCESS_KEY: 'TopSecretR2Key987', DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' };
    secretStore.inject((request) => request.method === 'PUT' && request.key.endsWith('/p/3.txt'), { kind: 'status', status: 500 }, 100);
    const run = await cli(['migrate', '--yes', '--json', '--app', app, '--tables', 'files', `--database-url=${url}`, '--max-attempts', '1', '--operator', 'alice'], secretEnv);
    await secretStore.stop();
    expect(run.code, run.stdout + run.stderr).toBe(1);
    expect(secretStore.r2!.stats.signatureRefused).toBe(0);
    const stored = await query<{ dump: string }>(
      env.db,
      `SELECT concat_ws(' ', (SELECT string_agg(r::text, ' ') FROM overskill_storage_runs r), (SELECT string_agg(w::text, ' ') FROM overskill_storage_run_workers w),
              (SELECT string_agg(i::text, ' ') FROM overskill_storage_run_items i), (SELECT string_agg(t::text, ' ') FROM overskill_storage_run_transitions t)) AS dump`,
    );
    expect(stored[0].dump).toContain('alice');
    expect(stored[0].dump).toContain('--database-url=***');
    expect(stored[0].dump).not.toContain('Sup3rSecretDbPw');
    expect(stored[0].dump).not.toContain('TopSecretR2Key987');
    expect(run.stdout + run.stderr).not.toMatch(/Sup3rSecretDbPw|TopSecretR2Key987/);
  }, 60_000);

  it('records one-shot writes too (cleanup), which cannot be paused or cancelled from elsewhere', async () => {
    await env.store.putVerified({ key: 'apps/999/files/orphan.txt', body: Buffer.from('orphan'), sha256: sha256Hex('orphan'), contentType: 'text/plain' });
    // R2 takes one write per key per second: the delete's tombstone would be refused within it.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const cleaned = await cli(['cleanup', '--yes', '--json', '--grace', '0'], env.cliEnv);
    expect(cleaned.code).toBe(0);
    const runId = cleaned.json().result.run.id as string;
    expect(cleaned.json().result.run.state).toBe('succeeded');
    const history = await cli(['report', '--runs', '--json', '--command', 'cleanup'], env.cliEnv);
    const deleted = cleaned.json().result.deleted as number;
    expect(deleted).toBeGreaterThanOrEqual(1); // the orphan above, and whatever earlier tests left unnamed
    expect(history.json().runs[0]).toMatchObject({ id: runId, command: 'cleanup', state: 'succeeded', rows_done: deleted });
    expect(history.json().runs[0].arguments).toEqual(['cleanup', '--yes', '--json', '--grace', '0']);
    // A live cleanup (a worker whose lease its row names) cannot be steered from here.
    const session = await startWorkerSession(env.db, env.databaseUrl);
    try {
      await query(env.db, "UPDATE overskill_storage_runs SET state = 'running', ended_at = NULL WHERE id = $1", [runId]);
      await query(env.db, 'UPDATE overskill_storage_run_workers SET ended_at = NULL, worker = $2 WHERE run_id = $1', [runId, session.id]);
      for (const verb of ['pause', 'cancel']) {
        const refused = await cli([verb, runId], env.cliEnv);
        expect(refused.code).toBe(2);
        expect(refused.stderr).toMatch(new RegExp(`Run ${runId} \\(cleanup\\) cannot be (paused|cancelled) from another terminal`));
      }
      expect((await cli(['status', runId, '--json'], env.cliEnv)).json().active[0].run.state).toBe('running');
    } finally {
      await session.close();
    }
    // Once its worker is gone, the next look marks it interrupted.
    expect((await cli(['status', runId, '--json'], env.cliEnv)).json().recent[0].run.state).toBe('interrupted');
  });

  it('status --watch redraws until interrupted, and exits 0', async () => {
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 2500);
    const watched = await cli(['status', '--watch', '--interval', '1s', '--recent', '1'], env.cliEnv, { signal: stop.signal });
    expect(watched.code).toBe(0);
    // Without a terminal it appends one snapshot per refresh instead of redrawing the screen.
    expect(watched.stdout.match(/No active run\.|Active runs/g)?.length ?? 0).toBeGreaterThanOrEqual(2);
  });

  it('the state machine refuses every move it does not list, in the database itself', async () => {
    const [{ id }] = await query<{ id: string }>(
      env.db,
      `INSERT INTO overskill_storage_runs (command, arguments, identity, scope, operator, host, pid, tool_version) VALUES ('migrate', '[]', 'x', '{}', 'test', 'h', 1, '0') RETURNING id`,
    );
    for (const from of RUN_STATES) {
      for (const to of RUN_STATES) {
        await query(env.db, 'UPDATE overskill_storage_runs SET state = $2 WHERE id = $1', [id, from]);
        const moved = await moveRun(env.db, id, to, 'test', null);
        expect(moved, `${from} → ${to}`).toEqual({ from, moved: canMove(from, to) });
        const [{ state }] = await query<{ state: string }>(env.db, 'SELECT state FROM overskill_storage_runs WHERE id = $1', [id]);
        expect(state, `${from} → ${to}`).toBe(canMove(from, to) ? to : from);
      }
    }
    expect(canMove('succeeded', 'running')).toBe(false);
    expect(canMove('paused', 'succeeded')).toBe(false);
    expect(canMove('running', 'pausing')).toBe(true);
    // The CLI says so in a sentence, exit 2, and leaves the run as it was.
    await query(env.db, "UPDATE overskill_storage_runs SET state = 'succeeded' WHERE id = $1", [id]);
    for (const verb of ['pause', 'resume', 'cancel']) {
      const refused = await cli([verb, id], env.cliEnv);
      expect(refused.code, verb).toBe(2);
      expect(refused.stderr).toMatch(new RegExp(`Run ${id} is succeeded: it cannot become`));
    }
    expect((await cli(['tune', '--yes', id, '--max-rate', '5'], env.cliEnv)).code).toBe(2);
    expect((await cli(['pause', '--yes', '999999'], env.cliEnv)).code).toBe(2);
    expect((await cli(['pause'], env.cliEnv)).code).toBe(2);
  });
});
