import { query, type Queryable } from '../db.ts';
import type { StoredTable } from '../tables.ts';

/**
 * Contents longer than this are the ones TOAST compresses: it acts on rows wider than TOAST_TUPLE_THRESHOLD
 * (about 2 kB), so a smaller content costs its raw bytes. How the table keeps these is its compression ratio.
 */
export const TOASTED_ABOVE_BYTES = 2048;

export interface TableDiskSize {
  table: string;
  /** The table's own pages (main fork, free space map, visibility map). */
  heapBytes: number;
  /** Its TOAST table and TOAST index, where large contents live, compressed. */
  toastBytes: number;
  indexBytes: number;
  totalBytes: number;
}

/** What each table takes on disk now (pg_total_relation_size and its parts); catalog reads only. */
export async function tableDiskSizes(db: Queryable, tables: StoredTable[]): Promise<TableDiskSize[]> {
  return query<TableDiskSize>(
    db,
    `SELECT u.name AS table,
            pg_table_size(c.oid)::float8 - coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)::float8 AS "heapBytes",
            coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)::float8 AS "toastBytes",
            pg_indexes_size(c.oid)::float8 AS "indexBytes",
            pg_total_relation_size(c.oid)::float8 AS "totalBytes"
       FROM unnest($1::text[], $2::text[]) AS u(name, relation)
       JOIN pg_class c ON c.oid = to_regclass(u.relation)
      ORDER BY array_position($1::text[], u.name)`,
    [tables.map((t) => t.name), tables.map((t) => t.table)],
  );
}

/**
 * Space the tables hold beyond their live rows: what VACUUM makes reusable inside the files, and what
 * VACUUM FULL (or pg_repack) would return to the operating system.
 */
export interface ReclaimableSpace {
  table: string;
  /** Dead rows plus free space in the heap and TOAST: reusable by new rows (after VACUUM for the dead ones). */
  reusableBytes: number;
  /** Heap and TOAST beyond their live rows: what a rewrite would give back (indexes shrink too; not counted). */
  returnableBytes: number;
  /** 'pgstattuple' (measured, approximately, by the extension), or 'estimate' (see reclaimableSpace). */
  method: 'pgstattuple' | 'estimate';
}

/**
 * With the pgstattuple extension installed: pgstattuple_approx on the heap and on the TOAST table (it reads
 * only pages the visibility map does not vouch for). Without it, an estimate: the heap and TOAST size minus
 * the pages the live rows need, from each content's stored size (pg_column_size: compressed or not, inline
 * or in TOAST chunks) and the other columns' average width (pg_stats); dead rows and free space are then
 * not told apart, so reusable and returnable are the same figure. Tables over 100,000 rows are sampled.
 */
/** Tables up to this many rows (by the planner's estimate) are read whole for the estimate; larger ones sampled. */
const ESTIMATE_FULL_SCAN_ROWS = 100_000;

export async function reclaimableSpace(db: Queryable, tables: StoredTable[]): Promise<ReclaimableSpace[]> {
  const [{ installed }] = await query<{ installed: boolean }>(db, "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgstattuple') AS installed");
  const out: ReclaimableSpace[] = [];
  for (const table of tables) {
    if (installed) {
      const [row] = await query<{ reusable: number; returnable: number }>(
        db,
        `WITH parts AS (
           SELECT s.* FROM pg_class c, LATERAL (SELECT * FROM pgstattuple_approx(c.oid)) s WHERE c.oid = to_regclass($1)
           UNION ALL
           SELECT s.* FROM pg_class c, LATERAL (SELECT * FROM pgstattuple_approx(c.reltoastrelid)) s WHERE c.oid = to_regclass($1) AND c.reltoastrelid <> 0)
         SELECT coalesce(sum(dead_tuple_len + approx_free_space), 0)::float8 AS reusable,
                coalesce(sum(table_len - approx_tuple_len), 0)::float8 AS returnable
           FROM parts`,
        [table.table],
      );
      out.push({ table: table.name, reusableBytes: row.reusable, returnableBytes: row.returnable, method: 'pgstattuple' });
      continue;
    }
    // PostgreSQL's layout: a value stored larger than ~2 KB goes out of line in 1,996-byte TOAST chunks, four
    // to a page, leaving an 18-byte pointer in the row; a heap row costs its 24-byte header, a 4-byte line
    // pointer and its columns (the content inline when small, as stored, compressed or not).
    // A large table is sampled (SYSTEM reads only the sampled pages) and the sum scaled by the planner's row
    // count: the figure is an estimate either way, and the report must stay fast on millions of rows.
    const [{ estimate }] = await query<{ estimate: number }>(db, 'SELECT greatest(reltuples, 0)::float8 AS estimate FROM pg_class WHERE oid = to_regclass($1)', [table.table]);
    const samplePercent = estimate > ESTIMATE_FULL_SCAN_ROWS ? Math.max(0.1, (100 * ESTIMATE_FULL_SCAN_ROWS) / estimate) : undefined;
    const [row] = await query<{ stored: number; live: number }>(
      db,
      `WITH live AS (
         SELECT count(*) AS rows,
                coalesce(sum(CASE WHEN cs > 2000 THEN ceil(cs / 1996.0) ELSE 0 END), 0) / 4.0 * 8192 AS toast,
                coalesce(sum(28 + other + CASE WHEN cs > 2000 THEN 18 ELSE coalesce(cs, 0) END), 0) * 8192 / 8168.0 AS heap
           FROM (SELECT pg_column_size(t.${table.contentColumn}) AS cs,
                        coalesce((SELECT sum(s.avg_width) FROM pg_stats s WHERE s.schemaname = current_schema() AND s.tablename = $2 AND s.attname <> $3), 0) AS other
                   FROM ${table.table} t ${samplePercent ? `TABLESAMPLE SYSTEM (${samplePercent.toFixed(4)})` : ''}) v)
       SELECT (pg_table_size(c.oid) - coalesce((SELECT pg_indexes_size(c.reltoastrelid) WHERE c.reltoastrelid <> 0), 0))::float8 AS stored,
              (CASE WHEN $4 AND live.rows > 0 THEN (live.toast + live.heap) * $5::float8 / live.rows ELSE live.toast + live.heap END)::float8 AS live
         FROM pg_class c, live WHERE c.oid = to_regclass($1)`,
      [table.table, table.table, table.contentColumn, samplePercent !== undefined, estimate],
    );
    const spare = Math.max(0, (row?.stored ?? 0) - (row?.live ?? 0));
    out.push({ table: table.name, reusableBytes: spare, returnableBytes: spare, method: 'estimate' });
  }
  return out;
}
