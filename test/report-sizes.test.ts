import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { insertApp, insertFile, text } from './support/seed.ts';

/** The report's size distribution, on-disk sizes and monthly cost projection (what the HTML report draws). */
describe('report: sizes, disk and monthly cost', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => env?.close());

  it('buckets contents by powers of two exactly at the boundaries, and projects the cost of finalize', async () => {
    const app = await insertApp(env.db);
    for (const size of [0, 1, 1023, 1024, 1025, 2047, 2048, 20_000]) await insertFile(env.db, app, `f${size}.txt`, text(size, 'x'));
    expect((await cli(['migrate', '--yes', '--tables', 'files'], env.cliEnv)).code).toBe(0);
    const report = (await cli(['report', '--json', '--tables', 'files', '--price-database', '1', '--price-storage', '0.5'], env.cliEnv)).json();
    const rowsIn = (bucket: number) => report.sizes.find((b: { bucket: number }) => b.bucket === bucket)?.rows ?? 0;
    expect([rowsIn(0), rowsIn(9), rowsIn(10), rowsIn(11), rowsIn(14)]).toEqual([2, 1, 3, 1, 1]);
    expect(report.sizes.reduce((sum: number, b: { rows: number }) => sum + b.rows, 0)).toBe(8);
    expect(report.sizes.reduce((sum: number, b: { bytes: number }) => sum + b.bytes, 0)).toBe(0 + 1 + 1023 + 1024 + 1025 + 2047 + 2048 + 20_000);
    // the table's on-disk size is PostgreSQL's own figure, split into its parts
    const disk = report.disk[0];
    expect(disk.table).toBe('files');
    expect(disk.heapBytes + disk.toastBytes + disk.indexBytes).toBe(disk.totalBytes);
    expect(disk.indexBytes).toBeGreaterThan(0);
    // finalize would clear the 20,000-byte copy: the database part of the cost drops by exactly that
    const GB = 1e9;
    expect(report.monthly.now.database).toBeCloseTo(report.totals.dbBytes / GB, 12);
    expect(report.monthly.now.database - report.monthly.afterFinalize.database).toBeCloseTo(20_000 / GB, 12);
    expect(report.monthly.afterFinalize.r2).toBe(report.monthly.now.r2);
    expect(report.monthly.now.r2).toBeCloseTo((report.totals.r2Bytes / GB) * 0.5, 12);
    expect(report.totals.contentBytes).toBe(0 + 1 + 1023 + 1024 + 1025 + 2047 + 2048 + 20_000);
  });
});
