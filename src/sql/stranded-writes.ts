import { query, type Queryable } from '../db.ts';
import { sqlSha256, type StoredTable } from '../tables.ts';
import { releaseClaimsCte } from './claim-batch.ts';
import { stagedContentCtes } from './content-chunks.ts';
import { RESTORES_TABLE, RESTORE_MEMORY_DAYS } from './restores-table.ts';

export { RESTORES_TABLE } from './restores-table.ts';

/**
 * The app's plan-model code saves with ActiveRecord, which writes only the attributes that changed against
 * the row as it loaded it. A save computed from a row loaded before one of our flips can therefore leave the
 * row naming our state and the app's hash, with the app's bytes only in the object at the plan key. The
 * states it leaves (test/app/plan_models.rb, every branch of `content=` against every flip):
 *  - an r2 row that holds content: the app wrote a small content into a row it loaded as database or
 *    hybrid, after migrate and finalize took it to r2. The database content is the app's.
 *  - a hybrid row with no key: the app wrote a mid-sized content into a row it loaded as r2, after rollback
 *    cleared the key. The database content is the app's.
 *  - an r2 row with no key: the app wrote a large content into a row it loaded as hybrid, after rollback
 *    cleared the key. The app's bytes are at the plan key.
 *  - a row rollback restored, whose content is still what rollback wrote but whose hash is not: the app
 *    wrote a large content into a row it loaded as r2. The app's bytes are at the plan key.
 *  - a hybrid row below the hybrid threshold whose object holds other bytes: the app wrote a small content
 *    into a row it loaded as database, after migrate flipped it. It reads right, but its object is stale;
 *    the app's own branch for it is database.
 * The last state looks like code from before the plan rewriting a content without its hash, except that
 * there the content changed and the hash did not; the journal of what rollback restored (restores-table.ts)
 * tells the two apart.
 */

/** Only app_files has an app writer with the plan's model code. */
export const hasAppWriter = (table: StoredTable) => table.name === 'files';

/** SQL: the row still holds what rollback restored, but the app has since saved a new hash for content kept elsewhere. */
export function appHashOverRestoredSql(table: StoredTable): string {
  if (!hasAppWriter(table)) return 'false';
  // A bare EXISTS, so that `NOT` of it is an anti-join the planner costs by the journal's few rows (a
  // wrapped one is a per-row subplan whose estimate is high enough to JIT-compile every count). The hash
  // comparison is `IS TRUE` so it is never a join key: only rows the journal names are hashed. A NULL
  // content hashes to NULL, so it never matches.
  return `EXISTS (
            SELECT 1 FROM ${RESTORES_TABLE} j
             WHERE j.table_name = '${table.table}' AND j.row_id = t.id
               AND t.${table.hashColumn} IS DISTINCT FROM j.content_hash
               AND (${sqlSha256(`t.${table.contentColumn}`)} = j.content_hash) IS TRUE)`;
}

/** SQL: any of the states a stale partial save leaves (see above); `hybridMin` is the placement's threshold. */
export function strandedWriteSql(table: StoredTable, hybridMin: number): string {
  if (!hasAppWriter(table)) return 'false';
  if (!Number.isSafeInteger(hybridMin) || hybridMin < 0) throw new Error(`hybrid threshold ${hybridMin} is not a byte count`);
  const loc = `t.${table.locationColumn}`;
  const key = `t.${table.keyColumn}`;
  const content = `t.${table.contentColumn}`;
  return `((${loc} = 'r2' AND (${content} IS NOT NULL OR ${key} IS NULL))
          OR (${loc} = 'hybrid' AND ${key} IS NULL AND ${content} IS NOT NULL)
          OR (${loc} = 'hybrid' AND ${key} IS NOT NULL AND ${content} IS NOT NULL AND octet_length(${content}) < ${hybridMin})
          OR ${appHashOverRestoredSql(table)})`;
}

/** The CTE that remembers what a flip restored: `source` names a CTE of the flip with columns (id, content_hash). */
export function rememberRestoresCte(table: StoredTable, source: string): string {
  if (!hasAppWriter(table)) return `remembered AS (SELECT 1 WHERE false)`;
  return `remembered AS (
       INSERT INTO ${RESTORES_TABLE} AS j (table_name, row_id, content_hash, restored_at)
       SELECT '${table.table}', id, content_hash, now() FROM ${source}
       ON CONFLICT (table_name, row_id) DO UPDATE SET content_hash = EXCLUDED.content_hash, restored_at = EXCLUDED.restored_at
     )`;
}

export async function forgetOldRestores(db: Queryable): Promise<void> {
  await query(db, `DELETE FROM ${RESTORES_TABLE} WHERE restored_at < now() - interval '${RESTORE_MEMORY_DAYS} days'`);
}

