import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { insertApp, insertFile, text } from './support/seed.ts';
import { query } from '../src/db.ts';
import { recordBaseline } from '../src/sql/baseline.ts';

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
    // The database side is what PostgreSQL keeps (TOAST compresses the 20,000 x's to a few hundred bytes), the content's own bytes alongside.
    const [stored] = await query<{ all: number; big: number }>(env.db, 'SELECT sum(pg_column_size(content))::float8 AS all, sum(pg_column_size(content)) FILTER (WHERE octet_length(content) = 20000)::float8 AS big FROM app_files');
    expect(report.totals.dbStoredBytes).toBe(stored.all);
    expect(report.totals.dbBytes).toBe(0 + 1 + 1023 + 1024 + 1025 + 2047 + 2048 + 20_000);
    expect(report.totals.finalizableStoredBytes).toBe(stored.big);
    expect(stored.big).toBeLessThan(1_000);
    // finalize would clear the 20,000-byte copy: the database part of the cost drops by what it takes there
    const GB = 1e9;
    expect(report.monthly.now.database).toBeCloseTo(report.totals.dbStoredBytes / GB, 12);
    expect(report.monthly.now.database - report.monthly.afterFinalize.database).toBeCloseTo(stored.big / GB, 12);
    expect(report.monthly.afterFinalize.r2).toBe(report.monthly.now.r2);
    expect(report.monthly.now.r2).toBeCloseTo((report.totals.r2Bytes / GB) * 0.5, 12);
    expect(report.totals.contentBytes).toBe(0 + 1 + 1023 + 1024 + 1025 + 2047 + 2048 + 20_000);
  });
});

