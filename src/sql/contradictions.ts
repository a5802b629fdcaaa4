import { query, type Queryable } from '../db.ts';
import type { StoredTable } from '../tables.ts';
import { filterSql, type RowFilter } from './filters.ts';
import { Params } from './params.ts';

export interface ContradictoryRow {
  id: string;
  app_id: string;
  path: string | null;
  location: string | null;
  key: string | null;
  problem: string;
}

/** Rows whose storage flags contradict their columns (one statement per table, bounded by `limit`). */
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
                WHEN ${loc} = 'database' AND ${key} IS NOT NULL THEN 'database row has an object key'
                WHEN ${loc} = 'hybrid' AND ${key} IS NULL THEN 'hybrid row has no object key'
                WHEN ${loc} = 'hybrid' AND ${content} IS NULL THEN 'hybrid row has no database content'
                WHEN ${loc} = 'r2' AND ${key} IS NULL THEN 'r2 row has no object key: its content is nowhere'
                WHEN ${loc} = 'r2' AND ${content} IS NOT NULL THEN 'r2 row still has database content'
                WHEN ${loc} IN ('hybrid', 'r2') AND ${hash} IS NULL THEN 'row in R2 has no content hash to verify it by'
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
