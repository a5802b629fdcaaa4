import { query, type Queryable } from '../db.ts';
import { sqlHasNonAsciiInAnyEncoding, sqlKeyIdentity, sqlSha256, TABLES, TABLE_NAMES, type TableName } from '../tables.ts';
import { appIdOfKey, keyIdentity } from '../keys.ts';
import { databaseIsUtf8 } from './database-access.ts';
import { Params } from './params.ts';

/**
 * SQL condition on alias t: the row's key may name one of the objects `keys` name. In a UTF8 database it is
 * exact: the key's identity is one of theirs (an index on the identity serves it). Elsewhere PostgreSQL
 * cannot normalise, so it is a superset the caller narrows under keyIdentity: the keys and their NFC forms
 * byte for byte, and every key outside ASCII in the same app's part of the bucket (NFC leaves the ASCII
 * `apps/<id>/` prefix as it is), each range served by the key column's byte-ordered index.
 */
function mayNameOneOf(keyColumn: string, keys: string[], utf8: boolean, params: Params): string {
  const column = `t.${keyColumn}`;
  const identities = [...new Set(keys.map(keyIdentity))];
  if (utf8) return `${sqlKeyIdentity(column)} = ANY(${params.add(identities, 'text[]')})`;
  const spellings = params.add([...new Set([...keys, ...identities])], 'text[]');
  const prefixes = [...new Set(keys.map((key) => { const app = appIdOfKey(key); return app === undefined ? '' : `apps/${app}/`; }))];
  const ranges = prefixes.map((prefix) =>
    prefix === '' ? 'true' : `(${column} COLLATE "C" >= ${params.add(prefix)} AND ${column} COLLATE "C" < ${params.add(`${prefix.slice(0, -1)}0`)})`,
  );
  // COLLATE "C": the key index is byte-ordered, and serves only a comparison under its own collation.
  return `(${column} COLLATE "C" = ANY(${spellings}) OR (${sqlHasNonAsciiInAnyEncoding(column)} AND (${ranges.join(' OR ')})))`;
}

/** The identities of the keys rows name among `keys` (a superset outside UTF8), across every table; each table is read by its key index. */
export function identitiesNamingSql(keys: string[], utf8: boolean): { sql: string; values: unknown[] } {
  const params = new Params();
  // In a UTF8 database every row the SQL finds names one of the keys by PostgreSQL's own normalisation, and
  // its identity is taken as PostgreSQL gives it: a row found is never dropped by a second opinion.
  const parts = TABLE_NAMES.map((name) => {
    const column = `t.${TABLES[name].keyColumn}`;
    return `SELECT ${utf8 ? sqlKeyIdentity(column) : column} AS identity FROM ${TABLES[name].table} t WHERE ${mayNameOneOf(TABLES[name].keyColumn, keys, utf8, params)}`;
  });
  return { sql: parts.join(' UNION '), values: params.values };
}

/**
 * Of `keys` (as given), those some row of any table still names, under the store's key identity (a row
 * naming another spelling of the key names the same object on R2). Deleting an object is safe only when
 * this comes back empty for it: a restored file and its version row may share one object.
 */
export async function keysStillReferenced(db: Queryable, keys: string[]): Promise<Set<string>> {
  if (!keys.length) return new Set();
  const utf8 = await databaseIsUtf8(db);
  const { sql, values } = identitiesNamingSql(keys, utf8);
  const rows = await query<{ identity: string }>(db, sql, values);
  const named = new Set(rows.map((row) => (utf8 ? row.identity : keyIdentity(row.identity))));
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
  const utf8 = await databaseIsUtf8(db);
  const params = new Params();
  const parts = TABLE_NAMES.map((name) => {
    const t = TABLES[name];
    return `SELECT '${name}'::text AS table, t.id, t.${t.keyColumn} AS key, t.${t.locationColumn} AS location, (t.${t.contentColumn} IS NOT NULL) AS has_content,
                   ${sqlSha256(`t.${t.contentColumn}`)} AS db_hash, t.${t.hashColumn} AS hash, octet_length(t.${t.contentColumn})::float8 AS bytes
              FROM ${t.table} t WHERE ${mayNameOneOf(t.keyColumn, keys, utf8, params)}`;
  });
  const rows = await query<RowNamingKey>(db, parts.join(' UNION ALL '), params.values);
  if (utf8) return rows;
  const identities = new Set(keys.map(keyIdentity));
  return rows.filter((row) => identities.has(keyIdentity(row.key)));
}
