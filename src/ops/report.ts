import type { Db } from '../db.ts';
import type { StoredTable } from '../tables.ts';
import type { RowFilter } from '../sql/filters.ts';
import { locationTotals, sizeHistogram, type LocationTotals, type SizeBucket } from '../sql/aggregates.ts';
import { reclaimableSpace, storedHybridBytes, tableDiskSizes, type ReclaimableSpace, type TableDiskSize } from '../sql/table-sizes.ts';
import { readBaseline, type Baseline } from '../sql/baseline.ts';
import { estimateCompression, type CompressionEstimate, type CompressionMeasured } from './compression-stats.ts';
import type { PlacementPolicy } from '../placement.ts';
import { classACost, databaseCost, storageCost, type Prices, GB } from '../cost.ts';
import { assertSchemaReady } from './schema.ts';
import { runHistory } from './runs.ts';
import { readHistory, type HistoryPoint, type HistorySnapshot } from '../sql/report-history.ts';
import { historyBytesByAge } from '../sql/prune-versions.ts';

export interface ReportTable {
  table: string;
  locations: { location: string; rows: number; dbBytes: number; r2Bytes: number }[];
  rows: number;
  dbBytes: number;
  r2Bytes: number;
  pendingRows: number;
  pendingBytes: number;
  movedRows: number;
  finalizableRows: number;
  finalizableBytes: number;
  /** Percent of the rows that belong in R2 which are there (hybrid or r2). */
  progressPercent: number;
  /** Database bytes no longer held because rows are r2. */
  dbBytesSaved: number;
  /** All of the table's content bytes, wherever they are: what the database held before any migration. */
  contentBytes: number;
}

export interface MonthlyCost {
  database: number;
  r2: number;
  total: number;
}

export interface StorageReport {
  tables: ReportTable[];
  totals: Omit<ReportTable, 'table' | 'locations'>;
  cost: {
    r2StoragePerMonth: number;
    /** One-time Class A cost of the PUTs that moved what is in R2 so far, and of what is left. */
    uploadsSoFar: number;
    uploadsRemaining: number;
    databaseStorageSavedPerMonth: number;
  };
  /** Monthly storage cost of the contents now, and once finalize has cleared what it can (same R2 bytes). */
  monthly: { now: MonthlyCost; afterFinalize: MonthlyCost };
  /** Contents per table by size, in powers of two (bucket b: 2^b to 2^(b+1) bytes). */
  sizes: SizeBucket[];
  /** On-disk size of each table now: heap, TOAST, indexes. */
  disk: TableDiskSize[];
  prices: Prices;
  policy: PlacementPolicy;
  generatedAt: string;
  /** What VACUUM would make reusable and VACUUM FULL would return, per table (measured or estimated). */
  space: ReclaimableSpace[];
  /** Each table's on-disk size before anything moved (recorded by the first `schema --apply` or `migrate`), and the change since. */
  baseline: (Baseline & { changeBytes: number; changePercent: number })[];
  /** The plan's success metrics: target, measured, met. */
  metrics: SuccessMetric[];
  /** What gzip would save (estimated from a sample), and with --list-bucket what the stored objects save now. */
  compression: { estimate: CompressionEstimate; measured?: CompressionMeasured };
  /** Version history (snapshots and version files) by age, in the database and in R2: what a retention policy acts on. */
  versionHistory: { age: string; versions: number; db_bytes: number; r2_bytes: number }[];
  /** One point per `maintain` run over the last 400 days: bytes by location, database size, monthly cost. */
  history: HistoryPoint[];
  /** The last runs recorded (who ran what, how it went) and their progress per minute. */
  runs: { runs: ReportRun[]; progress: { run_id: string; minute: Date; rows_done: number; bytes_done: number }[] };
}

export interface SuccessMetric {
  metric: string;
  target: string;
  /** The measured value in the metric's unit (percent, milliseconds), or null when this report did not measure it. */
  measured: number | null;
  measuredText: string;
  met: boolean | null;
  /** How it was measured, and what it leaves out. */
  note: string;
  /** What each step not taken yet would bring the figure to (cumulative, in order), and the step to take next. */
  steps?: { step: string; brings: number; text: string }[];
  next?: string | null;
  /** When even every step left would not meet the target: by how much, and why. */
  shortfall?: string;
}

