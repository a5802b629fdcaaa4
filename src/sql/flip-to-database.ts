import { query, type Queryable } from '../db.ts';
import { sqlSha256, type StoredTable } from '../tables.ts';
import { releaseClaimsCte } from './claim-batch.ts';
import { stagedContentCtes } from './content-chunks.ts';
import { appHashOverRestoredSql, rememberRestoresCte } from './stranded-writes.ts';

export interface RestoredContent {
  id: string;
  key: string;
  hash: string;
  /** Verified content downloaded from the object, or null when it is staged in chunks (see stageContent). */
  content: string | null;
}

export interface KeptCopy {
  id: string;
  key: string;
  /** The hash the row recorded for its object (what --purge expects to find there). */
  hash: string | null;
}

/**
 * Rollback's flip, one statement for the batch:
 *  - r2 rows get their verified content back (only where content is still NULL and key and hash are
 *    unchanged) and become `target`;
 *  - hybrid rows (content still in the database) become 'database' and lose their key; their hash is
 *    recomputed from the content they hold, which is the truth for them.
 * With target 'hybrid' (--keep-hybrid) r2 rows keep their key and hybrid rows are left alone.
 * Every row flipped is remembered with the hash of what it now holds (stranded-writes.ts): an app save
 * computed from the row as it was before this flip can then be told from a content rewritten since.
 * Returns the ids that flipped; their objects may then be purged.
 */
export async function flipToDatabase(
  db: Queryable,
  table: StoredTable,
  worker: string,
  restored: RestoredContent[],
  kept: KeptCopy[],
  target: 'database' | 'hybrid',
  claimedIds: string[],
): Promise<string[]> {
  const t = table;
  const keyAfter = target === 'database' ? 'NULL' : 'u.key';
  const staging = stagedContentCtes('$8', '$9', '$1');
  const rows = await query<{ id: string }>(
    db,
    `WITH restored_input AS (
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(id, key, hash, content)
     ),
     ${staging.staged},
     restored AS (
       UPDATE ${t.table} t
          SET ${t.contentColumn} = coalesce(u.content, st.content), ${t.locationColumn} = $5, ${t.keyColumn} = ${keyAfter}
         FROM restored_input u LEFT JOIN staged st ON st.row_id = u.id
        WHERE t.id = u.id
          AND t.${t.locationColumn} = 'r2'
          AND t.${t.contentColumn} IS NULL
          AND t.${t.keyColumn} = u.key
          AND t.${t.hashColumn} = u.hash
          AND coalesce(u.content, st.content) IS NOT NULL
          AND ${sqlSha256('coalesce(u.content, st.content)')} = u.hash
       RETURNING t.id, t.${t.hashColumn} AS content_hash
     ),
     kept_input AS (
       SELECT * FROM unnest($6::bigint[], $7::text[]) AS k(id, key)
     ),
     unhybrid AS (
       UPDATE ${t.table} t
          SET ${t.locationColumn} = 'database', ${t.keyColumn} = NULL,
              ${t.hashColumn} = ${sqlSha256(`t.${t.contentColumn}`)}, ${t.sizeColumn} = octet_length(t.${t.contentColumn})
         FROM kept_input k
        WHERE $5 = 'database'
          AND t.id = k.id
          AND t.${t.locationColumn} = 'hybrid'
          AND t.${t.keyColumn} = k.key
          AND t.${t.contentColumn} IS NOT NULL
          AND NOT ${appHashOverRestoredSql(t)}
       RETURNING t.id, t.${t.hashColumn} AS content_hash
     ),
     flipped AS (SELECT id, content_hash FROM restored UNION ALL SELECT id, content_hash FROM unhybrid),
     ${rememberRestoresCte(t, 'flipped')},
     ${releaseClaimsCte('$8', '$9', '$10')},
     ${staging.unstaged}
     SELECT id FROM flipped`,
    [
      restored.map((r) => r.id),
      restored.map((r) => r.key),
      restored.map((r) => r.hash),
      restored.map((r) => r.content),
      target,
      kept.map((r) => r.id),
      kept.map((r) => r.key),
      t.table,
      worker,
      claimedIds,
    ],
  );
  return rows.map((row) => row.id);
}
