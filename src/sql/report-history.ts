import { query, type Queryable } from '../db.ts';

/** One row per `maintain` run: what the report said that day, for the report's history charts. */
export const REPORT_HISTORY_TABLE = 'overskill_storage_report_history';

export const REPORT_HISTORY_DDL = `CREATE TABLE IF NOT EXISTS ${REPORT_HISTORY_TABLE} (
  id bigserial PRIMARY KEY,
  taken_at timestamptz NOT NULL DEFAULT now(),
  run_id bigint,
  snapshot jsonb NOT NULL
)`;

/** The figures a day of history keeps (a small part of the report, so a year of it stays small). */
export interface HistorySnapshot {
  /** Content bytes by where they live: database (only there), hybrid (both), r2 (only in R2). */
  bytesByLocation: { database: number; hybrid: number; r2: number };
  /** Bytes held in the database and in R2, whatever the location: the contents' own bytes. */
  databaseContentBytes: number;
  /** The same database contents as PostgreSQL keeps them (pg_column_size, TOAST's compression included). Absent in days recorded before it was kept. */
  databaseStoredBytes?: number;
  r2Bytes: number;
  /** The three tables on disk (heap, TOAST, indexes). */
  databaseDiskBytes: number;
  monthlyCost: { database: number; r2: number; total: number };
  rows: number;
  problems: number;
  /** R2 reads that day (maintain's deep sample): attempted, and failed outright. Absent in days recorded before it was kept. */
  reads?: { attempted: number; failed: number };
}

export interface HistoryPoint {
  takenAt: Date;
  runId: string | null;
  snapshot: HistorySnapshot;
}

export async function recordHistory(db: Queryable, snapshot: HistorySnapshot, runId?: string): Promise<void> {
  await query(db, `INSERT INTO ${REPORT_HISTORY_TABLE} (run_id, snapshot) VALUES ($1::bigint, $2::jsonb)`, [runId ?? null, JSON.stringify(snapshot)]);
}

/** The last `days` days of history, oldest first; none when the table is not there yet. */
export async function readHistory(db: Queryable, days = 400): Promise<HistoryPoint[]> {
  const [{ present }] = await query<{ present: boolean }>(db, `SELECT to_regclass($1) IS NOT NULL AS present`, [REPORT_HISTORY_TABLE]);
  if (!present) return [];
  const rows = await query<{ taken_at: Date; run_id: string | null; snapshot: HistorySnapshot }>(
    db,
    `SELECT taken_at, run_id, snapshot FROM ${REPORT_HISTORY_TABLE} WHERE taken_at > now() - make_interval(days => $1::int) ORDER BY taken_at`,
    [days],
  );
  return rows.map((row) => ({ takenAt: row.taken_at, runId: row.run_id, snapshot: row.snapshot }));
}