/** True sizes against the recorded baseline, what VACUUM can reclaim, and the plan's success metrics. */
describe('report: baseline, reclaimable space and the success metrics', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv({ schema: false });
  });
  afterAll(async () => env?.close());

  const report = async (extra: string[] = []) => (await cli(['report', '--json', '--price-database', '0.5', ...extra], env.cliEnv)).json();

  it('records the baseline at the first schema --apply, measures the reduction against it, and says what VACUUM FULL returns', async () => {
    const app = await insertApp(env.db);
    // 60 files of 40 KB of incompressible-ish text (finalize clears them) and 20 small ones (they stay).
    for (let i = 0; i < 60; i++) await query(env.db, `INSERT INTO app_files (app_id, path, content) SELECT $1, $2, string_agg(md5(random()::text || g::text), '') FROM generate_series(1, 1250) g`, [app, `big${i}.txt`]);
    for (let i = 0; i < 20; i++) await insertFile(env.db, app, `small${i}.txt`, text(600, `s${i}`));
    expect((await cli(['schema', '--apply', '--yes'], env.cliEnv)).code).toBe(0);
    const [base] = await query<{ total: number; taken_by: string }>(env.db, "SELECT total_bytes::float8 AS total, taken_by FROM overskill_storage_baseline WHERE table_name = 'app_files'");
    expect(base.taken_by).toBe('schema --apply');
    const [{ size }] = await query<{ size: number }>(env.db, "SELECT pg_total_relation_size('app_files')::float8 AS size");
    expect(base.total).toBe(size);

    for (const args of [['migrate', '--yes'], ['finalize', '--yes']]) expect((await cli(args, env.cliEnv)).code).toBe(0);
    // A second apply (nothing to add) keeps the first baseline.
    await cli(['schema', '--apply', '--yes'], env.cliEnv);
    expect((await query<{ total: number }>(env.db, "SELECT total_bytes::float8 AS total FROM overskill_storage_baseline WHERE table_name = 'app_files'"))[0].total).toBe(base.total);

    const beforeVacuum = await report();
    const files = beforeVacuum.disk.find((d: { table: string }) => d.table === 'files');
    const space = beforeVacuum.space.find((s: { table: string }) => s.table === 'files');
    expect(space.method).toBe('estimate');
    expect(beforeVacuum.baseline.find((b: { table: string }) => b.table === 'files')).toMatchObject({ totalBytes: base.total, changeBytes: files.totalBytes - base.total });
    const metric = (doc: { metrics: { metric: string }[] }, name: string) => doc.metrics.find((m) => m.metric === name) as unknown as { target: string; measured: number | null; met: boolean | null; measuredText: string };
    // Finalize freed the space but PostgreSQL keeps the files: on disk, nothing shrank yet.
    expect(metric(beforeVacuum, 'app_files table size reduction').measured).toBeLessThan(10);
    expect(metric(beforeVacuum, 'app_files table size reduction').met).toBe(false);
    expect(metric(beforeVacuum, 'app_files table size reduction').target).toBe('70-80%');

    // VACUUM FULL keeps the rows an older snapshot may still see, whichever database holds it: the other test
    // files' transactions (a bulk insert of their own) are waited out, as `reclaim` waits for them.
    const [{ since }] = await query<{ since: string }>(env.db, 'SELECT now()::text AS since');
    for (let waited = 0; waited < 120_000; waited += 250) {
      const [{ older }] = await query<{ older: number }>(env.db, 'SELECT count(*)::int AS older FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid() AND xact_start < $1::timestamptz', [since]);
      if (older === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    await query(env.db, 'VACUUM FULL app_files');
    const [{ after }] = await query<{ after: number }>(env.db, "SELECT pg_total_relation_size('app_files')::float8 AS after");
    // The estimate made before the rewrite came close to what the rewrite returned.
    const returned = files.totalBytes - after;
    expect(Math.abs(space.returnableBytes - returned)).toBeLessThan(0.25 * files.totalBytes);
    const afterVacuum = await report();
    const reduction = metric(afterVacuum, 'app_files table size reduction');
    expect(reduction.measured).toBeCloseTo(((base.total - after) / base.total) * 100, 0);
    expect(reduction.measured).toBeGreaterThan(70);
    expect(reduction.met).toBe(true);
    const printed = (await cli(["report"], env.cliEnv)).stdout;
    expect(printed).toMatch(/The plan's success metrics/);
    expect(printed).toMatch(/app_files table size reduction\s+70-80%\s+\d+(\.\d)?% on disk now/);
    expect(printed).toMatch(/estimates \(pgstattuple is not installed\)/);

    // Cost: the tables on disk at the database price before, against now plus R2; the migration's writes shown for the first month.
    const cost = metric(afterVacuum, 'monthly storage cost reduction');
    const baseBytes = afterVacuum.baseline.reduce((sum: number, b: { totalBytes: number }) => sum + b.totalBytes, 0);
    const nowBytes = afterVacuum.disk.reduce((sum: number, d: { totalBytes: number }) => sum + d.totalBytes, 0);
    const before = (baseBytes / 1e9) * 0.5;
    const now = (nowBytes / 1e9) * 0.5 + (afterVacuum.totals.r2Bytes / 1e9) * 0.015;
    expect(cost.measured).toBeCloseTo(((before - now) / before) * 100, 0);
    expect(cost.measuredText).toMatch(/in the first month, counting the migration's writes/);
    // Retrieval time is measured only when asked.
    expect(metric(afterVacuum, 'file retrieval time')).toMatchObject({ measured: null, met: null, target: '< 100 ms' });
    const probed = await report(['--probe-reads', '10']);
    expect(metric(probed, 'file retrieval time').measured).toBeGreaterThan(0);
    expect(metric(probed, 'file retrieval time').measuredText).toMatch(/p50 .+ ms, p95 .+ ms over 10 reads/);
  });

  it('measures reclaimable space with pgstattuple where it is installed', async () => {
    await query(env.db, 'CREATE EXTENSION IF NOT EXISTS pgstattuple');
    try {
      await query(env.db, "UPDATE app_files SET path = path || '.moved' WHERE path LIKE 'small%'");
      const doc = await report();
      const space = doc.space.find((s: { table: string }) => s.table === 'files');
      expect(space.method).toBe('pgstattuple');
      expect(space.reusableBytes).toBeGreaterThan(0); // the 20 dead versions of the rows just updated, at least
      expect((await cli(['report'], env.cliEnv)).stdout).not.toMatch(/pgstattuple is not installed/);
    } finally {
      await query(env.db, 'DROP EXTENSION IF EXISTS pgstattuple');
    }
  });
});

/**
 * Taking a baseline scans a whole table; a migrate runs it at every start. Once a table has its baseline it
 * must not be read again: here another session holds every content table locked against reads, and the
 * baseline step still returns at once (it would wait for the lock if it read a table).
 */
describe.skipIf(ON_PGLITE)('the baseline, once recorded, costs a later run nothing', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => env?.close());

  const withTablesLocked = async <T>(tables: string[], body: () => Promise<T>): Promise<T> => {
    const holder = new pg.Client({ connectionString: env.databaseUrl });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`LOCK TABLE ${tables.join(', ')} IN ACCESS EXCLUSIVE MODE`);
      return await body();
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
  };
  const within = <T>(ms: number, work: Promise<T>) =>
    Promise.race([work.then(() => 'returned'), new Promise<string>((resolve) => setTimeout(() => resolve('still waiting on a locked table'), ms))]);

  it('reads no table that has its baseline, and still takes the one a table lacks', async () => {
    const app = await insertApp(env.db);
    await insertFile(env.db, app, 'a.txt', text(4000, 'a'));
    const [before] = await query<{ n: number }>(env.db, 'SELECT count(*)::int AS n FROM overskill_storage_baseline');
    expect(before.n).toBe(3);

    const tables = ['app_files', 'app_versions', 'app_version_files'];
    expect(await withTablesLocked(tables, () => within(2000, recordBaseline(env.db, 'migrate')))).toBe('returned');

    // A table whose baseline is missing is measured: its lock is waited for, and the others' are not needed.
    await query(env.db, "DELETE FROM overskill_storage_baseline WHERE table_name = 'app_versions'");
    expect(await withTablesLocked(['app_files', 'app_version_files'], () => within(5000, recordBaseline(env.db, 'migrate')))).toBe('returned');
    const rows = await query<{ table_name: string; taken_by: string }>(env.db, 'SELECT table_name, taken_by FROM overskill_storage_baseline ORDER BY table_name');
    expect(rows.map((row) => row.table_name)).toEqual(['app_files', 'app_version_files', 'app_versions']);
    expect(rows.find((row) => row.table_name === 'app_versions')!.taken_by).toBe('migrate');
    expect(rows.find((row) => row.table_name === 'app_files')!.taken_by).not.toBe('migrate');
  });
});