/** Read timings for the retrieval metric, when the report was asked to take them (`--probe-reads`). */
export interface ReadProbe {
  /** Reads attempted, and those that did not give the content back. */
  reads: number;
  failed?: number;
  p50Ms: number;
  p95Ms: number;
}

export interface ReportRun {
  id: string;
  command: string;
  state: string;
  operator: string;
  host: string;
  started_at: Date;
  ended_at: Date | null;
  rows_done: number;
  bytes_done: number;
  failed: number;
  refused: number;
  workers: number;
}

const REPORTED_RUNS = 20;

/** Bytes and counts per table and location, progress, savings and R2 cost; one aggregate statement. */
export async function buildReport(
  db: Db,
  tables: StoredTable[],
  policy: PlacementPolicy,
  prices: Prices,
  filter: RowFilter,
  probe?: ReadProbe,
  measuredCompression?: CompressionMeasured,
): Promise<StorageReport> {
  await assertSchemaReady(db);
  const [totals, sizes, disk, history, space, baselines, days, versionHistory, hybridStored] = await Promise.all([
    locationTotals(db, tables, policy, filter),
    sizeHistogram(db, tables, filter),
    tableDiskSizes(db, tables),
    runHistory(db, { limit: REPORTED_RUNS }, { readOnly: true }),
    reclaimableSpace(db, tables),
    readBaseline(db),
    readHistory(db),
    historyBytesByAge(db),
    storedHybridBytes(db, tables, policy.r2Above),
  ]);
  const baseline = baselines
    .map((b) => {
      const name = tables.find((t) => t.table === b.table)?.name;
      const now = disk.find((d) => d.table === name);
      if (!name || !now) return undefined;
      return { ...b, table: name, changeBytes: now.totalBytes - b.totalBytes, changePercent: b.totalBytes ? Math.round(((now.totalBytes - b.totalBytes) / b.totalBytes) * 1000) / 10 : 0 };
    })
    .filter((b): b is NonNullable<typeof b> => b !== undefined);
  const runs = {
    runs: history.runs.map(({ id, command, state, operator, host, started_at, ended_at, rows_done, bytes_done, failed, refused, workers }) => ({ id, command, state, operator, host, started_at, ended_at, rows_done, bytes_done, failed, refused, workers })),
    progress: history.progress,
  };
  const reportTables = tables.map((table) => summarizeTable(table.name, totals.filter((row) => row.table === table.name)));
  const sum = (pick: (t: ReportTable) => number) => reportTables.reduce((acc, t) => acc + pick(t), 0);
  const all = {
    rows: sum((t) => t.rows),
    dbBytes: sum((t) => t.dbBytes),
    r2Bytes: sum((t) => t.r2Bytes),
    pendingRows: sum((t) => t.pendingRows),
    pendingBytes: sum((t) => t.pendingBytes),
    movedRows: sum((t) => t.movedRows),
    finalizableRows: sum((t) => t.finalizableRows),
    finalizableBytes: sum((t) => t.finalizableBytes),
    dbBytesSaved: sum((t) => t.dbBytesSaved),
    contentBytes: sum((t) => t.contentBytes),
    progressPercent: 0,
  };
  const monthly = (databaseBytes: number): MonthlyCost => {
    const database = databaseCost(databaseBytes, prices);
    const r2 = storageCost(all.r2Bytes, prices);
    return { database, r2, total: database + r2 };
  };
  all.progressPercent = percent(all.movedRows, all.movedRows + all.pendingRows);
  const estimate = await estimateCompression(db, tables, policy.hybridMin, all.pendingBytes);
  const metrics = successMetrics({ disk, space, baseline, prices, r2Bytes: all.r2Bytes, movedRows: all.movedRows, probe, tables: reportTables, history: days, hybridMin: policy.hybridMin, hybridStored, compressionShare: estimate.savingShare });
  return {
    tables: reportTables,
    totals: all,
    cost: {
      r2StoragePerMonth: storageCost(all.r2Bytes, prices),
      uploadsSoFar: classACost(all.movedRows, prices),
      uploadsRemaining: classACost(all.pendingRows, prices),
      databaseStorageSavedPerMonth: databaseCost(all.dbBytesSaved, prices),
    },
    monthly: { now: monthly(all.dbBytes), afterFinalize: monthly(all.dbBytes - all.finalizableBytes) },
    sizes,
    disk,
    prices,
    policy,
    generatedAt: new Date().toISOString(),
    space,
    baseline,
    metrics,
    compression: { estimate, ...(measuredCompression ? { measured: measuredCompression } : {}) },
    history: days,
    versionHistory,
    runs,
  };
}

