import type { StoredTable } from '../tables.ts';
import type { Params } from './params.ts';

/** Which rows an operation may touch: the operator's --app, --rollout and --shard choices. */
export interface RowFilter {
  appIds?: string[];
  /** Percent of apps (0-100], chosen by a stable hash of app_id: 10 -> 50 -> 100 only ever widens. */
  rolloutPercent?: number;
  shard?: { index: number; count: number };
  /** Only these rows, per table (SQL table name): a retry of the items a run failed or refused. */
  rowIds?: Record<string, string[]>;
}

/**
 * The rollout bucket of an app: md5(app_id) read as a 32-bit number, mod 100. Computed the same way in SQL
 * and in Node (rolloutBucket) so an operator can ask which apps a percentage takes.
 */
export function sqlRolloutBucket(appIdExpr: string): string {
  return `(('x' || substr(md5((${appIdExpr})::text), 1, 8))::bit(32)::bigint % 100)`;
}

export function filterSql(table: StoredTable, filter: RowFilter, params: Params): string {
  const clauses: string[] = [];
  if (filter.appIds && filter.appIds.length) clauses.push(`${table.appIdExpr} = ANY(${params.add(filter.appIds, 'bigint[]')})`);
  if (filter.rolloutPercent !== undefined && filter.rolloutPercent < 100) {
    clauses.push(`${sqlRolloutBucket(table.appIdExpr)} < ${params.add(filter.rolloutPercent, 'numeric')}`);
  }
  if (filter.rowIds) clauses.push(`t.id = ANY(${params.add(filter.rowIds[table.table] ?? [], 'bigint[]')})`);
  if (filter.shard && filter.shard.count > 1) {
    clauses.push(`mod(t.id, ${params.add(filter.shard.count, 'bigint')}) = ${params.add(filter.shard.index, 'bigint')}`);
  }
  return clauses.length ? clauses.join(' AND ') : 'true';
}
