import { query, type Queryable } from '../db.ts';
import { sqlSha256, type StoredTable } from '../tables.ts';
import { releaseClaimsCte } from './claim-batch.ts';

export interface VerifiedCopy {
  id: string;
  key: string;
  hash: string;
}

/**
 * Finalize's flip: clears the database content of rows whose R2 copy was read back and matched. A row
 * flips only if it is still hybrid with the same key and hash and its content still hashes to that hash;
 * a row the app changed meanwhile keeps its content. Releases the batch's claims in the same statement.
 */
export async function flipToR2(db: Queryable, table: StoredTable, worker: string, verified: VerifiedCopy[], claimedIds: string[]): Promise<string[]> {
  const t = table;
  const rows = await query<{ id: string }>(
    db,
    `WITH input AS (
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(id, key, hash)
     ),
     flipped AS (
       UPDATE ${t.table} t
          SET ${t.locationColumn} = 'r2', ${t.contentColumn} = NULL
         FROM input u
        WHERE t.id = u.id
          AND t.${t.locationColumn} = 'hybrid'
          AND t.${t.keyColumn} = u.key
          AND t.${t.hashColumn} = u.hash
          AND t.${t.contentColumn} IS NOT NULL
          AND ${sqlSha256(`t.${t.contentColumn}`)} = u.hash
       RETURNING t.id
     ),
     ${releaseClaimsCte('$4', '$5', '$6')}
     SELECT id FROM flipped`,
    [verified.map((r) => r.id), verified.map((r) => r.key), verified.map((r) => r.hash), t.table, worker, claimedIds],
  );
  return rows.map((row) => row.id);
}
