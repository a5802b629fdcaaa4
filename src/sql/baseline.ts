import { query, type Queryable } from '../db.ts';
import { TABLES, TABLE_NAMES } from '../tables.ts';
import { TOASTED_ABOVE_BYTES } from './table-sizes.ts';

/**
 * What the three tables took on disk before this tool changed anything: recorded once, by the first
 * `schema --apply` (or the first `migrate`, on a database whose schema came from elsewhere), so the report
 * can measure the plan's "70-80% reduction in app_files table size" against it.
 */
export const BASELINE_TABLE = 'overskill_storage_baseline';

export const BASELINE_DDL = `CREATE TABLE IF NOT EXISTS ${BASELINE_TABLE} (
  table_name text PRIMARY KEY,
  taken_at timestamptz NOT NULL DEFAULT now(),
  taken_by text NOT NULL,
  heap_bytes bigint NOT NULL,
  toast_bytes bigint NOT NULL,
  index_bytes bigint NOT NULL,
  total_bytes bigint NOT NULL,
  content_rows bigint NOT NULL,
  content_bytes bigint NOT NULL
)`;

export interface Baseline {
  table: string;
  takenAt: Date;
  takenBy: string;
  heapBytes: number;
  toastBytes: number;
  indexBytes: number;
  totalBytes: number;
  contentRows: number;
  contentBytes: number;
  /**
   * Contents over TOASTED_ABOVE_BYTES, their bytes and what PostgreSQL kept of them (pg_column_size): how TOAST compressed
   * the contents that later leave, once none of them is left to measure. Null in a baseline taken before
   * this was recorded.
   */
  toastedContentBytes: number | null;
  toastedStoredBytes: number | null;
}

/** The columns of the baseline added after its first release (schema items of their own). */
export const BASELINE_COLUMNS = [
  { name: 'toasted_content_bytes', type: 'bigint', purpose: 'bytes of the contents over 2 KiB before anything moved' },
  { name: 'toasted_stored_bytes', type: 'bigint', purpose: 'what PostgreSQL kept of them (pg_column_size): how TOAST compressed the contents that leave' },
] as const;

/**
 * Records the baseline of each table that has none yet. Taking one counts and sizes every content of the
 * table (a scan of its whole heap), so a table that has its baseline is not touched at all: once every table
 * has one, this is one read of the baseline table, and every later migrate starts without scanning.
 */
export async function recordBaseline(db: Queryable, takenBy: string): Promise<void> {
  const recorded = new Set((await query<{ table_name: string }>(db, `SELECT table_name FROM ${BASELINE_TABLE}`)).map((row) => row.table_name));
  for (const name of TABLE_NAMES) {
    const t = TABLES[name];
    if (recorded.has(t.table)) continue;
    await query(
      db,
      `INSERT INTO ${BASELINE_TABLE} (table_name, taken_by, heap_bytes, toast_bytes, index_bytes, total_bytes, content_rows, content_bytes, toasted_content_bytes, toasted_stored_bytes)
       SELECT $1, $2,
              pg_table_size(c.oid) - coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0),
              coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0),
              pg_indexes_size(c.oid), pg_total_relation_size(c.oid),
              s.rows, s.bytes, s.toasted_bytes, s.toasted_stored
         FROM pg_class c,
              (SELECT count(${t.contentColumn}) AS rows, coalesce(sum(octet_length(${t.contentColumn})), 0) AS bytes,
                      coalesce(sum(octet_length(${t.contentColumn})) FILTER (WHERE octet_length(${t.contentColumn}) > ${TOASTED_ABOVE_BYTES}), 0) AS toasted_bytes,
                      coalesce(sum(pg_column_size(${t.contentColumn})) FILTER (WHERE octet_length(${t.contentColumn}) > ${TOASTED_ABOVE_BYTES}), 0) AS toasted_stored
                 FROM ${t.table}) s
        WHERE c.oid = to_regclass($1)
       ON CONFLICT (table_name) DO NOTHING`,
      [t.table, takenBy],
    );
  }
}

export async function readBaseline(db: Queryable): Promise<Baseline[]> {
  if (!(await query<{ present: boolean }>(db, `SELECT to_regclass('${BASELINE_TABLE}') IS NOT NULL AS present`))[0].present) return [];
  return query<Baseline>(
    db,
    `SELECT table_name AS table, taken_at AS "takenAt", taken_by AS "takenBy", heap_bytes::float8 AS "heapBytes", toast_bytes::float8 AS "toastBytes",
            index_bytes::float8 AS "indexBytes", total_bytes::float8 AS "totalBytes", content_rows::float8 AS "contentRows", content_bytes::float8 AS "contentBytes",
            toasted_content_bytes::float8 AS "toastedContentBytes", toasted_stored_bytes::float8 AS "toastedStoredBytes"
       FROM ${BASELINE_TABLE}`,
  );
}