/**
 * The plan's success metrics, measured on disk against the recorded baseline:
 * - app_files table size: (baseline - now) / baseline of pg_total_relation_size. Space finalize freed stays in
 *   the files until VACUUM FULL or pg_repack rewrites them, so the figure after such a rewrite (now minus what
 *   it would return) is given too; "met" judges what the disk holds now.
 * - retrieval time: the p50 of reads the report took itself (`--probe-reads`), else not measured.
 * - monthly storage cost: the three tables' on-disk bytes at --price-database before, against their bytes now
 *   plus R2 storage; the migration's own Class A writes are one-off, shown spread over the first month.
 */
function successMetrics(input: {
  disk: TableDiskSize[];
  space: ReclaimableSpace[];
  baseline: { table: string; totalBytes: number }[];
  prices: Prices;
  r2Bytes: number;
  movedRows: number;
  probe?: ReadProbe;
  tables: ReportTable[];
  history: HistoryPoint[];
  hybridMin: number;
  hybridStored: Map<string, { finalizable: number; band: number }>;
  /** What gzip saves on a sample of the contents (compression-stats.ts), 0 when nothing was sampled. */
  compressionShare: number;
}): SuccessMetric[] {
  const metrics: SuccessMetric[] = [];
  const left = stepsLeft(input.tables, input.space, input.hybridStored);
  const filesBase = input.baseline.find((b) => b.table === 'files');
  const filesNow = input.disk.find((d) => d.table === 'files');
  const filesSpace = input.space.find((s) => s.table === 'files');
  if (filesBase && filesNow && filesBase.totalBytes > 0) {
    const reduction = ((filesBase.totalBytes - filesNow.totalBytes) / filesBase.totalBytes) * 100;
    const afterRewrite = filesSpace ? ((filesBase.totalBytes - (filesNow.totalBytes - filesSpace.returnableBytes)) / filesBase.totalBytes) * 100 : null;
    const files = left.get('files');
    const steps = files ? projectSteps(filesNow.totalBytes, files, (bytes) => round1(((filesBase.totalBytes - bytes) / filesBase.totalBytes) * 100), '%') : [];
    const best = steps.length ? steps[steps.length - 1].brings : round1(reduction);
    const stays = input.tables.find((t) => t.table === 'files')?.locations.find((l) => l.location === 'database');
    metrics.push({
      metric: 'app_files table size reduction',
      target: '70-80%',
      measured: round1(reduction),
      measuredText: `${round1(reduction)}% on disk now${afterRewrite !== null ? `; ${round1(afterRewrite)}% once reclaim returns the freed space (${filesSpace!.method})` : ''}`,
      met: reduction >= 70,
      note: 'pg_total_relation_size (heap, TOAST, indexes) against the baseline; space finalize frees is reused by PostgreSQL but returned to the disk only by a rewrite (`reclaim`)',
      steps,
      // A rewrite that would give back under 5% of the table is not worth naming as the next step.
      next: reduction >= 70 ? null : files?.next === 'reclaim' && files.returnable < 0.05 * filesNow.totalBytes ? null : (files?.next ?? null),
      ...(best < 70
        ? {
            shortfall: `even after every step left, app_files would be about ${best}% smaller, ${round1(70 - best)} points short: ${formatCountPlain(stays?.rows ?? 0)} files below ${input.hybridMin} bytes (${formatMiB(stays?.dbBytes ?? 0)}) stay in the database by the plan's size strategy, and its indexes take ${formatMiB(filesNow.indexBytes)}`,
          }
        : {}),
    });
  } else {
    metrics.push({ metric: 'app_files table size reduction', target: '70-80%', measured: null, measuredText: 'no baseline recorded', met: null, note: 'the baseline is recorded by the first `schema --apply` or `migrate`' });
  }
  metrics.push(
    input.probe
      ? {
          metric: 'file retrieval time',
          target: '< 100 ms',
          measured: round1(input.probe.p50Ms),
          measuredText: `p50 ${round1(input.probe.p50Ms)} ms, p95 ${round1(input.probe.p95Ms)} ms over ${input.probe.reads} reads`,
          met: input.probe.p50Ms < 100,
          note: 'hybrid retrieval of R2-held app files from this machine (no cache); `npm run bench` measures it through a 50 ms proxy with and without the cache',
        }
      : { metric: 'file retrieval time', target: '< 100 ms', measured: null, measuredText: 'not measured by this report', met: null, note: 'pass --probe-reads N (needs the R2 settings) to time N reads from here' },
  );
  metrics.push(availabilityMetric(input.history, input.probe));
  const baseBytes = input.baseline.reduce((sum, b) => sum + b.totalBytes, 0);
  const nowBytes = input.disk.filter((d) => input.baseline.some((b) => b.table === d.table)).reduce((sum, d) => sum + d.totalBytes, 0);
  if (baseBytes > 0 && input.prices.databasePerGbMonth > 0) {
    const before = databaseCost(baseBytes, input.prices);
    const now = databaseCost(nowBytes, input.prices) + storageCost(input.r2Bytes, input.prices);
    const writes = classACost(input.movedRows, input.prices);
    const reduction = ((before - now) / before) * 100;
    const firstMonth = ((before - now - writes) / before) * 100;
    const all = [...left.values()].reduce((sum, t) => ({ freed: sum.freed + t.finalizable + t.band, finalizable: sum.finalizable + t.finalizable, band: sum.band + t.band, returnable: sum.returnable + t.returnable, pending: sum.pending + t.pending }), { freed: 0, finalizable: 0, band: 0, returnable: 0, pending: 0 });
    const costAt = (dbBytes: number) => round1(((before - (databaseCost(dbBytes, input.prices) + storageCost(input.r2Bytes, input.prices))) / before) * 100);
    const costSteps = projectSteps(nowBytes, { ...all, next: null }, costAt, '%');
    if (input.compressionShare > 0.05 && input.r2Bytes > 0) {
      // R2 storage is the cost left once the database is small: gzip shrinks it by the sampled share.
      const floor = Math.max(0, nowBytes - all.returnable - all.finalizable - all.band);
      const compressed = round1(((before - (databaseCost(floor, input.prices) + storageCost(input.r2Bytes * (1 - input.compressionShare), input.prices))) / before) * 100);
      costSteps.push({
        step: 'stored compressed',
        brings: compressed,
        text: `and stored compressed (migrate --compress gzip; objects already stored only by rolling back and migrating again; ${Math.round(input.compressionShare * 100)}% smaller on a sample): about ${compressed}%`,
      });
    }
    const bestCost = costSteps.length ? costSteps[costSteps.length - 1].brings : round1(reduction);
    const floorBytes = Math.max(0, nowBytes - all.returnable - all.finalizable - all.band);
    metrics.push({
      metric: 'monthly storage cost reduction',
      target: '> 90%',
      steps: costSteps,
      next: reduction > 90 ? null : all.pending > 0 ? 'migrate' : all.finalizable > 0 ? 'finalize' : all.band > 0 ? 'finalize --hybrid-band' : all.returnable > 0.05 * nowBytes ? 'reclaim' : null,
      ...(bestCost <= 90
        ? {
            shortfall: `even after every step left, about ${bestCost}%, ${round1(90 - bestCost)} points short: the database keeps about ${formatMiB(floorBytes)} (small files, indexes, metadata), $${databaseCost(floorBytes, input.prices).toFixed(4)}/month at --price-database, and R2 holds ${formatMiB(input.r2Bytes)} at $${storageCost(input.r2Bytes, input.prices).toFixed(4)}/month, against $${before.toFixed(4)} before`,
          }
        : {}),
      measured: round1(reduction),
      measuredText: `${round1(reduction)}% ($${before.toFixed(4)} → $${now.toFixed(4)}/month); ${round1(firstMonth)}% in the first month, counting the migration's writes ($${writes.toFixed(4)})`,
      met: reduction > 90,
      note: `the three tables on disk at $${input.prices.databasePerGbMonth}/GB-month (--price-database) before, against their size now plus R2 storage at $${input.prices.storagePerGbMonth}/GB-month; reads and the database's other costs are left out`,
    });
  } else {
    metrics.push({ metric: 'monthly storage cost reduction', target: '> 90%', measured: null, measuredText: baseBytes > 0 ? 'no database price' : 'no baseline recorded', met: null, note: 'needs the baseline and --price-database' });
  }
  return metrics;
}

