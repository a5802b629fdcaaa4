import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli, spawnCli, spawnCliAndWait, type CliRun } from './support/cli.ts';
import { databaseFingerprint, insertApp, insertFile, text } from './support/seed.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { storeAt } from './support/stores.ts';
import { checkConsistency } from './support/consistency.ts';
import { query } from '../src/db.ts';
import { withWorker } from '../src/ops/worker-run.ts';
import { runBatches, STALLED } from '../src/ops/batch-runner.ts';
import { releaseClaims } from '../src/sql/claim-batch.ts';
import { defaultRunOptions } from '../src/ops/options.ts';
import { TABLES } from '../src/tables.ts';
import { runStatus } from '../src/ops/runs.ts';
import { runItems } from '../src/sql/run-items.ts';
import { requestBoundMs } from '../src/store/client.ts';
import { sha256Hex } from '../src/hashing.ts';

/**
 * Invariant 8: no fault the store can produce leaves a run waiting for ever. Each case runs the real
 * executable through a proxy (or a server) that misbehaves in one way, with `--request-timeout 2s
 * --max-attempts 2`: a request can then take at most requestBoundMs(2000, 2) = 4.45 s, and the run must end
 * well inside a minute, naming every item it could not do, with every row consistent.
 */
const FAST = ['--request-timeout', '2s', '--max-attempts', '2'];
const BOUND_S = 60;

