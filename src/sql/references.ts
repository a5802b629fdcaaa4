import { query, type Queryable } from '../db.ts';
import { sqlSha256, TABLES, TABLE_NAMES, type TableName } from '../tables.ts';

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

export interface RowNamingKey {
  table: TableName;
  id: string;
  key: string;
  location: string;
  has_content: boolean;
  /** The database content's SHA-256 as PostgreSQL computes it, and the hash the row records. */
  db_hash: string | null;
  hash: string | null;
  bytes: number | null;
}

/** Every row of any table that names one of `keys`, with what is needed to put its object back from its database content. */
export async function rowsNamingKeys(db: Queryable, keys: string[]): Promise<RowNamingKey[]> {
  if (!keys.length) return [];
  const parts = TABLE_NAMES.map((name) => {
    const t = TABLES[name];
    return `SELECT '${name}'::text AS table, t.id, t.${t.keyColumn} AS key, t.${t.locationColumn} AS location, (t.${t.contentColumn} IS NOT NULL) AS has_content,
                   ${sqlSha256(`t.${t.contentColumn}`)} AS db_hash, t.${t.hashColumn} AS hash, octet_length(t.${t.contentColumn})::float8 AS bytes
              FROM ${t.table} t WHERE t.${t.keyColumn} = ANY($1::text[])`;
  });
  return query<RowNamingKey>(db, parts.join(' UNION ALL '), [keys]);
}
