/**
 * Through a 50 ms proxy, an R2-like round trip: the plan's naive one-row-at-a-time job, migrate against the
 * bare SDK loop at c=8, 32 and 64, four processes against one, and the guarded deletes' window.
 */
import { query, type Db } from '../../src/db.ts';
import type { S3Proxy } from '../../test/support/http-proxy.ts';
import { cpuLine, line, rate } from '../figures.ts';
import { latencyProxy, quiet, resetMigration, type BenchStore } from '../fixture.ts';
import { options } from '../options.ts';
import { runWorker, withCpu, type Measure, type Measured } from '../processes.ts';
import { profileMigrate } from './profile.ts';

export interface Pair {
  raw: Measured;
  migrate: Measured;
  ratio: number;
  first: 'raw' | 'migrate';
}

/**
 * The bare SDK loop against migrate through `proxy`, in `count` pairs on fresh keys, alternating which of the
 * two goes first (the first of a pair meets the server as the last run left it). One pair of short runs
 * swings with whatever else the two cores do; the median of several, with every pair kept, does not.
 * Returns every pair and the median one.
 */
export async function pairedThroughProxy(db: Db, url: string, s3: BenchStore, proxy: S3Proxy, concurrency: number, objects: number, count: number): Promise<{ pairs: Pair[]; median: Pair }> {
  const pairs: Pair[] = [];
  for (let index = 0; index < count; index++) {
    await resetMigration(db);
    const first: 'raw' | 'migrate' = index % 2 === 0 ? 'raw' : 'migrate';
    // Each run starts on a quiet machine: the reset's (or the last run's) dead rows vacuumed, WAL checkpointed,
    // and the server's files written back, so neither of the pair pays for what the other left behind.
    const measure = async (operation: 'raw' | 'migrate') => {
      await quiet(db);
      return withCpu(s3.pids, () => runWorker(operation, url, proxy.endpoint, s3.bucket, concurrency, objects), proxy);
    };
    const a = await measure(first);
    const b = await measure(first === 'raw' ? 'migrate' : 'raw');
    const [raw, migrate] = first === 'raw' ? [a, b] : [b, a];
    const ratio = rate(migrate) / rate(raw);
    pairs.push({ raw, migrate, ratio, first });
    console.log(`  pair ${index + 1} (${first} first): raw ${rate(raw).toFixed(0)} obj/s, migrate ${rate(migrate).toFixed(0)} obj/s → ${ratio.toFixed(2)}x`);
    console.log(cpuLine(raw));
    console.log(cpuLine(migrate));
  }
  return { pairs, median: [...pairs].sort((x, y) => x.ratio - y.ratio)[Math.floor(pairs.length / 2)] };
}

/** The plan's naive job straight to the S3 server. */
export async function measureNaiveDirect(db: Db, url: string, s3: BenchStore): Promise<Measure> {
  await resetMigration(db);
  const naiveDirect = await runWorker('naive', url, s3.endpoint, s3.bucket, 1, options.naiveFiles);
  console.log(line('naive, direct', naiveDirect));
  return naiveDirect;
}

