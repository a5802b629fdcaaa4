/**
 * Peak RSS: the CLI as users run it (built JavaScript) migrating the bench's rows at c=16, the same work in a
 * table ten times larger, and rows of 1-20 MB (the worker once, the CLI three times).
 */
import { query, type Db } from '../../src/db.ts';
import { line } from '../figures.ts';
import { resetMigration, settle, type BenchStore } from '../fixture.ts';
import { options, UNCONDITIONAL } from '../options.ts';
import { runWorker, timeNode, cliEnvFor, type Measure } from '../processes.ts';
import { seedFiles } from '../seed.ts';

const cliMigrate = (extra: string[] = []) => ['bin/overskill-storage.js', 'migrate', '--yes', ...UNCONDITIONAL, '--json', '--concurrency', '16', '--tables', 'files', ...extra];

/** Peak RSS of the built CLI migrating the table's rows (1-20 MB each), three times from 'database'. */
export async function measureLargeRows(db: Db, cliEnv: NodeJS.ProcessEnv): Promise<{ seconds: number; maxRssMb: number }[]> {
  const runs: { seconds: number; maxRssMb: number }[] = [];
  for (let round = 0; round < 3; round++) {
    await resetMigration(db);
    runs.push(await timeNode(cliMigrate(), cliEnv));
  }
  const [{ rows, mb }] = await query<{ rows: number; mb: number }>(db, 'SELECT count(*)::int AS rows, (sum(octet_length(content)) / 1e6)::float8 AS mb FROM app_files');
  console.log(
    `CLI migrate (c=16, ${rows} rows of 1-20 MB, ${mb.toFixed(0)} MB): peak RSS ${runs.map((m) => m.maxRssMb.toFixed(0)).join(' / ')} MB in ${runs.map((m) => m.seconds.toFixed(1)).join(' / ')} s (target <= 150 MB)`,
  );
  return runs;
}

/**
 * `migrated` is the worker's c=16 migrate from the throughput step, for its peak RSS beside the others. The
 * larger tables replace the bench's rows: this step comes after every other on them.
 */
export async function measureMemory(db: Db, url: string, s3: BenchStore, migrated: Measure): Promise<{ cliMemory: Record<string, unknown>; memory?: Record<string, unknown> }> {
  const { files, scaleRows } = options;
  await resetMigration(db);
  const cliEnv = cliEnvFor(url, s3);
  const cliSmall = await timeNode(cliMigrate(), cliEnv);
  console.log(`CLI migrate (c=16, ${files} rows): ${cliSmall.seconds.toFixed(1)} s, peak RSS ${cliSmall.maxRssMb.toFixed(0)} MB (target <= 150 MB)`);
  const cliMemory: Record<string, unknown> = { rows: files, small: cliSmall };
  if (scaleRows <= 0) return { cliMemory };

  await resetMigration(db);
  await query(db, 'DELETE FROM app_files');
  console.log(`Seeding ${scaleRows} rows to show memory does not grow with the table…`);
  await seedFiles(db, { count: scaleRows, largePercent: 0 });
  await settle(db);
  const scaled = await runWorker('migrate', url, s3.endpoint, s3.bucket, 16, files);
  console.log(line(`migrate ${files} rows of a ${scaleRows}-row table`, scaled));
  const cliScaled = await timeNode(cliMigrate(['--limit', String(files)]), cliEnv);
  console.log(
    `CLI migrate (c=16, ${files} rows of a ${scaleRows}-row table): peak RSS ${cliScaled.maxRssMb.toFixed(0)} MB vs ${cliSmall.maxRssMb.toFixed(0)} MB → ${((cliScaled.maxRssMb / cliSmall.maxRssMb - 1) * 100).toFixed(0)}% (target <= 150 MB)`,
  );
  cliMemory.scaled = cliScaled;
  await query(db, "DELETE FROM app_files WHERE storage_location = 'database'");
  await seedFiles(db, { count: 40, largePercent: 100, largeMaxMb: 20 });
  const large = await runWorker('migrate', url, s3.endpoint, s3.bucket, 16);
  console.log(line('migrate with 1-20 MB rows', large));
  console.log(`  peak RSS: ${migrated.maxRssMb.toFixed(0)} MB (${files} rows) vs ${scaled.maxRssMb.toFixed(0)} MB (${scaleRows}-row table) vs ${large.maxRssMb.toFixed(0)} MB (1-20 MB rows)`);
  // The same 40 rows alone through the CLI, three times (peak RSS moves by a few MB between runs).
  await query(db, 'DELETE FROM app_files WHERE octet_length(content) < 1048576');
  const cliLarge = await measureLargeRows(db, cliEnv);
  return { cliMemory, memory: { small: migrated.maxRssMb, scaled: scaled.maxRssMb, largeRows: large.maxRssMb, scaleRows, cliLargeRows: cliLarge } };
}
