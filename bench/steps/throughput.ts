/** Throughput at concurrency 16, straight to the S3 server: the bare SDK loop (raw) against migrate. */
import type { Db } from '../../src/db.ts';
import { cpuLine, line, rate } from '../figures.ts';
import { quiet, resetMigration, type BenchStore } from '../fixture.ts';
import { runWorker, withCpu, type Measured } from '../processes.ts';
import { profileMigrate } from './profile.ts';

export interface ThroughputResult {
  raw: Measured;
  rawRuns: Measured[];
  migrate: Measured;
  ratio: number;
}

/**
 * raw runs before and after migrate; the faster of the two is the ceiling (the first pays for a cold server).
 * Each of the three starts on a quiet machine, as the pairs through the proxy do. Then migrate again under
 * node --cpu-prof: kept in the JSON, so the next change to the hot path can be judged against this one.
 */
export async function measureThroughput(db: Db, url: string, s3: BenchStore): Promise<{ throughput: ThroughputResult; profile: Awaited<ReturnType<typeof profileMigrate>> }> {
  const direct = async (operation: 'raw' | 'migrate') => {
    await quiet(db);
    return withCpu(s3.pids, () => runWorker(operation, url, s3.endpoint, s3.bucket, 16));
  };
  const rawFirst = await direct('raw');
  const migrated = await direct('migrate');
  const rawSecond = await direct('raw');
  const raw = rate(rawSecond) > rate(rawFirst) ? rawSecond : rawFirst;
  console.log(line('raw PutObject loop (c=16)', raw));
  console.log(cpuLine(raw));
  console.log(line('migrate (c=16)', migrated));
  console.log(cpuLine(migrated));
  const ratio = rate(migrated) / rate(raw);
  console.log(`  migrate/raw = ${ratio.toFixed(2)}  (target >= 0.9); statements per batch ≈ ${(migrated.statements / Math.max(1, migrated.batches)).toFixed(2)}; S3 requests per object = ${(Object.values(migrated.requests).reduce((a, b) => a + b, 0) / migrated.objects).toFixed(3)}`);
  await resetMigration(db);
  const profile = await profileMigrate('c=16, direct', url, s3.endpoint, s3.bucket, 16);
  return { throughput: { raw, rawRuns: [rawFirst, rawSecond], migrate: migrated, ratio }, profile };
}