/** Everything through the 50 ms proxy; `raw` is the direct c=16 ceiling from the throughput step. */
export async function measureLatency(db: Db, url: string, s3: BenchStore, raw: Measure): Promise<Record<string, unknown>> {
  const proxy = await latencyProxy(s3);
  const latency: Record<string, unknown> = {};
  const naive = await runWorker('naive', url, proxy.endpoint, s3.bucket, 1, options.naiveFiles);
  console.log(line('naive, 50 ms proxy', naive));
  latency.naive = naive;
  // c=8 and c=32 one pair each; c=64, the target, several pairs over a longer window (the median pair).
  for (const { concurrency, objects, count } of [
    { concurrency: 8, objects: options.latencyFiles, count: 1 },
    { concurrency: 32, objects: options.latencyFiles, count: 1 },
    { concurrency: 64, objects: Math.min(options.c64Files, options.files), count: options.c64Pairs },
  ]) {
    console.log(`c=${concurrency} through 50 ms, ${count} pair${count > 1 ? 's' : ''} of ${objects} objects:`);
    const { pairs, median } = await pairedThroughProxy(db, url, s3, proxy, concurrency, objects, count);
    const ceiling = Math.min(concurrency / 0.05, rate(raw));
    console.log(
      `  migrate / raw through the same proxy: ${pairs.map((pair) => pair.ratio.toFixed(2)).join(', ')}${count > 1 ? ` → median ${median.ratio.toFixed(2)}` : ''}${concurrency === 64 ? ' (target >= 1.2)' : ''}; migrate / min(c/latency, raw) = ${(rate(median.migrate) / ceiling).toFixed(2)}; migrate/naive = ${(rate(median.migrate) / rate(naive)).toFixed(1)}x`,
    );
    latency[`c${concurrency}`] = {
      objects,
      raw: median.raw,
      migrate: median.migrate,
      ceiling,
      ratio: rate(median.migrate) / ceiling,
      vsRawThroughProxy: median.ratio,
      vsNaive: rate(median.migrate) / rate(naive),
      ...(count > 1 ? { pairs } : {}),
    };
  }
  latency.scaleOut = await measureScaleOut(db, url, s3, proxy);
  latency.guardedDeletes = await measureGuardedDeletes(db, url, s3, proxy);
  if (options.profile) {
    // Where the tool's own time goes at c=64 through the proxy (node --cpu-prof of the worker).
    await resetMigration(db);
    latency.profile = await profileMigrate('c=64 through 50 ms', url, proxy.endpoint, s3.bucket, 64, options.latencyFiles);
  }
  await proxy.stop();
  return latency;
}

/** Scaling out: four processes at c=8 against one, on the same rows, PostgreSQL coordinating. */
async function measureScaleOut(db: Db, url: string, s3: BenchStore, proxy: S3Proxy) {
  await resetMigration(db);
  const single = await runWorker('migrate', url, proxy.endpoint, s3.bucket, 8, options.latencyFiles);
  await resetMigration(db);
  const many = await Promise.all([0, 1, 2, 3].map(() => runWorker('migrate', url, proxy.endpoint, s3.bucket, 8, options.latencyFiles)));
  // From the first worker's start of work to the last one's end: process start-up is not migration time.
  const manySeconds = (Math.max(...many.map((m) => m.endedAt!)) - Math.min(...many.map((m) => m.startedAt!))) / 1000;
  const manyObjects = many.reduce((sum, m) => sum + m.objects, 0);
  const scaleUp = manyObjects / manySeconds / rate(single);
  console.log(`4 processes at c=8 through 50 ms: ${manyObjects} objects in ${manySeconds.toFixed(2)} s = ${(manyObjects / manySeconds).toFixed(0)} obj/s vs one process ${rate(single).toFixed(0)} obj/s → ${scaleUp.toFixed(2)}x (target >= 3x)`);
  // Exactly once: every row the four uploaded is flipped, and no row was uploaded by two of them.
  const [{ flipped }] = await query<{ flipped: number }>(db, "SELECT count(*)::int AS flipped FROM app_files WHERE storage_location = 'hybrid'");
  return { single, many, manySeconds, manyObjects, scaleUp, flipped };
}

/** Guarded deletes through 50 ms: HEAD, a conditional 0-byte tombstone, then DELETE, per object. */
async function measureGuardedDeletes(db: Db, url: string, s3: BenchStore, proxy: S3Proxy) {
  await resetMigration(db);
  const apps = (await query<{ app_id: string }>(db, 'SELECT DISTINCT app_id FROM app_files ORDER BY app_id LIMIT 3')).map((row) => row.app_id);
  await runWorker('migrate', url, s3.endpoint, s3.bucket, 16, undefined, [], apps.join(','));
  await query(db, "UPDATE app_files SET storage_location = 'database', r2_object_key = NULL WHERE app_id = ANY($1::bigint[])", [apps]);
  const cleaned = await runWorker('cleanup', url, proxy.endpoint, s3.bucket, 16, apps.join(','));
  const window = (cleaned.extra as { deleteWindow: { count: number; p50Ms: number; p99Ms: number; maxMs: number } }).deleteWindow;
  console.log(
    `cleanup through 50 ms, c=16: ${cleaned.objects} objects deleted in ${cleaned.seconds.toFixed(2)} s (${(cleaned.objects / cleaned.seconds).toFixed(0)}/s); tombstone-to-delete window p50 ${window.p50Ms} ms, p99 ${window.p99Ms} ms, max ${window.maxMs} ms`,
  );
  return { cleanup: cleaned, window };
}