const round1 = (value: number) => Math.round(value * 10) / 10;
const formatMiB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const formatCountPlain = (n: number) => n.toLocaleString('en-US');

/** Per table, what the steps not taken yet would free: finalize, the hybrid band, and what a rewrite returns. */
interface StepsLeft {
  pending: number;
  finalizable: number;
  band: number;
  returnable: number;
  next: string | null;
}

function stepsLeft(tables: ReportTable[], space: ReclaimableSpace[], stored: Map<string, { finalizable: number; band: number }>): Map<string, StepsLeft> {
  const out = new Map<string, StepsLeft>();
  for (const table of tables) {
    // What the contents take where they are stored (compressed in TOAST, or inline), not their length.
    const finalizable = stored.get(table.table)?.finalizable ?? 0;
    const band = stored.get(table.table)?.band ?? 0;
    const returnable = space.find((s) => s.table === table.table)?.returnableBytes ?? 0;
    const next = table.pendingBytes > 0 ? 'migrate' : finalizable > 0 ? 'finalize' : band > 0 ? 'finalize --hybrid-band' : returnable > 0 ? 'reclaim' : null;
    out.set(table.table, { pending: table.pendingBytes, finalizable, band, returnable, next });
  }
  return out;
}

/**
 * The figure after each step left, cumulatively: space freed inside the tables comes back to the disk only
 * with the rewrite, so each step is shown with `reclaim` after it. Each content counts for what it takes
 * where it is stored (pg_column_size: compressed or not); a page's own overhead is left out, so the figures
 * are estimates.
 */
