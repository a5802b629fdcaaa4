import type { StorageContext } from '../context.ts';
import { query } from '../db.ts';
import type { ReadProbe } from './report.ts';

/**
 * Times `reads` R2 reads of app files, as the app's hybrid retrieval does them when the database holds no
 * copy: one GET, hashed and checked against content_hash. Files are picked at random among those in R2.
 */
export async function probeReads(context: StorageContext, reads: number): Promise<ReadProbe | undefined> {
  const rows = await query<{ key: string; hash: string }>(
    context.db,
    `SELECT r2_object_key AS key, content_hash AS hash FROM app_files
      WHERE storage_location IN ('hybrid', 'r2') AND r2_object_key IS NOT NULL AND content_hash IS NOT NULL
      ORDER BY random() LIMIT $1`,
    [reads],
  );
  if (!rows.length) return undefined;
  const times: number[] = [];
  let failed = 0;
  for (let i = 0; i < reads; i++) {
    const row = rows[i % rows.length];
    const started = performance.now();
    try {
      await context.store.getVerified(row.key, row.hash);
      times.push(performance.now() - started);
    } catch {
      // A read that did not give the content back counts against availability (metric 3), not in the timings.
      failed++;
    }
  }
  times.sort((a, b) => a - b);
  const at = (p: number) => times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))] ?? 0;
  return { reads: times.length + failed, failed, p50Ms: at(50), p95Ms: at(95) };
}
