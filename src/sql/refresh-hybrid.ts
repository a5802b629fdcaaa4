import { query, type Queryable } from '../db.ts';
import { sqlSha256, type StoredTable } from '../tables.ts';
import { releaseClaimsCte } from './claim-batch.ts';
import { appHashOverRestoredSql } from './stranded-writes.ts';

export interface RefreshedRow {
  id: string;
  /** The key the row named when it was claimed. */
  oldKey: string;
  key: string;
  hash: string;
  size: number;
}

/**
 * After a stale hybrid row's current content was uploaded and proven, records its new hash and size (and key,
 * in the content-addressed layout). Compare-and-set like every flip: only while the row still names the key
 * it was claimed with and its content still hashes to what was uploaded.
 */
export async function flipRefreshed(db: Queryable, table: StoredTable, worker: string, rows: RefreshedRow[], claimedIds: string[]): Promise<string[]> {
  const t = table;
  const result = await query<{ id: string }>(
    db,
    `WITH input AS (
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[]) AS u(id, old_key, key, hash, size)
     ),
     refreshed AS (
       UPDATE ${t.table} t
          SET ${t.keyColumn} = u.key, ${t.hashColumn} = u.hash, ${t.sizeColumn} = u.size
         FROM input u
        WHERE t.id = u.id
          AND t.${t.locationColumn} = 'hybrid'
          AND t.${t.keyColumn} = u.old_key
          AND t.${t.contentColumn} IS NOT NULL
          AND ${sqlSha256(`t.${t.contentColumn}`)} = u.hash
          AND NOT ${appHashOverRestoredSql(t)}
       RETURNING t.id
     ),
     ${releaseClaimsCte('$6', '$7', '$8')}
     SELECT id FROM refreshed`,
    [rows.map((r) => r.id), rows.map((r) => r.oldKey), rows.map((r) => r.key), rows.map((r) => r.hash), rows.map((r) => r.size), t.table, worker, claimedIds],
  );
  return result.map((row) => row.id);
}