function projectSteps(nowBytes: number, left: Omit<StepsLeft, 'next'> & { next: string | null }, figure: (bytesOnDisk: number) => number, unit: string): { step: string; brings: number; text: string }[] {
  const steps: { step: string; brings: number; text: string }[] = [];
  let bytes = nowBytes - left.returnable;
  if (left.returnable > 0) steps.push({ step: 'reclaim', brings: figure(bytes), text: `reclaim alone: ${figure(bytes)}${unit}` });
  if (left.finalizable > 0) {
    bytes -= left.finalizable;
    steps.push({ step: 'finalize, then reclaim', brings: figure(bytes), text: `finalize, then reclaim: about ${figure(bytes)}${unit}` });
  }
  if (left.band > 0) {
    bytes -= left.band;
    steps.push({ step: 'finalize --hybrid-band, then reclaim', brings: figure(bytes), text: `the hybrid band, then reclaim: about ${figure(bytes)}${unit}` });
  }
  return steps;
}

/**
 * The plan's 99.9% availability of R2 access, from the reads the tool itself made: maintain's deep sample each
 * night (the report history keeps each day's reads and failures) and this report's --probe-reads.
 */
function availabilityMetric(history: HistoryPoint[], probe?: ReadProbe): SuccessMetric {
  const days = history.filter((point) => point.snapshot.reads && point.takenAt.getTime() > Date.now() - 30 * 86_400_000);
  const attempted = days.reduce((sum, p) => sum + p.snapshot.reads!.attempted, 0) + (probe?.reads ?? 0);
  const failed = days.reduce((sum, p) => sum + p.snapshot.reads!.failed, 0) + (probe?.failed ?? 0);
  const base = { metric: 'R2 access availability', target: '99.9%' };
  if (!attempted) {
    return { ...base, measured: null, measuredText: 'no reads recorded', met: null, note: "measured from maintain's deep sample (each night's reads and failures) and --probe-reads; run `maintain --yes` nightly, or pass --probe-reads N" };
  }
  const share = ((attempted - failed) / attempted) * 100;
  const period = days.length
    ? `${days.length} maintain run${days.length === 1 ? '' : 's'} from ${days[0].takenAt.toISOString().slice(0, 10)} to ${days[days.length - 1].takenAt.toISOString().slice(0, 10)}${probe ? ' and this report\'s probe' : ''}`
    : "this report's probe";
  const tooFew = attempted < 1000;
  return {
    ...base,
    measured: Math.round(share * 1000) / 1000,
    measuredText: `${(Math.round(share * 1000) / 1000).toString()}% of ${formatCountPlain(attempted)} reads (${formatCountPlain(failed)} failed) over ${period}`,
    met: tooFew && failed === 0 ? null : share >= 99.9,
    note: tooFew && failed === 0
      ? `${formatCountPlain(attempted)} reads cannot tell 99.9% apart from less (one failure in 1,000 is the line): more nights of maintain, or --probe-reads, settle it`
      : 'reads that did not come back (an error or no answer) against all reads; bytes that came back wrong are verify\'s, not availability\'s',
  };
}

