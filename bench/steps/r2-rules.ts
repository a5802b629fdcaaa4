/**
 * R2's rules at scale: several migrate processes sharing a bucket's write budget (the emulation's, scaled
 * down), cleanup's objects per second through an R2-like round trip, and the store check through 50 ms.
 */
import type { Db } from '../../src/db.ts';
import { query } from '../../src/db.ts';
import { R2Emulation } from '../../src/local/r2-emulation.ts';
import { ObjectStore } from '../../src/object-store.ts';
import { probeStore } from '../../src/store/preflight.ts';
import { S3Proxy } from '../../test/support/http-proxy.ts';
import { startBenchStore, type BenchStore } from '../fixture.ts';
import { cliEnvFor } from '../processes.ts';
import { spawnCliAndWait } from '../../test/support/cli.ts';
import { median } from '../figures.ts';

export interface R2RulesResult {
  budget: { processes: number; writesPerSecond: number; writes: number; seconds: number; utilisation: number; throttledShare: number; exitCodes: number[] };
  cleanup: { objects: number; seconds: number; objectsPerSecond: number; requestsPerObject: number; latencyMs: number };
  storeCheck: { latencyMs: number; seconds: number[]; median: number; requests: number };
}

async function emulatedProxy(store: BenchStore, latencyMs: number): Promise<{ proxy: S3Proxy; r2: R2Emulation }> {
  const r2 = new R2Emulation(store.port);
  const proxy = await new S3Proxy(store.port, store.bucket, r2).start();
  proxy.latencyMs = latencyMs;
  return { proxy, r2 };
}

async function seedRows(db: Db, rows: number): Promise<void> {
  await query(db, 'TRUNCATE app_files, overskill_storage_claims CASCADE');
  const apps = 4;
  for (let a = 0; a < apps; a++) {
    const [{ id }] = await query<{ id: string }>(db, "INSERT INTO apps (name) VALUES ('bench-r2') RETURNING id");
    await query(db, `INSERT INTO app_files (app_id, path, content) SELECT $1::bigint, 'src/' || i || '.ts', repeat(md5(i::text || $1), 40 + i % 20) FROM generate_series(1, $2::int) i`, [id, Math.ceil(rows / apps)]);
  }
}

/**
 * On a store of its own: cleanup deletes every orphan of its bucket, and in the bench's shared bucket that is
 * every object the earlier steps left (150,000 and more), not the step's own.
 */
export async function measureR2Rules(db: Db, url: string, options: { rows?: number; writesPerSecond?: number; orphans?: number } = {}): Promise<R2RulesResult> {
  const store = await startBenchStore();
  try {
    return await measureOn(db, url, store, options);
  } finally {
    await store.stop();
  }
}

async function measureOn(db: Db, url: string, store: BenchStore, options: { rows?: number; writesPerSecond?: number; orphans?: number }): Promise<R2RulesResult> {
  const rows = options.rows ?? 3000;
  const writesPerSecond = options.writesPerSecond ?? 200;

  // 1. Three migrate --concurrency 32 processes against a bucket budget far below what they ask for.
  await seedRows(db, rows);
  const shared = await emulatedProxy(store, 0);
  shared.r2.budget = { writesPerSecond, readsPerSecond: writesPerSecond * 5 };
  const env = cliEnvFor(url, { ...store, endpoint: shared.proxy.endpoint });
  const runs = await Promise.all([0, 1, 2].map(() => spawnCliAndWait(['migrate', '--yes', '--json', '--tables', 'files', '--concurrency', '32'], env)));
  const stats = shared.r2.budgetStats;
  const seconds = (stats.lastWriteAt - stats.firstWriteAt) / 1000;
  const budget = {
    processes: 3,
    writesPerSecond,
    writes: stats.writes,
    seconds,
    utilisation: stats.writes / writesPerSecond / seconds,
    throttledShare: stats.writesRefused / (stats.writes + stats.writesRefused),
    exitCodes: runs.map((run) => run.code),
  };
  console.log(`bucket budget ${writesPerSecond} writes/s, 3 × migrate --concurrency 32: ${stats.writes} writes in ${seconds.toFixed(1)} s = ${(budget.utilisation * 100).toFixed(0)}% of the budget, ${(budget.throttledShare * 100).toFixed(1)}% of writes refused; exit codes ${budget.exitCodes.join(', ')}`);
  await shared.proxy.stop();

  // 2. cleanup of the objects those rows uploaded, once no row names them, through a 50 ms round trip.
  const latencyMs = 50;
  const far = await emulatedProxy(store, latencyMs);
  await query(db, 'TRUNCATE app_files, overskill_storage_claims CASCADE');
  const objects = rows;
  const before = far.proxy.seen.length;
  const started = performance.now();
  const cleanup = await spawnCliAndWait(['cleanup', '--grace', '0s', '--yes', '--json', '--concurrency', '32'], cliEnvFor(url, { ...store, endpoint: far.proxy.endpoint }));
  const cleanupSeconds = (performance.now() - started) / 1000;
  const deleted = cleanup.code === 0 ? (cleanup.json().result?.deleted ?? 0) : 0;
  const onObjects = far.proxy.seen.slice(before).filter((request) => request.key.startsWith('apps/')).length;
  const cleanupResult = { objects: deleted, seconds: cleanupSeconds, objectsPerSecond: deleted / cleanupSeconds, requestsPerObject: deleted ? onObjects / deleted : 0, latencyMs };
  console.log(`cleanup through ${latencyMs} ms, --concurrency 32: ${deleted} of ${objects} orphans in ${cleanupSeconds.toFixed(1)} s = ${cleanupResult.objectsPerSecond.toFixed(0)} objects/s, ${cleanupResult.requestsPerObject.toFixed(2)} requests per object (the whole command, its listing and store check included)`);

  // 3. The store check through the same 50 ms.
  const probeSeconds: number[] = [];
  let requests = 0;
  for (let i = 0; i < 5; i++) {
    const client = new ObjectStore({ endpoint: far.proxy.endpoint, accessKeyId: store.accessKeyId, secretAccessKey: store.secretAccessKey, bucket: store.bucket, region: 'auto', allowInsecureEndpoint: false });
    const t = performance.now();
    const check = await probeStore(client);
    probeSeconds.push((performance.now() - t) / 1000);
    requests = check.requests.classA + check.requests.classB + check.requests.free;
    client.destroy();
  }
  await far.proxy.stop();
  const storeCheck = { latencyMs, seconds: probeSeconds, median: median(probeSeconds), requests };
  console.log(`store check through ${latencyMs} ms: median ${(storeCheck.median * 1000).toFixed(0)} ms of 5 (${requests} requests, side by side; R2's per-key second is part of it)`);
  return { budget, cleanup: cleanupResult, storeCheck };
}
