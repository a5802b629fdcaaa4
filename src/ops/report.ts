import type { Db } from '../db.ts';
import type { StoredTable } from '../tables.ts';
import type { RowFilter } from '../sql/filters.ts';
import { locationTotals, sizeHistogram, type LocationTotals, type SizeBucket } from '../sql/aggregates.ts';
import { tableDiskSizes, type TableDiskSize } from '../sql/table-sizes.ts';
import type { PlacementPolicy } from '../placement.ts';
import { classACost, storageCost, type Prices, GB } from '../cost.ts';
import { assertSchemaReady } from './schema.ts';
import { runHistory } from './runs.ts';

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
  /** The last runs recorded (who ran what, how it went) and their progress per minute. */
  runs: { runs: ReportRun[]; progress: { run_id: string; minute: Date; rows_done: number; bytes_done: number }[] };
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
export async function buildReport(db: Db, tables: StoredTable[], policy: PlacementPolicy, prices: Prices, filter: RowFilter): Promise<StorageReport> {
  await assertSchemaReady(db);
  const [totals, sizes, disk, history] = await Promise.all([
    locationTotals(db, tables, policy, filter),
    sizeHistogram(db, tables, filter),
    tableDiskSizes(db, tables),
    runHistory(db, { limit: REPORTED_RUNS }, { readOnly: true }),
  ]);
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
    const database = (databaseBytes / GB) * prices.databasePerGbMonth;
    const r2 = storageCost(all.r2Bytes, prices);
    return { database, r2, total: database + r2 };
  };
  all.progressPercent = percent(all.movedRows, all.movedRows + all.pendingRows);
  return {
    tables: reportTables,
    totals: all,
    cost: {
      r2StoragePerMonth: storageCost(all.r2Bytes, prices),
      uploadsSoFar: classACost(all.movedRows, prices),
      uploadsRemaining: classACost(all.pendingRows, prices),
      databaseStorageSavedPerMonth: (all.dbBytesSaved / GB) * prices.databasePerGbMonth,
    },
    monthly: { now: monthly(all.dbBytes), afterFinalize: monthly(all.dbBytes - all.finalizableBytes) },
    sizes,
    disk,
    prices,
    policy,
    generatedAt: new Date().toISOString(),
    runs,
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
