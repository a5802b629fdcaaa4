import { query, type Queryable } from '../db.ts';
import { TABLES, sqlSha256, type StoredTable, type TableName } from '../tables.ts';
import { filterSql, type RowFilter } from './filters.ts';
import { Params } from './params.ts';

/** A row that points at an object, with what the database knows to check the object against. */
export interface KeyedRow {
  table: TableName;
  id: string;
  app_id: string;
  path: string | null;
  location: string | null;
  key: string;
  hash: string | null;
  /** Size recorded at the flip (size_bytes / snapshot_size / content_size). */
  size: number | null;
  /** Size of the content still in the database, or null. */
  db_bytes: number | null;
  db_md5: string | null;
  /** Whether the database content still hashes to `hash` (null when there is no content or no hash). */
  db_hash_ok: boolean | null;
}

function selectFor(table: StoredTable, params: Params, appIds: string[] | undefined, filter: RowFilter, withMd5: boolean): string {
  const c = `t.${table.contentColumn}`;
  const appCondition = appIds ? `${table.appIdExpr} = ANY(${params.add(appIds, 'bigint[]')})` : 'true';
  return `SELECT ${params.add(table.name, 'text')} AS table, t.id, ${table.appIdExpr} AS app_id, ${table.pathExpr} AS path,
                 t.${table.locationColumn} AS location, t.${table.keyColumn} AS key, t.${table.hashColumn} AS hash,
                 t.${table.sizeColumn}::float8 AS size, octet_length(${c})::float8 AS db_bytes,
                 ${withMd5 ? `md5(${c})` : 'NULL::text'} AS db_md5,
                 CASE WHEN ${c} IS NULL OR t.${table.hashColumn} IS NULL THEN NULL ELSE ${sqlSha256(c)} = t.${table.hashColumn} END AS db_hash_ok
            FROM ${table.source}
           WHERE t.${table.keyColumn} IS NOT NULL AND ${appCondition} AND ${filterSql(table, filter, params)}`;
}

/** Every row of the given apps (or of all apps) that names an object key, across the chosen tables. */
export async function keyedRowsOfApps(
  db: Queryable,
  tables: StoredTable[],
  appIds: string[] | undefined,
  filter: RowFilter,
  options: { withMd5: boolean },
): Promise<KeyedRow[]> {
  const params = new Params();
  const parts = tables.map((table) => selectFor(table, params, appIds, filter, options.withMd5));
  return query<KeyedRow>(db, parts.join('\nUNION ALL\n'), params.values);
}

/** Keyed rows of apps not in `seenAppIds` (apps that have no object at all), in pages by app id. */
export async function appsWithKeysOutside(db: Queryable, tables: StoredTable[], seenAppIds: string[], filter: RowFilter): Promise<string[]> {
  const params = new Params();
  const seen = params.add(seenAppIds, 'bigint[]');
  const parts = tables.map(
    (table) =>
      `SELECT DISTINCT ${table.appIdExpr} AS app_id FROM ${table.source}
        WHERE t.${table.keyColumn} IS NOT NULL AND NOT (${table.appIdExpr} = ANY(${seen})) AND ${filterSql(table, filter, params)}`,
  );
  const rows = await query<{ app_id: string }>(db, `SELECT DISTINCT app_id FROM (${parts.join(' UNION ALL ')}) a ORDER BY app_id`, params.values);
  return rows.map((row) => row.app_id);
}

export { TABLES };

/** How many rows live (partly) in R2, to size verify's progress. */
export async function countStoredRows(db: Queryable, tables: StoredTable[], filter: RowFilter): Promise<number> {
  const params = new Params();
  const parts = tables.map(
    (table) =>
      `SELECT count(*) AS n FROM ${table.source}
        WHERE t.${table.keyColumn} IS NOT NULL AND t.${table.locationColumn} IN ('hybrid', 'r2') AND ${filterSql(table, filter, params)}`,
  );
  const rows = await query<{ n: string }>(db, `SELECT coalesce(sum(n), 0)::float8 AS n FROM (${parts.join(' UNION ALL ')}) c`, params.values);
  return Number(rows[0].n);
}
