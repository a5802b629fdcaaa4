import { query, type Queryable } from '../db.ts';
import { sqlSha256, type StoredTable } from '../tables.ts';
import { appHashOverRestoredSql } from './stranded-writes.ts';

/**
 * Records the content's own hash on `database` rows whose content_hash no longer matches it (code from
 * before the plan rewrites `content` and leaves the hash). For such a row the database content is the only
 * copy any reader uses, so its hash is the truth; without this, verify and maintain would report the row
 * every night, and nothing else would ever settle a content below the hybrid threshold. A row whose hash the
 * app changed over a content rollback restored is evidence of a write that lives in R2 (stranded-writes.ts)
 * and is left for the repair. One statement; each row is re-checked if the app writes it meanwhile.
 */
export async function settleDatabaseHashes(db: Queryable, table: StoredTable): Promise<number> {
  const t = table;
  const rows = await query<{ id: string }>(
    db,
    `UPDATE ${t.table} t SET ${t.hashColumn} = ${sqlSha256(`t.${t.contentColumn}`)}
      WHERE t.${t.locationColumn} = 'database' AND t.${t.contentColumn} IS NOT NULL AND t.${t.hashColumn} IS NOT NULL
        AND t.${t.hashColumn} <> ${sqlSha256(`t.${t.contentColumn}`)}
        AND NOT ${appHashOverRestoredSql(t)}
      RETURNING t.id`,
  );
  return rows.length;
}