function percent(part: number, whole: number): number {
  return whole === 0 ? 100 : Math.round((part / whole) * 1000) / 10;
}

function summarizeTable(name: string, rows: LocationTotals[]): ReportTable {
  const locations = rows
    .map((row) => ({ location: row.location ?? '(null)', rows: row.rows, dbBytes: row.db_bytes, r2Bytes: row.r2_bytes }))
    .sort((a, b) => a.location.localeCompare(b.location));
  const sum = (pick: (row: LocationTotals) => number) => rows.reduce((acc, row) => acc + pick(row), 0);
  const moved = rows.filter((row) => row.location === 'hybrid' || row.location === 'r2').reduce((acc, row) => acc + row.rows, 0);
  const pending = sum((row) => row.pending_rows);
  return {
    table: name,
    locations,
    rows: sum((row) => row.rows),
    dbBytes: sum((row) => row.db_bytes),
    r2Bytes: sum((row) => row.r2_bytes),
    pendingRows: pending,
    pendingBytes: sum((row) => row.pending_bytes),
    movedRows: moved,
    finalizableRows: sum((row) => row.finalizable_rows),
    finalizableBytes: sum((row) => row.finalizable_bytes),
    progressPercent: percent(moved, moved + pending),
    dbBytesSaved: rows.filter((row) => row.location === 'r2').reduce((acc, row) => acc + row.r2_bytes, 0),
    contentBytes: rows.reduce((acc, row) => acc + (row.location === 'hybrid' || row.location === 'r2' ? row.r2_bytes : row.db_bytes), 0),
  };
}

/** The part of a report one day of history keeps. */
export function historySnapshot(report: StorageReport, problems: number): HistorySnapshot {
  const at = (location: string, bytes: 'dbBytes' | 'r2Bytes') => report.tables.reduce((sum, t) => sum + (t.locations.find((l) => l.location === location)?.[bytes] ?? 0), 0);
  return {
    bytesByLocation: { database: at('database', 'dbBytes'), hybrid: at('hybrid', 'dbBytes'), r2: at('r2', 'r2Bytes') },
    databaseContentBytes: report.totals.dbBytes,
    r2Bytes: report.totals.r2Bytes,
    databaseDiskBytes: report.disk.reduce((sum, d) => sum + d.totalBytes, 0),
    monthlyCost: report.monthly.now,
    rows: report.totals.rows,
    problems,
  };
}