export type StrandedRepair =
  /**
   * r2 row holding content, hybrid row without a key, or small hybrid row whose object is stale: the content
   * is the app's; the row becomes database and keeps its key, as the app's own database branch does (a save
   * the app computed from the row with that key writes the key only if it changed). `key`: the key the row
   * named when examined.
   */
  | { kind: 'content-is-current'; id: string; contentHash: string; key?: string | null }
  /** a small hybrid row whose object holds its content (migrated under a lower threshold): nothing to do. */
  | { kind: 'in-place'; id: string }
  /** r2 row without a key: the object at the plan key holds the row's hash; the row names it again. */
  | { kind: 'name-plan-key'; id: string; key: string; hash: string }
  /** the app's bytes at the plan key come back into the row (null content: staged in chunks). */
  | { kind: 'bring-back'; id: string; key: string; hash: string; restoredHash: string; content: string | null };

/**
 * Puts the app's writes back, one statement per batch. Each repair is a compare-and-set on exactly the state
 * that was examined, so an app write landing meanwhile wins. A content brought back is remembered as restored
 * again, for a second stale save of the same row.
 */
export async function repairStranded(db: Queryable, table: StoredTable, worker: string, repairs: StrandedRepair[], claimedIds: string[]): Promise<string[]> {
  const t = table;
  const staging = stagedContentCtes('$11', '$12', '$6');
  const current = repairs.flatMap((r) => (r.kind === 'content-is-current' ? [r] : []));
  const named = repairs.flatMap((r) => (r.kind === 'name-plan-key' ? [r] : []));
  const back = repairs.flatMap((r) => (r.kind === 'bring-back' ? [r] : []));
  const rows = await query<{ id: string }>(
    db,
    `WITH current_input AS (SELECT * FROM unnest($1::bigint[], $2::text[], $14::text[]) AS u(id, content_hash, key)),
     made_database AS (
       UPDATE ${t.table} t
          SET ${t.locationColumn} = 'database',
              ${t.hashColumn} = u.content_hash, ${t.sizeColumn} = octet_length(t.${t.contentColumn})
         FROM current_input u
        WHERE t.id = u.id AND t.${t.contentColumn} IS NOT NULL
          AND t.${t.locationColumn} IN ('r2', 'hybrid') AND t.${t.keyColumn} IS NOT DISTINCT FROM u.key
          AND ${sqlSha256(`t.${t.contentColumn}`)} = u.content_hash
          AND NOT ${appHashOverRestoredSql(t)}
       RETURNING t.id
     ),
     named_input AS (SELECT * FROM unnest($3::bigint[], $4::text[], $5::text[]) AS u(id, key, hash)),
     named AS (
       UPDATE ${t.table} t SET ${t.keyColumn} = u.key
         FROM named_input u
        WHERE t.id = u.id AND t.${t.locationColumn} = 'r2' AND t.${t.contentColumn} IS NULL AND t.${t.keyColumn} IS NULL
          AND t.${t.hashColumn} = u.hash
       RETURNING t.id
     ),
     back_input AS (SELECT * FROM unnest($6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[]) AS u(id, key, hash, restored_hash, content)),
     ${staging.staged},
     brought AS (
       UPDATE ${t.table} t
          SET ${t.contentColumn} = coalesce(u.content, st.content),
              ${t.sizeColumn} = octet_length(coalesce(u.content, st.content)),
              ${t.keyColumn} = CASE WHEN t.${t.locationColumn} = 'database' THEN t.${t.keyColumn} ELSE u.key END
         FROM back_input u LEFT JOIN staged st ON st.row_id = u.id
        WHERE t.id = u.id AND t.${t.locationColumn} IN ('database', 'hybrid') AND t.${t.contentColumn} IS NOT NULL
          AND t.${t.hashColumn} = u.hash
          AND ${sqlSha256(`t.${t.contentColumn}`)} = u.restored_hash
          AND coalesce(u.content, st.content) IS NOT NULL
          AND ${sqlSha256('coalesce(u.content, st.content)')} = u.hash
       RETURNING t.id, t.${t.hashColumn} AS content_hash
     ),
     ${rememberRestoresCte(t, 'brought')},
     ${releaseClaimsCte('$11', '$12', '$13')},
     ${staging.unstaged}
     SELECT id FROM made_database UNION ALL SELECT id FROM named UNION ALL SELECT id FROM brought`,
    [
      current.map((r) => r.id),
      current.map((r) => r.contentHash),
      named.map((r) => r.id),
      named.map((r) => r.key),
      named.map((r) => r.hash),
      back.map((r) => r.id),
      back.map((r) => r.key),
      back.map((r) => r.hash),
      back.map((r) => r.restoredHash),
      back.map((r) => r.content),
      t.table,
      worker,
      claimedIds,
      current.map((r) => r.key ?? null),
    ],
  );
  return rows.map((row) => row.id);
}
