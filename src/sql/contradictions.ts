import { query, type Queryable } from '../db.ts';
import type { StoredTable } from '../tables.ts';
import { filterSql, type RowFilter } from './filters.ts';
import { Params } from './params.ts';
import { sqlSha256 } from '../tables.ts';
import { appHashOverRestoredSql } from './stranded-writes.ts';

export interface ContradictoryRow {
  id: string;
  app_id: string;
  path: string | null;
  location: string | null;
  key: string | null;
  problem: string;
}

/**
 * Rows whose storage flags or hash contradict their columns (one statement per table, bounded by `limit`).
 * A database row that keeps a key is not one: the plan's model code leaves the key when it writes a small
 * content, and relies on it staying (a later save of a large content writes the key only if it changed).
 */
export async function contradictoryRows(db: Queryable, table: StoredTable, filter: RowFilter, limit: number): Promise<ContradictoryRow[]> {
  const params = new Params();
  const loc = `t.${table.locationColumn}`;
  const key = `t.${table.keyColumn}`;
  const content = `t.${table.contentColumn}`;
  const hash = `t.${table.hashColumn}`;
  return query<ContradictoryRow>(
    db,
    `SELECT * FROM (
       SELECT t.id, ${table.appIdExpr} AS app_id, ${table.pathExpr} AS path, ${loc} AS location, ${key} AS key,
              CASE
                WHEN ${loc} IS NULL THEN 'storage location is NULL'
                WHEN ${loc} NOT IN ('database', 'hybrid', 'r2') THEN 'storage location ' || quote_literal(${loc}) || ' is not database, hybrid or r2'
                WHEN ${loc} = 'hybrid' AND ${key} IS NULL THEN 'hybrid row has no object key (after a save by the app computed from an earlier load; the next migrate, finalize or rollback makes it a database row)'
                WHEN ${loc} = 'hybrid' AND ${content} IS NULL THEN 'hybrid row has no database content'
                WHEN ${loc} = 'r2' AND ${key} IS NULL THEN 'r2 row has no object key: its content is nowhere a reader looks (after a save by the app computed from an earlier load, the next migrate, finalize or rollback finds it at its plan key)'
                WHEN ${loc} = 'r2' AND ${content} IS NOT NULL THEN 'r2 row still has database content (the app''s, after a save computed from an earlier load; the next migrate, finalize or rollback makes it a database row)'
                WHEN ${loc} IN ('hybrid', 'r2') AND ${hash} IS NULL THEN 'row in R2 has no content hash to verify it by'
                WHEN ${appHashOverRestoredSql(table)} THEN 'the app saved a new content_hash without its content (a save computed from the row as it was before rollback): the app''s content is in the object at its plan key; the next migrate, finalize or rollback puts it back'
                WHEN ${loc} = 'database' AND ${content} IS NOT NULL AND ${hash} IS NOT NULL AND ${hash} <> ${sqlSha256(content)} THEN 'database content does not match content_hash (rewritten without its hash, as code from before the plan does); the content is the only copy: the next maintain (with --yes) records its hash'
              END AS problem
         FROM ${table.source}
        WHERE ${filterSql(table, filter, params)}
     ) r
     WHERE problem IS NOT NULL
     ORDER BY id
     LIMIT ${params.add(limit, 'bigint')}`,
    params.values,
  );
}
