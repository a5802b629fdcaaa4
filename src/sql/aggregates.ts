import { query, type Queryable } from '../db.ts';
import { sqlRowIsUtf8, type StoredTable } from '../tables.ts';
import type { PlacementPolicy } from '../placement.ts';
import { filterSql, type RowFilter } from './filters.ts';
import { Params } from './params.ts';
import { sqlSizeBand } from './claim-batch.ts';
import { TOASTED_ABOVE_BYTES } from './table-sizes.ts';

export interface LocationTotals {
  table: string;
  location: string | null;
  rows: number;
  /** Bytes of content held in the database. */
  db_bytes: number;
  /** What that content takes there (pg_column_size: as TOAST keeps it, compressed or not). */
  db_stored_bytes: number;
  /** Bytes stored in R2 (hybrid and r2 rows). */
  r2_bytes: number;
  /** Rows still in the database that migrate would move, and their bytes. */
  pending_rows: number;
  pending_bytes: number;
  pending_stored_bytes: number;
  /** Hybrid rows above the r2 threshold that finalize would clear, and the database bytes it would free. */
  finalizable_rows: number;
  finalizable_bytes: number;
  finalizable_stored_bytes: number;
  /** Contents above the r2 threshold still in the database, raw and stored: how TOAST keeps contents of the size r2 rows had. */
  large_db_bytes: number;
  large_db_stored_bytes: number;
  /** Contents over 2 KiB still in the database, raw and stored: PostgreSQL compresses a row's large values once the row passes about 2 KB (TOAST_TUPLE_THRESHOLD). */
  toasted_db_bytes: number;
  toasted_db_stored_bytes: number;
}

/** The report's numbers: one aggregate statement over the three tables, grouped by location. */
export async function locationTotals(db: Queryable, tables: StoredTable[], policy: PlacementPolicy, filter: RowFilter): Promise<LocationTotals[]> {
  const params = new Params();
  const hybridMin = params.add(policy.hybridMin, 'bigint');
  const r2Above = params.add(policy.r2Above, 'bigint');
  const parts = tables.map((t) => {
    const loc = `t.${t.locationColumn}`;
    const len = `octet_length(t.${t.contentColumn})`;
    const stored = `pg_column_size(t.${t.contentColumn})`;
    return `SELECT ${params.add(t.name, 'text')} AS table, ${loc} AS location, count(*)::float8 AS rows,
                   coalesce(sum(${len}), 0)::float8 AS db_bytes,
                   coalesce(sum(${stored}), 0)::float8 AS db_stored_bytes,
                   coalesce(sum(coalesce(t.${t.sizeColumn}::bigint, ${len})) FILTER (WHERE ${loc} IN ('hybrid', 'r2')), 0)::float8 AS r2_bytes,
                   count(*) FILTER (WHERE ${loc} = 'database' AND ${len} >= ${hybridMin})::float8 AS pending_rows,
                   coalesce(sum(${len}) FILTER (WHERE ${loc} = 'database' AND ${len} >= ${hybridMin}), 0)::float8 AS pending_bytes,
                   coalesce(sum(${stored}) FILTER (WHERE ${loc} = 'database' AND ${len} >= ${hybridMin}), 0)::float8 AS pending_stored_bytes,
                   count(*) FILTER (WHERE ${loc} = 'hybrid' AND ${len} > ${r2Above})::float8 AS finalizable_rows,
                   coalesce(sum(${len}) FILTER (WHERE ${loc} = 'hybrid' AND ${len} > ${r2Above}), 0)::float8 AS finalizable_bytes,
                   coalesce(sum(${stored}) FILTER (WHERE ${loc} = 'hybrid' AND ${len} > ${r2Above}), 0)::float8 AS finalizable_stored_bytes,
                   coalesce(sum(${len}) FILTER (WHERE ${len} > ${r2Above}), 0)::float8 AS large_db_bytes,
                   coalesce(sum(${stored}) FILTER (WHERE ${len} > ${r2Above}), 0)::float8 AS large_db_stored_bytes,
                   coalesce(sum(${len}) FILTER (WHERE ${len} > ${TOASTED_ABOVE_BYTES}), 0)::float8 AS toasted_db_bytes,
                   coalesce(sum(${stored}) FILTER (WHERE ${len} > ${TOASTED_ABOVE_BYTES}), 0)::float8 AS toasted_db_stored_bytes
              FROM ${t.table} t
             ${t.name === 'version-files' ? 'JOIN app_versions v ON v.id = t.app_version_id' : ''}
             WHERE ${filterSql(t, filter, params)}
             GROUP BY ${loc}`;
  });
  return query<LocationTotals>(db, parts.join('\nUNION ALL\n'), params.values);
}

export interface SelectionTotals {
  rows: number;
  bytes: number;
  /** What the rows' contents take where PostgreSQL keeps them (pg_column_size: TOAST's compression included); 0 for rows without one. */
  stored_bytes: number;
  /** Rows (and bytes) larger than `above`. */
  rows_above: number;
  bytes_above: number;
  stored_bytes_above: number;
  /** Rows (and bytes) larger than `streamAbove` (these are streamed in parts). */
  rows_streamed: number;
  parts_streamed: number;
  /** With `notUtf8Apart`: rows (and bytes) that are not valid UTF-8 (SQL_ASCII only), which migrate refuses; not counted above. */
  rows_not_utf8: number;
  bytes_not_utf8: number;
}