/** Database figures as PostgreSQL keeps them: TOAST compresses web-app sources several times over. */
describe('report: database bytes on disk', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => env?.close());

  /** Source-like text: lines of the same shapes with other names and numbers, as an app's files are. */
  const source = (bytes: number, seed: number) => {
    const lines: string[] = [];
    let n = seed;
    while (lines.join('\n').length < bytes) {
      n = (n * 1103515245 + 12345) % 2 ** 31;
      lines.push([`export function handle${n % 977}(event: Event${n % 13}) {`, `  const value${n % 31} = props.items[${n % 101}] ?? '${n.toString(36)}';`, `  return <div className="p-${n % 8} text-${['sm', 'lg', 'xl'][n % 3]}">{value${n % 31}}</div>;`, '}'][n % 4]);
    }
    return lines.join('\n').slice(0, bytes);
  };

  it('holds what the contents take on disk, and estimates what finalize cleared within 15%', async () => {
    const app = await insertApp(env.db);
    for (let i = 0; i < 40; i++) await insertFile(env.db, app, `src/c${i}.tsx`, source([1_500, 3_000, 6_000, 9_000, 14_000, 24_000, 40_000][i % 7] + i, i + 1));
    const [before] = await query<{ large: number; large_raw: number; all: number }>(
      env.db,
      'SELECT sum(pg_column_size(content)) FILTER (WHERE octet_length(content) > 10240)::float8 AS large, sum(octet_length(content)) FILTER (WHERE octet_length(content) > 10240)::float8 AS large_raw, sum(pg_column_size(content))::float8 AS all FROM app_files WHERE app_id = $1',
      [app],
    );
    expect(before.large).toBeLessThan(before.large_raw / 2);
    const migrated = (await cli(['report', '--json', '--app', app, '--tables', 'files'], env.cliEnv)).json();
    expect(migrated.totals.dbStoredBytes).toBe(before.all);
    expect((await cli(['migrate', '--yes', '--tables', 'files', '--app', app], env.cliEnv)).code).toBe(0);
    expect((await cli(['finalize', '--yes', '--tables', 'files', '--app', app], env.cliEnv)).code).toBe(0);
    const report = (await cli(['report', '--json', '--app', app, '--tables', 'files'], env.cliEnv)).json();
    expect(report.totals.dbBytesSaved).toBe(before.large_raw);
    expect(Math.abs(report.totals.dbStoredBytesSaved - before.large) / before.large).toBeLessThan(0.15);
    expect(report.cost.databaseStorageSavedPerMonth).toBeCloseTo((report.totals.dbStoredBytesSaved / 1e9) * report.prices.databasePerGbMonth, 12);
    const text = (await cli(['report', '--app', app, '--tables', 'files'], env.cliEnv)).stdout;
    expect(text).toMatch(/Database content held\s+\S+ \S+ on disk \(\S+ \S+ of content/);
  }, 120_000);
});

