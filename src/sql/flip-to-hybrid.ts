import { query, type Queryable } from '../db.ts';
import { sqlSha256, type StoredTable } from '../tables.ts';
import { releaseClaimsCte } from './claim-batch.ts';
import { appHashOverRestoredSql } from './stranded-writes.ts';

export interface UploadedRow {
  id: string;
  key: string;
  hash: string;
  size: number;
}

/**
 * Marks uploaded rows hybrid and releases the batch's claims, in one statement. It is a compare-and-set:
 * a row flips only if it is still 'database', has no key, and its content still hashes to what was
 * uploaded, so a write by the app since our read is never hidden behind a stale object. A row whose hash
 * the app rewrote over a restored content is not ours to take: its content is elsewhere (stranded-writes.ts).
 * Returns the ids that flipped.
 */
export async function flipToHybrid(db: Queryable, table: StoredTable, worker: string, uploaded: UploadedRow[], claimedIds: string[]): Promise<string[]> {
  const t = table;
  const rows = await query<{ id: string }>(
    db,
    `WITH input AS (
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS u(id, key, hash, size)
     ),
     flipped AS (
       UPDATE ${t.table} t
          SET ${t.locationColumn} = 'hybrid', ${t.keyColumn} = u.key, ${t.hashColumn} = u.hash, ${t.sizeColumn} = u.size
         FROM input u
        WHERE t.id = u.id
          AND t.${t.locationColumn} = 'database'
          AND t.${t.keyColumn} IS NULL
          AND t.${t.contentColumn} IS NOT NULL
          AND octet_length(t.${t.contentColumn}) = u.size
          AND ${sqlSha256(`t.${t.contentColumn}`)} = u.hash
          AND NOT ${appHashOverRestoredSql(t)}
       RETURNING t.id
     ),
     ${releaseClaimsCte('$5', '$6', '$7')}
     SELECT id FROM flipped`,
    [uploaded.map((r) => r.id), uploaded.map((r) => r.key), uploaded.map((r) => r.hash), uploaded.map((r) => r.size), t.table, worker, claimedIds],
  );
  return rows.map((row) => row.id);
}
