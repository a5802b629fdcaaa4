import { query, type Queryable } from '../db.ts';
import { TABLES, TABLE_NAMES } from '../tables.ts';

/**
 * Of `keys`, those some row of any table still names. Deleting an object is safe only when this comes
 * back empty for it: a restored file and its version row may share one object.
 */
export async function keysStillReferenced(db: Queryable, keys: string[]): Promise<Set<string>> {
  if (!keys.length) return new Set();
  const parts = TABLE_NAMES.map((name) => `SELECT t.${TABLES[name].keyColumn} AS key FROM ${TABLES[name].table} t WHERE t.${TABLES[name].keyColumn} = ANY($1::text[])`);
  const rows = await query<{ key: string }>(db, parts.join(' UNION '), [keys]);
  return new Set(rows.map((row) => row.key));
}
