import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli, spawnCliAndWait, spawnWithMetrics } from './support/cli.ts';
import { insertApp } from './support/seed.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { storeAt } from './support/stores.ts';
import { R2Emulation } from '../src/local/r2-emulation.ts';
import { query } from '../src/db.ts';
import { sha256Hex } from '../src/hashing.ts';

/**
 * R2 takes about 4,000 writes and 20,000 reads a second per bucket and refuses the rest with 429 (R2's
 * "Optimizing performance"); S3 says 503 SlowDown. Here the emulation's budget is scaled far below what three
 * `migrate --concurrency 32` processes ask for: each process paces itself (store/bucket-pace.ts), and together
 * they must use the budget without failing an item.
 */
describe.skipIf(ON_PGLITE)('the bucket budget, shared by several processes', () => {
  const WRITES_PER_SECOND = 100;
  const ROWS = 3000;
  let env: TestEnv;
  let r2: R2Emulation;
  let proxy: S3Proxy;

  beforeAll(async () => {
    env = await createTestEnv();
    r2 = new R2Emulation(env.s3.barePort);
    proxy = await new S3Proxy(env.s3.barePort, env.s3.bucket, r2).start();
  });
  afterAll(async () => {
    await proxy?.stop();
    await env?.close();
  });
  beforeEach(async () => {
    await query(env.db, 'TRUNCATE app_files, overskill_storage_claims CASCADE');
    r2.budget = { writesPerSecond: WRITES_PER_SECOND, readsPerSecond: 2000 };
    Object.assign(r2.budgetStats, { writes: 0, reads: 0, writesRefused: 0, readsRefused: 0, firstWriteAt: 0, lastWriteAt: 0 });
    r2.journal.length = 0;
  });

  async function seed(): Promise<void> {
    for (let a = 0; a < 4; a++) {
      const app = await insertApp(env.db);
      await query(env.db, `INSERT INTO app_files (app_id, path, content) SELECT $1::bigint, 'src/' || i || '.ts', repeat(md5(i::text || $1), 40 + i % 20) FROM generate_series(1, $2::int) i`, [app, ROWS / 4]);
    }
  }

  async function threeMigrations() {
    const cliEnv = { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint };
    const args = ['migrate', '--yes', '--json', '--tables', 'files', '--concurrency', '32'];
    return Promise.all([0, 1, 2].map(() => spawnCliAndWait(args, cliEnv)));
  }

  for (const answer of [429, 503] as const) {
    it(`answered ${answer === 429 ? "429 (R2)" : '503 SlowDown (S3)'}: every process exits 0, every row moves, within 1.3x of the budget's time, at most 10% of writes refused`, async () => {
      r2.budgetAnswer = answer;
      await seed();
      const runs = await threeMigrations();
      for (const run of runs) expect(run.code, run.stderr.slice(-2000)).toBe(0);
      const [{ left }] = await query<{ left: number }>(env.db, "SELECT count(*)::int AS left FROM app_files WHERE storage_location <> 'hybrid'");
      expect(left).toBe(0);
      const uploaded = runs.map((run) => run.json().result?.uploaded ?? 0).reduce((a: number, b: number) => a + b, 0);
      expect(uploaded).toBe(ROWS);

      const stats = r2.budgetStats;
      // The rows' uploads against what the budget allows them: from the first object written under apps/ to the
      // last (each process's store check before its first upload is a few probe writes and a second's wait).
      const uploads = r2.journal.filter((entry) => entry.key.startsWith('apps/') && entry.kind === 'put' && entry.status < 300);
      const budgetSeconds = uploads.length / WRITES_PER_SECOND;
      const tookSeconds = (uploads.at(-1)!.at - uploads[0].at) / 1000;
      const refusedShare = stats.writesRefused / (stats.writes + stats.writesRefused);
      console.log(`${answer}: ${uploads.length} uploads in ${tookSeconds.toFixed(1)} s (budget ${budgetSeconds.toFixed(1)} s, ${(tookSeconds / budgetSeconds).toFixed(2)}x); ${stats.writesRefused} of ${stats.writes + stats.writesRefused} writes refused (${(refusedShare * 100).toFixed(1)}%)`);
      expect(stats.writesRefused, 'the budget was reached').toBeGreaterThan(0);
      expect(tookSeconds / budgetSeconds).toBeLessThanOrEqual(1.3);
      expect(refusedShare).toBeLessThanOrEqual(0.1);
      // Each process says what held it back.
      for (const run of runs) expect(run.json().result.pace?.write?.throttled ?? 0).toBeGreaterThanOrEqual(0);
      expect(runs.some((run) => run.json().result.pace?.write?.bucketLimited)).toBe(true);
    }, 120_000);
  }

  it('status, --log-format json and /metrics show the pace, the refused share and that the bucket is the limit; the run goes on to the end', async () => {
    r2.budget = { writesPerSecond: 25, readsPerSecond: 1000 };
    const app = await insertApp(env.db);
    await query(env.db, `INSERT INTO app_files (app_id, path, content) SELECT $1::bigint, 'src/' || i || '.ts', repeat(md5(i::text), 50) FROM generate_series(1, 400) i`, [app]);
    const { stderr, exited, port } = await spawnWithMetrics(['migrate', '--yes', '--tables', 'files', '--concurrency', '32', '--log-format', 'json', '--metrics-port', '0'], { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint });
    expect(port, stderr()).toBeDefined();
    // Until the bucket has refused this run and its heartbeat says so.
    let status: { waiting: string[]; workers: { pace?: string; bucketLimited?: boolean }[] } | undefined;
    for (let waited = 0; waited < 30_000; waited += 500) {
      const active = ((await cli(['status', '--json'], env.cliEnv)).json().active ?? []) as (typeof status)[];
      status = active.find((run) => run!.workers.some((w) => w.bucketLimited));
      if (status) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(status, 'status names the bucket as the limit').toBeDefined();
    expect(status!.waiting.join('\n')).toMatch(/held to the bucket's request budget: writes paced at [0-9.]+\/s, [0-9]+ of [0-9]+ refused as over the bucket's budget/);
    const text = (await cli(['status'], env.cliEnv)).stdout;
    expect(text).toMatch(/bucket: writes paced at/);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/overskill_storage_bucket_is_limit 1/);
    expect(metrics).toMatch(/overskill_storage_bucket_pace_per_second\{lane="write"\} [1-9]/);
    expect(metrics).toMatch(/overskill_storage_bucket_throttled_total\{lane="write"\} [1-9]/);
    expect(metrics).toMatch(/overskill_storage_bucket_throttled_ratio\{lane="write"\} 0\.[0-9]+/);
    expect(await exited, stderr().slice(-2000)).toBe(0);
    const events = stderr().trim().split('\n').map((line) => JSON.parse(line) as Record<string, any>);
    const pace = events.filter((event) => event.event === 'bucket.pace');
    expect(pace.length).toBeGreaterThan(0);
    expect(pace[0]).toMatchObject({ limited: true, write: { throttled: expect.any(Number), ratePerSecond: expect.any(Number) } });
    expect(events.at(-1)).toMatchObject({ event: 'run.ended', state: 'done', rows: 400, failed: 0 });
  });

  it("a 429 on a key this process wrote a moment ago is R2's per-key rule: that write waits out the key's second, and the pace is left alone", async () => {
    r2.budget = { writesPerSecond: Infinity, readsPerSecond: Infinity };
    const store = storeAt(env.s3, proxy.endpoint, { maxAttempts: 3 });
    try {
      const key = 'apps/9/files/per-key.txt';
      const first = Buffer.from('first version');
      await store.putVerified({ key, body: first, sha256: sha256Hex(first), contentType: 'text/plain' });
      const head = await store.head(key);
      const second = Buffer.from('second version');
      const started = Date.now();
      expect(head?.ours).toBe(true);
      await store.putVerified({ key, body: second, sha256: sha256Hex(second), contentType: 'text/plain', intent: { kind: 'replace-ours' } });
      const waited = Date.now() - started;
      expect(waited).toBeGreaterThanOrEqual(900);
      expect(waited).toBeLessThan(5000);
      expect(r2.stats.throttled).toBeGreaterThan(0);
      const pace = store.paceSnapshot();
      expect(pace.write.throttled).toBe(0);
      expect(pace.write.ratePerSecond).toBeNull();
    } finally {
      store.destroy();
    }
  });
});