/**
 * On data shaped like real apps' files (most contents small, TOAST keeping the large ones 2-3x smaller): each
 * table's bytes in the report are what PostgreSQL has on disk, before the migration, after migrate and after
 * finalize; the contents' own bytes are the larger figure, and never the one called "on disk".
 */
describe("report: each table's bytes as the disk has them, on real-shaped data", () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv({ schema: false });
    const client = new pg.Client({ connectionString: env.databaseUrl });
    await client.connect();
    try {
      const { seedDataset } = await import('../src/local/dataset.ts');
      await seedDataset(client, { apps: 20, filesPerApp: 85, largeFiles: 0, versionsPerApp: [3, 10], seed: 3 });
    } finally {
      await client.end();
    }
    expect((await cli(['schema', '--apply', '--yes'], env.cliEnv)).code).toBe(0);
  }, 120_000);
  afterAll(async () => env?.close());

  it('within 5% of pg_total_relation_size per table at every step, contents on disk below their raw bytes', async () => {
    const NAMES: Record<string, string> = { files: 'app_files', snapshots: 'app_versions', 'version-files': 'app_version_files' };
    for (const step of [[], ['migrate', '--yes'], ['finalize', '--yes']]) {
      if (step.length) expect((await cli(step, env.cliEnv)).code).toBe(0);
      const report = (await cli(['report', '--json'], env.cliEnv)).json();
      for (const disk of report.disk as { table: string; heapBytes: number; toastBytes: number; indexBytes: number; totalBytes: number }[]) {
        const [actual] = await query<{ total: number; heap: number; toast: number; indexes: number }>(
          env.db,
          // heap: the table's own forks (main, free space map, visibility map), pg_table_size without its TOAST table
          `SELECT pg_total_relation_size(c.oid)::float8 AS total, (pg_table_size(c.oid) - coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0))::float8 AS heap,
                  coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)::float8 AS toast, pg_indexes_size(c.oid)::float8 AS indexes
             FROM pg_class c WHERE c.oid = to_regclass($1)`,
          [NAMES[disk.table]],
        );
        const near = (reported: number, measured: number, what: string) =>
          expect(Math.abs(reported - measured), `${step[0] ?? 'before'} ${disk.table} ${what}: ${reported} vs ${measured}`).toBeLessThanOrEqual(Math.max(0.05 * measured, 16_384));
        near(disk.totalBytes, actual.total, 'total');
        near(disk.heapBytes, actual.heap, 'heap');
        near(disk.toastBytes, actual.toast, 'TOAST');
        near(disk.indexBytes, actual.indexes, 'indexes');
        const table = report.tables.find((t: { table: string }) => t.table === disk.table);
        // What the contents take on disk fits in the table; their raw bytes (TOAST compresses the large ones) are more.
        expect(table.dbStoredBytes, disk.table).toBeLessThanOrEqual(disk.heapBytes + disk.toastBytes);
        if (table.dbStoredBytes > 1_000_000) expect(table.dbBytes, disk.table).toBeGreaterThan(1.5 * table.dbStoredBytes);
      }
    }
  }, 240_000);

  it("under --app the rows are the app's, the plan's metrics still the whole tables'", async () => {
    const [{ id }] = await query<{ id: string }>(env.db, 'SELECT min(id) AS id FROM apps');
    const whole = (await cli(['report', '--json'], env.cliEnv)).json();
    const scoped = (await cli(['report', '--json', '--app', id], env.cliEnv)).json();
    expect(scoped.totals.rows).toBeLessThan(whole.totals.rows / 5);
    const figures = (doc: { metrics: Record<string, unknown>[] }) => doc.metrics.map(({ metric, measured, floor, holdsUp, levers, next, shortfall }) => ({ metric, measured, floor, holdsUp, levers, next, shortfall }));
    expect(figures(scoped)).toEqual(figures(whole));
  }, 60_000);
});
