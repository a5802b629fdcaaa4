import { query, type Queryable } from '../db.ts';
import { sqlKeyIdentity, sqlSha256, TABLES, TABLE_NAMES, type TableName } from '../tables.ts';
import { keyIdentity } from '../keys.ts';

/** SQL condition: the row's key names one of the objects whose key identities are $1 (an index on the identity serves it). */
function namesOneOf(keyColumn: string): string {
  return `${sqlKeyIdentity(`t.${keyColumn}`)} = ANY($1::text[])`;
}

/**
 * Of `keys` (as given), those some row of any table still names, under the store's key identity (a row
 * naming another spelling of the key names the same object on R2). Deleting an object is safe only when
 * this comes back empty for it: a restored file and its version row may share one object.
 */
export async function keysStillReferenced(db: Queryable, keys: string[]): Promise<Set<string>> {
  if (!keys.length) return new Set();
  const identities = [...new Set(keys.map(keyIdentity))];
  const parts = TABLE_NAMES.map((name) => `SELECT ${sqlKeyIdentity(`t.${TABLES[name].keyColumn}`)} AS identity FROM ${TABLES[name].table} t WHERE ${namesOneOf(TABLES[name].keyColumn)}`);
  const rows = await query<{ identity: string }>(db, parts.join(' UNION '), [identities]);
  const named = new Set(rows.map((row) => row.identity));
  return new Set(keys.filter((key) => named.has(keyIdentity(key))));
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

/**
 * Every row of any table that names one of `keys` (under the store's key identity), with what is needed to
 * put its object back from its database content. `key` is the row's own spelling.
 */
export async function rowsNamingKeys(db: Queryable, keys: string[]): Promise<RowNamingKey[]> {
  if (!keys.length) return [];
  const identities = [...new Set(keys.map(keyIdentity))];
  const parts = TABLE_NAMES.map((name) => {
    const t = TABLES[name];
    return `SELECT '${name}'::text AS table, t.id, t.${t.keyColumn} AS key, t.${t.locationColumn} AS location, (t.${t.contentColumn} IS NOT NULL) AS has_content,
                   ${sqlSha256(`t.${t.contentColumn}`)} AS db_hash, t.${t.hashColumn} AS hash, octet_length(t.${t.contentColumn})::float8 AS bytes
              FROM ${t.table} t WHERE ${namesOneOf(t.keyColumn)}`;
  });
  return query<RowNamingKey>(db, parts.join(' UNION ALL '), [identities]);
}
