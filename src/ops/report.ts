import type { Db } from '../db.ts';
import type { StoredTable } from '../tables.ts';
import type { RowFilter } from '../sql/filters.ts';
import { locationTotals, sizeHistogram, type LocationTotals, type SizeBucket } from '../sql/aggregates.ts';
import { reclaimableSpace, tableDiskSizes, type ReclaimableSpace, type TableDiskSize } from '../sql/table-sizes.ts';
import { readBaseline, type Baseline } from '../sql/baseline.ts';
import { estimateCompression, type CompressionEstimate, type CompressionMeasured } from './compression-stats.ts';
import { LOCATION, type PlacementPolicy, inR2 } from '../placement.ts';
import { successMetrics, type ReadProbe, type SuccessMetric } from './success-metrics.ts';
import { classACost, databaseCost, storageCost, type Prices } from '../cost.ts';
import { assertSchemaReady } from './schema.ts';
import { runHistory } from './runs.ts';
import { readHistory, type HistoryPoint, type HistorySnapshot } from '../sql/report-history.ts';
import { historyBytesByAge } from '../sql/prune-versions.ts';
import { tableFootprint } from '../sql/table-footprint.ts';

export interface ReportTable {
  table: string;
  locations: { location: string; rows: number; dbBytes: number; dbStoredBytes: number; r2Bytes: number }[];
  rows: number;
  /** Content bytes held in the database. */
  dbBytes: number;
  /** What they take there (pg_column_size: TOAST's compression included): the database side's figure. */
  dbStoredBytes: number;
  r2Bytes: number;
  pendingRows: number;
  pendingBytes: number;
  pendingStoredBytes: number;
  movedRows: number;
  finalizableRows: number;
  finalizableBytes: number;
  /** What finalize would free where PostgreSQL keeps it. */
  finalizableStoredBytes: number;
  /** Percent of the rows that belong in R2 which are there (hybrid or r2). */
  progressPercent: number;
  /** Content bytes no longer held in the database because rows are r2. */
  dbBytesSaved: number;
  /**
   * What those contents took there, estimated (cleared contents leave no size behind): their bytes at the
   * ratio TOAST keeps the table's contents above the r2 threshold now, else those over 2 KiB, else at the
   * ratio the baseline measured before anything moved, else at 1.
   */
  dbStoredBytesSaved: number;
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
    /** What R2 stores and is priced on: the objects' own sizes where the bucket was listed (compressed ones count as stored), else the contents' bytes. */
    r2StoredBytes: number;
    r2StoredFrom: 'bucket listing' | 'content sizes';
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

export type { ProjectedStep, ReadProbe, SuccessMetric } from './success-metrics.ts';

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
  const [totals, sizes, disk, history, space, baselines, days, versionHistory] = await Promise.all([
    locationTotals(db, tables, policy, filter),
    sizeHistogram(db, tables, filter),
    tableDiskSizes(db, tables),
    runHistory(db, { limit: REPORTED_RUNS }, { readOnly: true }),
    reclaimableSpace(db, tables),
    readBaseline(db),
    readHistory(db),
    historyBytesByAge(db),
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
  const summarizeAll = (rows: LocationTotals[]) =>
    tables.map((table) => {
      const base = baselines.find((b) => b.table === table.table);
      const baselineShare = base?.toastedContentBytes ? (base.toastedStoredBytes ?? base.toastedContentBytes) / base.toastedContentBytes : undefined;
      return summarizeTable(table.name, rows.filter((row) => row.table === table.name), baselineShare);
    });
  const reportTables = summarizeAll(totals);
  const sum = (pick: (t: ReportTable) => number) => reportTables.reduce((acc, t) => acc + pick(t), 0);
  const all = {
    rows: sum((t) => t.rows),
    dbBytes: sum((t) => t.dbBytes),
    dbStoredBytes: sum((t) => t.dbStoredBytes),
    r2Bytes: sum((t) => t.r2Bytes),
    pendingRows: sum((t) => t.pendingRows),
    pendingBytes: sum((t) => t.pendingBytes),
    pendingStoredBytes: sum((t) => t.pendingStoredBytes),
    movedRows: sum((t) => t.movedRows),
    finalizableRows: sum((t) => t.finalizableRows),
    finalizableBytes: sum((t) => t.finalizableBytes),
    finalizableStoredBytes: sum((t) => t.finalizableStoredBytes),
    dbBytesSaved: sum((t) => t.dbBytesSaved),
    dbStoredBytesSaved: sum((t) => t.dbStoredBytesSaved),
    contentBytes: sum((t) => t.contentBytes),
    progressPercent: 0,
  };
  // R2 bills the objects as stored: gzip-compressed ones for their compressed size, a shared object once.
  const r2StoredBytes = measuredCompression ? measuredCompression.storedBytes : all.r2Bytes;
  const monthly = (databaseBytes: number): MonthlyCost => {
    const database = databaseCost(databaseBytes, prices);
    const r2 = storageCost(r2StoredBytes, prices);
    return { database, r2, total: database + r2 };
  };
  all.progressPercent = percent(all.movedRows, all.movedRows + all.pendingRows);
  const estimate = await estimateCompression(db, tables, policy.hybridMin, all.pendingBytes);
  // The plan's metrics are about whole tables (their size on disk, the bucket's cost): under --app or a rollout,
  // the rows they count are every table's, not the scope's, or a scoped count would sit beside a whole-table size.
  const scoped = Object.values(filter).some((value) => value !== undefined);
  const basis = scoped ? summarizeAll(await locationTotals(db, tables, policy, {})) : reportTables;
  const basisR2Bytes = scoped && !measuredCompression ? basis.reduce((acc, t) => acc + t.r2Bytes, 0) : r2StoredBytes;
  // What the hybrid contents take on disk: those finalize clears (above the r2 threshold), and the band below it.
  const hybridStored = new Map(
    basis.map((t) => {
      const hybrid = t.locations.find((l) => l.location === LOCATION.hybrid)?.dbStoredBytes ?? 0;
      return [t.table, { finalizable: t.finalizableStoredBytes, band: Math.max(0, hybrid - t.finalizableStoredBytes) }];
    }),
  );
  const metricTables = basis.map((t) => {
    const database = t.locations.find((l) => l.location === LOCATION.database);
    // The rows that stay once migrate has taken what it will: those below the hybrid threshold.
    return {
      table: t.table,
      pendingBytes: t.pendingBytes,
      stayingRows: Math.max(0, (database?.rows ?? 0) - t.pendingRows),
      stayingBytes: Math.max(0, (database?.dbBytes ?? 0) - t.pendingBytes),
      stayingStoredBytes: Math.max(0, (database?.dbStoredBytes ?? 0) - t.pendingStoredBytes),
    };
  });
  const filesTable = tables.find((t) => t.name === 'files');
  const footprint = filesTable && disk.some((d) => d.table === 'files') ? await tableFootprint(db, filesTable) : undefined;
  const metrics = successMetrics({ disk, space, baseline, prices, r2Bytes: basisR2Bytes, movedRows: basis.reduce((acc, t) => acc + t.movedRows, 0), probe, tables: metricTables, history: days, hybridMin: policy.hybridMin, hybridStored, compressionShare: estimate.savingShare, footprint });
  return {
    tables: reportTables,
    totals: all,
    cost: {
      r2StoredBytes,
      r2StoredFrom: measuredCompression ? 'bucket listing' : 'content sizes',
      r2StoragePerMonth: storageCost(r2StoredBytes, prices),
      uploadsSoFar: classACost(all.movedRows, prices),
      uploadsRemaining: classACost(all.pendingRows, prices),
      databaseStorageSavedPerMonth: databaseCost(all.dbStoredBytesSaved, prices),
    },
    monthly: { now: monthly(all.dbStoredBytes), afterFinalize: monthly(all.dbStoredBytes - all.finalizableStoredBytes) },
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

function percent(part: number, whole: number): number {
  return whole === 0 ? 100 : Math.round((part / whole) * 1000) / 10;
}

/** `baselineShare`: how TOAST kept the table's contents over 2 KiB before anything moved (stored ÷ raw), where the baseline recorded it. */
function summarizeTable(name: string, rows: LocationTotals[], baselineShare?: number): ReportTable {
  const locations = rows
    .map((row) => ({ location: row.location ?? '(null)', rows: row.rows, dbBytes: row.db_bytes, dbStoredBytes: row.db_stored_bytes, r2Bytes: row.r2_bytes }))
    .sort((a, b) => a.location.localeCompare(b.location));
  const sum = (pick: (row: LocationTotals) => number) => rows.reduce((acc, row) => acc + pick(row), 0);
  const moved = rows.filter((row) => inR2(row.location)).reduce((acc, row) => acc + row.rows, 0);
  const pending = sum((row) => row.pending_rows);
  const saved = rows.filter((row) => row.location === LOCATION.r2).reduce((acc, row) => acc + row.r2_bytes, 0);
  const large = sum((row) => row.large_db_bytes);
  const toasted = sum((row) => row.toasted_db_bytes);
  // Contents of the size r2 rows had, if any are left in the database; else those PostgreSQL compresses at all;
  // else (every such content gone) the same as the baseline measured them before anything moved.
  const storedShare = large > 0 ? sum((row) => row.large_db_stored_bytes) / large : toasted > 0 ? sum((row) => row.toasted_db_stored_bytes) / toasted : (baselineShare ?? 1);
  return {
    table: name,
    locations,
    rows: sum((row) => row.rows),
    dbBytes: sum((row) => row.db_bytes),
    dbStoredBytes: sum((row) => row.db_stored_bytes),
    r2Bytes: sum((row) => row.r2_bytes),
    pendingRows: pending,
    pendingBytes: sum((row) => row.pending_bytes),
    pendingStoredBytes: sum((row) => row.pending_stored_bytes),
    movedRows: moved,
    finalizableRows: sum((row) => row.finalizable_rows),
    finalizableBytes: sum((row) => row.finalizable_bytes),
    finalizableStoredBytes: sum((row) => row.finalizable_stored_bytes),
    progressPercent: percent(moved, moved + pending),
    dbBytesSaved: saved,
    dbStoredBytesSaved: Math.round(saved * storedShare),
    contentBytes: rows.reduce((acc, row) => acc + (inR2(row.location) ? row.r2_bytes : row.db_bytes), 0),
  };
}

/** The part of a report one day of history keeps. */
export function historySnapshot(report: StorageReport, problems: number): HistorySnapshot {
  const at = (location: string, bytes: 'dbBytes' | 'r2Bytes') => report.tables.reduce((sum, t) => sum + (t.locations.find((l) => l.location === location)?.[bytes] ?? 0), 0);
  return {
    bytesByLocation: { database: at(LOCATION.database, 'dbBytes'), hybrid: at(LOCATION.hybrid, 'dbBytes'), r2: at(LOCATION.r2, 'r2Bytes') },
    databaseContentBytes: report.totals.dbBytes,
    databaseStoredBytes: report.totals.dbStoredBytes,
    r2Bytes: report.totals.r2Bytes,
    databaseDiskBytes: report.disk.reduce((sum, d) => sum + d.totalBytes, 0),
    monthlyCost: report.monthly.now,
    rows: report.totals.rows,
    problems,
  };
}

