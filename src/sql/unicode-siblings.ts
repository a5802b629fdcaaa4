import { query, type Queryable } from '../db.ts';
import { keyIdentity } from '../keys.ts';
import { sqlHasNonAsciiInAnyEncoding, sqlIsUtf8, type Collision, type KeySource, type StoredTable } from '../tables.ts';
import { databaseIsUtf8 } from './database-access.ts';

interface Sibling {
  id: string;
  group_id: string;
  path: string;
}

const withoutLeadingSlash = (path: string) => (path.startsWith('/') ? path.slice(1) : path);
const aliasOf = (path: string) => (path.startsWith('/') ? path.slice(1) : `/${path}`);

/**
 * Unicode-equivalent paths in a database whose encoding is not UTF8, where PostgreSQL's normalize() refuses
 * to run and collisionExpr compares spellings byte for byte only. Each row's path is compared here, under
 * keyIdentity and the leading-slash alias as collisionExpr compares them, with the other paths of its group
 * that could name the same object: every path with a character outside ASCII, and the NFC forms of the
 * rows' own (an ASCII path such as "K" is also the NFC form of "\u212A", the Kelvin sign). One statement per
 * batch; a path that is not valid UTF-8 names no object, so it takes no part. The lower row id wins, as in
 * collisionExpr. In a UTF8 database this returns at once: collisionExpr has said everything.
 */
export async function addUnicodeCollisions<Row extends KeySource & { collision: Collision | null }>(db: Queryable, table: StoredTable, rows: Row[]): Promise<void> {
  const siblings = table.pathSiblings;
  if (!siblings || rows.length === 0 || (await databaseIsUtf8(db))) return;
  const keyed = rows.filter((row) => row.path !== null && siblings.groupOf(row) !== null);
  if (!keyed.length) return;
  const groups = [...new Set(keyed.map((row) => siblings.groupOf(row)!))];
  const forms = [...new Set(keyed.flatMap((row) => [keyIdentity(row.path!), keyIdentity(aliasOf(row.path!))]))];
  const found = await query<Sibling>(
    db,
    `SELECT o.id::text AS id, ${siblings.groupExpr}::text AS group_id, ${siblings.pathExpr} AS path
       FROM ${siblings.source}
      WHERE ${siblings.groupExpr} = ANY($1::bigint[]) AND ${siblings.pathExpr} IS NOT NULL
        AND (${sqlHasNonAsciiInAnyEncoding(siblings.pathExpr)} OR ${siblings.pathExpr} = ANY($2::text[]))
        AND ${sqlIsUtf8(siblings.pathExpr)}`,
    [groups, forms],
  );
  // Each sibling's identity once: per group, the lowest row id (then the next, for a row that is itself the lowest) by identity.
  const byGroup = new Map<string, Map<string, Sibling[]>>();
  for (const sibling of found) {
    const identities = byGroup.get(sibling.group_id) ?? new Map<string, Sibling[]>();
    byGroup.set(sibling.group_id, identities);
    const identity = withoutLeadingSlash(keyIdentity(sibling.path));
    identities.set(identity, [...(identities.get(identity) ?? []), sibling].sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1)).slice(0, 2));
  }
  for (const row of keyed) {
    const same = byGroup.get(siblings.groupOf(row)!)?.get(withoutLeadingSlash(keyIdentity(row.path!))) ?? [];
    const other = same.find((sibling) => sibling.id !== row.id);
    if (other && (!row.collision || BigInt(other.id) < BigInt(row.collision.id))) row.collision = { id: other.id, path: other.path };
  }
}