/**
 * Counts and bytes of the rows an operation would take (same eligibility, filters, order and limit as the
 * run itself), so a dry-run plan shows exactly what would change; with `notUtf8Apart`, the rows migrate
 * refuses for not being UTF-8 are counted apart.
 */
export async function selectionTotals(
  db: Queryable,
  table: StoredTable,
  eligible: (params: Params) => string,
  filter: RowFilter,
  options: { limit?: number; order?: 'id' | 'size-desc'; above?: number; streamAbove?: number; partSize?: number; notUtf8Apart?: boolean } = {},
): Promise<SelectionTotals> {
  const params = new Params();
  const bytesExpr = `coalesce(octet_length(t.${table.contentColumn})::bigint, t.${table.sizeColumn}::bigint, 0)`;
  // The same order the run takes (by id, or largest first by size band, then id) picks the rows a limit keeps;
  // without a limit every eligible row counts, and sorting them would only cost time.
  const order = (options.order ?? 'id') === 'size-desc' ? `${sqlSizeBand(bytesExpr)}, t.id` : 't.id';
  const where = `${eligible(params)} AND ${filterSql(table, filter, params)}`;
  const limited = options.limit !== undefined && Number.isFinite(options.limit);
  const limit = limited ? `LIMIT ${params.add(options.limit!, 'bigint')}` : '';
  // Without thresholds the "above" and "streamed" columns simply count nothing.
  const above = params.add(options.above ?? Number.MAX_SAFE_INTEGER, 'bigint');
  const streamAbove = params.add(options.streamAbove ?? Number.MAX_SAFE_INTEGER, 'bigint');
  const partSize = params.add(options.partSize ?? 1, 'bigint');
  const rows = await query<SelectionTotals>(
    db,
    `SELECT count(*) FILTER (WHERE utf8)::float8 AS rows, coalesce(sum(bytes) FILTER (WHERE utf8), 0)::float8 AS bytes,
            coalesce(sum(stored) FILTER (WHERE utf8), 0)::float8 AS stored_bytes,
            count(*) FILTER (WHERE utf8 AND bytes > ${above})::float8 AS rows_above,
            coalesce(sum(bytes) FILTER (WHERE utf8 AND bytes > ${above}), 0)::float8 AS bytes_above,
            coalesce(sum(stored) FILTER (WHERE utf8 AND bytes > ${above}), 0)::float8 AS stored_bytes_above,
            count(*) FILTER (WHERE utf8 AND bytes > ${streamAbove})::float8 AS rows_streamed,
            coalesce(sum(ceil(bytes::numeric / ${partSize})) FILTER (WHERE utf8 AND bytes > ${streamAbove}), 0)::float8 AS parts_streamed,
            count(*) FILTER (WHERE NOT utf8)::float8 AS rows_not_utf8, coalesce(sum(bytes) FILTER (WHERE NOT utf8), 0)::float8 AS bytes_not_utf8
       FROM (SELECT ${bytesExpr} AS bytes, pg_column_size(t.${table.contentColumn})::bigint AS stored, ${options.notUtf8Apart ? sqlRowIsUtf8(table) : 'true'} AS utf8 FROM ${table.source} WHERE ${where} ${limited ? `ORDER BY ${order} ${limit}` : ''}) e`,
    params.values,
  );
  return rows[0];
}

export interface SizeBucket {
  table: string;
  /** Contents of at least 2^bucket bytes and less than 2^(bucket+1) (bucket 0 also holds empty contents). */
  bucket: number;
  rows: number;
  bytes: number;
}

/** How many contents of each size there are, per table, in powers of two: one statement over the three tables. */
export async function sizeHistogram(db: Queryable, tables: StoredTable[], filter: RowFilter): Promise<SizeBucket[]> {
  const params = new Params();
  const parts = tables.map((t) => {
    const size = `coalesce(octet_length(t.${t.contentColumn})::bigint, t.${t.sizeColumn}::bigint)`;
    // float8 logarithms: numeric log() costs microseconds a row (8 s at a million rows). The epsilon puts exact
    // powers of two in their own bucket and stays below the gap to 2^k - 1 for contents under 512 GB.
    return `SELECT ${params.add(t.name, 'text')} AS table, floor(ln(greatest(${size}, 1)::float8) / ln(2::float8) + 1e-12)::int AS bucket,
                   count(*)::float8 AS rows, coalesce(sum(${size}), 0)::float8 AS bytes
              FROM ${t.table} t
             ${t.name === 'version-files' ? 'JOIN app_versions v ON v.id = t.app_version_id' : ''}
             WHERE ${size} IS NOT NULL AND ${filterSql(t, filter, params)}
             GROUP BY 2`;
  });
  return query<SizeBucket>(db, `${parts.join('\nUNION ALL\n')} ORDER BY 1, 2`, params.values);
}