describe.skipIf(ON_PGLITE)('bounded time', () => {
  let env: TestEnv;
  let proxy: S3Proxy;
  let cliEnv: NodeJS.ProcessEnv;

  beforeAll(async () => {
    env = await createTestEnv();
    proxy = await new S3Proxy(env.s3.port, env.s3.bucket).start();
    cliEnv = { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint };
  });
  afterAll(async () => {
    await proxy?.stop();
    await env?.close();
  });
  beforeEach(() => proxy.clearFaults());

  async function appWith(files: number, size = 3000): Promise<{ app: string; paths: string[] }> {
    const app = await insertApp(env.db, `bounded-${Math.random().toString(36).slice(2, 8)}`);
    const paths: string[] = [];
    for (let i = 0; i < files; i++) {
      paths.push(`src/f${i}.ts`);
      await insertFile(env.db, app, `src/f${i}.ts`, text(size + i, `${app}:${i} `));
    }
    return { app, paths };
  }

  const timed = async (run: () => Promise<CliRun>) => {
    const started = Date.now();
    const result = await run();
    return { ...result, seconds: (Date.now() - started) / 1000 };
  };
  const failedPaths = (run: CliRun) =>
    run
      .json()
      .result.tables.flatMap((t: { failed: { path: string }[] }) => t.failed.map((f) => f.path))
      .sort();
  const locations = async (app: string) =>
    Object.fromEntries((await query<{ path: string; location: string }>(env.db, 'SELECT path, storage_location AS location FROM app_files WHERE app_id = $1', [app])).map((r) => [r.path, r.location]));

  /** Rows whose contents live only in R2 (migrated and finalized): a rollback must download every one. */
  async function finalizedApp(files: number): Promise<{ app: string; paths: string[] }> {
    const made = await appWith(files, 12_000);
    for (const args of [['migrate', '--yes'], ['finalize', '--yes']]) expect((await cli([...args, '--app', made.app], cliEnv)).code).toBe(0);
    return made;
  }

  it('a body that stops after its headers: the deadline covers the whole body; the run ends naming the rows (rollback, the case that once ran 648 s)', async () => {
    const { app, paths } = await finalizedApp(12);
    const stalled = paths.slice(0, 3);
    proxy.inject((r) => r.method === 'GET' && stalled.some((p) => r.key.endsWith(`/${p}`)), { kind: 'stallBody', keepBytes: 100 }, 1000);
    const run = await timed(() => spawnCliAndWait(['rollback', '--yes', '--json', '--app', app, '--tables', 'files', ...FAST], cliEnv));
    expect(run.seconds).toBeLessThan(BOUND_S);
    expect(run.code, run.stderr).toBe(1);
    expect(failedPaths(run)).toEqual(stalled.sort());
    const reasons = run.json().result.tables.flatMap((t: { failed: { reason: string }[] }) => t.failed.map((f) => f.reason));
    for (const reason of reasons) expect(reason).toMatch(/deadline/);
    // every attempt of each stalled read was cut at its deadline (2 attempts each)
    expect(run.json().result.transport.timedOut).toBeGreaterThanOrEqual(stalled.length * 2);
    const after = await locations(app);
    for (const path of paths) expect(after[path]).toBe(stalled.includes(path) ? 'r2' : 'database');
    await checkConsistency(env);
  }, 120_000);

  it('a store that takes requests and never answers one key: that row fails, the rest move (migrate)', async () => {
    const { app, paths } = await appWith(10);
    const held = paths[4];
    proxy.inject((r) => r.key.endsWith(`/${held}`), { kind: 'blackhole' }, 1000);
    const run = await timed(() => spawnCliAndWait(['migrate', '--yes', '--json', '--app', app, ...FAST], cliEnv));
    expect(run.seconds).toBeLessThan(BOUND_S);
    expect(run.code, run.stderr).toBe(1);
    expect(failedPaths(run)).toEqual([held]);
    const after = await locations(app);
    for (const path of paths) expect(after[path]).toBe(path === held ? 'database' : 'hybrid');
    await checkConsistency(env);
  }, 120_000);

  it('an endpoint that accepts connections and never answers: refused in bounded time (exit 2), nothing changed', async () => {
    const { app } = await appWith(3);
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const endpoint = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
      const before = await databaseFingerprint(env.db);
      for (const args of [['migrate', '--yes', '--app', app], ['verify', '--app', app], ['doctor']]) {
        const run = await timed(() => spawnCliAndWait([...args, ...FAST], { ...env.cliEnv, R2_ENDPOINT: endpoint }));
        expect(run.seconds, args.join(' ')).toBeLessThan(BOUND_S);
        expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(args[0] === 'doctor' ? 1 : 2);
        expect(run.stderr + run.stdout, args.join(' ')).toMatch(/deadline|timed out|reach/i);
      }
      expect(await databaseFingerprint(env.db)).toBe(before);
    } finally {
      for (const socket of sockets) socket.destroy();
      silent.close();
    }
  }, 240_000);

  it('a socket pool exhausted by black-holed requests: the queue waits, the deadline frees the sockets, every request ends; the queue wait is measured', async () => {
    const key = (i: number) => `apps/pool/${i}.txt`;
    const store = storeAt(env.s3, proxy.endpoint, { maxSockets: 8, requestTimeoutMs: 1500, maxAttempts: 2 });
    try {
      // the first attempt of each of 8 keys is black-holed: all 8 sockets hang until their deadline
      proxy.inject((r) => r.method === 'PUT' && r.key.startsWith('apps/pool/'), { kind: 'blackhole' }, 8);
      const started = Date.now();
      const results = await Promise.allSettled(Array.from({ length: 24 }, (_, i) => store.putVerified({ key: key(i), body: Buffer.from(`body ${i}`), sha256: sha256Hex(`body ${i}`), contentType: 'text/plain' })));
      const seconds = (Date.now() - started) / 1000;
      expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
      expect(seconds).toBeLessThan(requestBoundMs(1500, 2) / 1000 + 10);
      const stats = store.transportStats();
      // the 8 black-holed attempts, and the queued ones whose deadline passed while they waited for a socket
      expect(stats.timedOut).toBeGreaterThanOrEqual(8);
      expect(stats.queued).toBeGreaterThanOrEqual(16);
      expect(stats.queueWaitMs.max).toBeGreaterThan(1000);
      expect(stats.inFlight).toBe(0);
    } finally {
      store.destroy();
    }
  }, 60_000);

  it('SIGTERM during a stalled run stops within one deadline (exit 130); a second signal stops at once (exit 130); rows stay consistent', async () => {
    const { app } = await finalizedApp(40);
    // every download stalls: the run cannot finish on its own for a long while
    const longDeadline = ['--request-timeout', '8s', '--max-attempts', '5'];
    for (const second of [false, true]) {
      proxy.clearFaults();
      proxy.inject((r) => r.method === 'GET' && r.key.startsWith(`apps/${app}/`), { kind: 'stallBody', keepBytes: 10 }, 100_000);
      // Reads of this app seen so far (finalize read every object back): only the rollback's own count below.
      const readsBefore = proxy.seen.filter((r) => r.method === 'GET' && r.key.startsWith(`apps/${app}/`)).length;
      const child = spawnCli(['rollback', '--yes', '--app', app, '--concurrency', '4', '--batch-size', '4', ...longDeadline], cliEnv);
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
      // wait until its first reads are held
      for (let waited = 0; waited < 30_000 && proxy.seen.filter((r) => r.method === 'GET' && r.key.startsWith(`apps/${app}/`)).length - readsBefore < 4; waited += 100) await new Promise((r) => setTimeout(r, 100));
      await new Promise((r) => setTimeout(r, 500));
      const signalled = Date.now();
      child.kill('SIGTERM');
      if (second) {
        await new Promise((r) => setTimeout(r, 300));
        child.kill('SIGINT');
      }
      const code = await exited;
      const seconds = (Date.now() - signalled) / 1000;
      expect(code, stderr).toBe(130);
      // one attempt's deadline (8 s) plus the flip, not 5 attempts of it
      expect(seconds, stderr).toBeLessThan(second ? 3 : 14);
      expect(stderr).toMatch(second ? /again: stopping at once/ : /stopping after the batches in flight/);
      await checkConsistency(env);
    }
    proxy.clearFaults();
    const rerun = await cli(['rollback', '--yes', '--app', app], cliEnv);
    expect(rerun.code, rerun.stderr).toBe(0);
    await checkConsistency(env);
  }, 180_000);

  it('an item whose work never ends fails as `stalled` once its bound passes; status names the worker first; the item lands in the run log', async () => {
    const { app } = await appWith(6);
    const table = TABLES.files;
    const options = defaultRunOptions({ tables: [table], filter: { appIds: [app] }, batchSize: 3, concurrency: 3, limit: 6 });
    // (the flip below changes no row, so without a limit later passes would claim the same rows again)
    options.record = { command: 'migrate', arguments: ['migrate'], toolVersion: 'test', scope: { tables: ['app_files'], appIds: [app] }, pausable: true };
    // a store whose requests may take 300 ms in all: an item of these sizes may take 8 of them
    const store = storeAt(env.s3, env.s3.endpoint, { requestTimeoutMs: 150, maxAttempts: 2 });
    const context = { ...env.context, store };
    let statusWhileStalled: Awaited<ReturnType<typeof runStatus>> | undefined;
    const hung = new Set<string>();
    try {
      const outcome = await withWorker(context, options, {}, 'stall', (run, t) =>
        runBatches(env.db, { ...run, reporter: {} }, {
          table: t,
          move: {
            name: 'stall',
            takes: () => `t.storage_location = 'database'`,
            reads: { content: false, dbHash: false },
            flip: async (db, table, worker, done: string[], claimedIds) => {
              await releaseClaims(db, table, worker, claimedIds);
              return done;
            },
            planLine: 'none',
          },
          work: async (row) => {
            if (Number(row.id) % 2 === 0) {
              hung.add(row.id);
              // take status while this hangs, after longer than one request can take
              if (!statusWhileStalled) {
                await new Promise((r) => setTimeout(r, store.requestBoundMs + 1200));
                statusWhileStalled = await runStatus(env.db);
              }
              return new Promise(() => undefined);
            }
            return { kind: 'done', value: row.id, bytes: 0 };
          },
        }),
      );
      const failed = outcome.tables[0].failed;
      expect(failed.map((f) => f.id).sort()).toEqual([...hung].sort());
      for (const item of failed) {
        expect(item.errorClass).toBe(STALLED);
        expect(item.reason).toMatch(/no progress within/);
      }
      expect(outcome.tables[0].flipped).toBe(6 - hung.size);
      const logged = await runItems(env.db, outcome.run!.id);
      expect(logged.map((i) => [i.row_id, i.error_class]).sort()).toEqual([...hung].sort().map((id) => [id, STALLED]));
      expect(statusWhileStalled!.active[0].stalled.join('\n')).toMatch(/no progress for \d+s, longer than one request can take/);
      const [{ claims }] = await query<{ claims: number }>(env.db, 'SELECT count(*)::int AS claims FROM overskill_storage_claims');
      expect(claims).toBe(0);
    } finally {
      store.destroy();
    }
  }, 60_000);
});
