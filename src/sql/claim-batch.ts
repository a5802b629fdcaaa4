import { query, type Queryable } from '../db.ts';
import type { StoredTable } from '../tables.ts';
import { sqlRowIsUtf8, sqlSha256, type Collision } from '../tables.ts';
import { addUnicodeCollisions } from './unicode-siblings.ts';
import { databaseIsUtf8 } from './database-access.ts';
import { CLAIMS_TABLE } from './schema.ts';
import { filterSql, type RowFilter } from './filters.ts';
import { Params } from './params.ts';
import { LEASES_TABLE, sqlWorkerIsLive } from './worker-leases.ts';

/** 'size-desc' walks in size bands, largest band first (see SIZE_BANDS); each band in id order. */
export type ClaimOrder = 'id' | 'size-desc';

/**
 * The bands `--largest-first` walks, largest first. Each band is an index-friendly keyset walk by id, so
 * the whole run stays linear in the table size (an exact size order would sort the table for every batch).
 */
export const SIZE_BANDS: readonly { min: number; max?: number }[] = [
  { min: 1024 * 1024 },
  { min: 100 * 1024, max: 1024 * 1024 },
  { min: 10 * 1024, max: 100 * 1024 },
  { min: 0, max: 10 * 1024 },
];

/** SQL for a row's band number (0 = largest), matching SIZE_BANDS; the dry-run plan orders by it. */
export function sqlSizeBand(bytesExpr: string): string {
  return `(CASE ${SIZE_BANDS.map((band, index) => `WHEN ${bytesExpr} >= ${band.min} THEN ${index}`).join(' ')} END)`;
}

export interface Cursor {
  id: string;
}

export interface ClaimRequest {
  table: StoredTable;
  worker: string;
  /** SQL condition on alias t that makes a row eligible for this operation. */
  eligible: (params: Params) => string;
  filter: RowFilter;
  /** Only rows whose content size lies in this band (for --largest-first). */
  band?: { min: number; max?: number };
  cursor?: Cursor;
  /** Ids to leave alone this run (they already failed once). */
  excludeIds: string[];
  maxRows: number;
  /** Content above this is not sent inline; the caller streams it. */
  inlineMaxBytes: number;
  /** The batch holds at most this many inline bytes (always at least one row). */
  maxBatchBytes: number;
  withContent: boolean;
  withDbHash: boolean;
}

export interface ClaimedRow {
  id: string;
  app_id: string;
  path: string | null;
  version_id: string | null;
  file_type: string | null;
  location: string | null;
  key: string | null;
  hash: string | null;
  bytes: number | null;
  /** What the content takes where PostgreSQL keeps it (pg_column_size; read from the value's header or TOAST pointer, not the content), or null without one. */
  stored_bytes: number | null;
  /** Inline content when asked for and small enough, else null. */
  content: string | null;
  has_content: boolean;
  db_hash: string | null;
  /** Another row whose key would name the same object (StoredTable.collisionExpr), or null. */
  collision: Collision | null;
  /** False when the content or the path is not valid UTF-8 (only a SQL_ASCII database holds such text). */
  utf8: boolean | null;
  /** False when another worker claimed the row first: skip it, it is theirs. */
  won: boolean;
}

/**
 * Claims one batch in one statement. Candidates are locked FOR UPDATE SKIP LOCKED only for the statement;
 * what holds a row across the upload is a row in the claims table, valid while its worker's lease has not
 * expired (worker-leases.ts). A worker killed mid-run stops renewing its lease, so its claims lapse when the
 * lease expires, and a rerun takes the rows over. The ON CONFLICT guard is the arbiter when two workers race.
 */
export async function claimBatch(db: Queryable, request: ClaimRequest): Promise<{ rows: ClaimedRow[]; cursor?: Cursor }> {
  const { table: d } = request;
  const params = new Params();
  const tableName = params.add(d.table, 'text');
  const worker = params.add(request.worker, 'bigint');
  const inlineMax = params.add(request.inlineMaxBytes, 'bigint');
  const bytesExpr = `coalesce(octet_length(t.${d.contentColumn})::bigint, t.${d.sizeColumn}::bigint)`;
  const conditions = [request.eligible(params), filterSql(d, request.filter, params)];
  if (request.excludeIds.length) conditions.push(`t.id <> ALL(${params.add(request.excludeIds, 'bigint[]')})`);
  if (request.band) {
    conditions.push(`${bytesExpr} >= ${params.add(request.band.min, 'bigint')}`);
    if (request.band.max !== undefined) conditions.push(`${bytesExpr} < ${params.add(request.band.max, 'bigint')}`);
  }
  if (request.cursor) conditions.push(`t.id > ${params.add(request.cursor.id, 'bigint')}`);
  const sql = `
WITH candidates AS (
  SELECT t.id, ${bytesExpr} AS bytes
    FROM ${d.source}
   WHERE ${conditions.join(' AND ')}
     AND NOT EXISTS (SELECT 1 FROM ${CLAIMS_TABLE} c
                      WHERE c.table_name = ${tableName} AND c.row_id = t.id AND ${sqlWorkerIsLive('c.worker')})
   ORDER BY t.id
   LIMIT ${params.add(request.maxRows, 'bigint')}
   FOR UPDATE OF t SKIP LOCKED
),
sized AS (
  SELECT id, bytes,
         sum(LEAST(coalesce(bytes, 0), ${inlineMax})) OVER (ORDER BY id) - LEAST(coalesce(bytes, 0), ${inlineMax}) AS before
    FROM candidates
),
chosen AS (SELECT id, bytes FROM sized WHERE before < ${params.add(request.maxBatchBytes, 'bigint')}),
claimed AS (
  INSERT INTO ${CLAIMS_TABLE} AS c (table_name, row_id, worker, claimed_at)
  SELECT ${tableName}, id, ${worker}, now() FROM chosen
  ON CONFLICT (table_name, row_id) DO UPDATE SET worker = EXCLUDED.worker, claimed_at = EXCLUDED.claimed_at
   WHERE NOT ${sqlWorkerIsLive('c.worker')}
  RETURNING c.row_id
)
SELECT t.id,
       ${d.appIdExpr} AS app_id,
       ${d.pathExpr} AS path,
       ${d.versionIdExpr} AS version_id,
       ${d.fileTypeExpr} AS file_type,
       t.${d.locationColumn} AS location,
       t.${d.keyColumn} AS key,
       t.${d.hashColumn} AS hash,
       ch.bytes::float8 AS bytes,
       pg_column_size(t.${d.contentColumn})::float8 AS stored_bytes,
       ${request.withContent ? `CASE WHEN cl.row_id IS NOT NULL AND ch.bytes <= ${inlineMax} THEN t.${d.contentColumn} END` : 'NULL::text'} AS content,
       (t.${d.contentColumn} IS NOT NULL) AS has_content,
       ${dbHashSql(request, `t.${d.contentColumn}`, inlineMax)} AS db_hash,
       ${d.collisionExpr(await databaseIsUtf8(db))} AS collision,
       CASE WHEN cl.row_id IS NOT NULL THEN ${sqlRowIsUtf8(d)} END AS utf8,
       (cl.row_id IS NOT NULL) AS won
  FROM chosen ch
  JOIN ${d.source} ON t.id = ch.id
  LEFT JOIN claimed cl ON cl.row_id = ch.id
 ORDER BY t.id`;
  const rows = await query<ClaimedRow>(db, sql, params.values);
  await addUnicodeCollisions(db, d, rows.filter((row) => row.won));
  const last = rows[rows.length - 1];
  return { rows, cursor: last ? { id: last.id } : undefined };
}

/**
 * The CTE every flip ends with: the batch's claims are released in the same statement that flips it, so a
 * flipped row is never left claimed and a claim never outlives its flip. Placeholders: table, worker, ids.
 */
export function releaseClaimsCte(table: string, worker: string, ids: string): string {
  return `released AS (
       DELETE FROM ${CLAIMS_TABLE} c WHERE c.table_name = ${table} AND c.worker = ${worker}::bigint AND c.row_id = ANY(${ids}::bigint[])
     )`;
}

/** Releases claims without flipping anything (a batch whose every item failed, or an interrupted run). */
export async function releaseClaims(db: Queryable, table: StoredTable, worker: string, ids: string[]): Promise<void> {
  if (!ids.length) return;
  await query(db, `DELETE FROM ${CLAIMS_TABLE} WHERE table_name = $1 AND worker = $2::bigint AND row_id = ANY($3::bigint[])`, [table.table, worker, ids]);
}

/**
 * The content's SHA-256 computed by PostgreSQL: for finalize (to compare with the object without moving the
 * content), and for contents too large to fetch inline, whose hash must be known before streaming starts.
 */
function dbHashSql(request: ClaimRequest, column: string, inlineMax: string): string {
  if (request.withDbHash) return `CASE WHEN cl.row_id IS NOT NULL THEN ${sqlSha256(column)} END`;
  if (request.withContent) return `CASE WHEN cl.row_id IS NOT NULL AND ch.bytes > ${inlineMax} THEN ${sqlSha256(column)} END`;
  return 'NULL::text';
}

/** Claims of workers that are gone (killed, or lost their session) are only clutter once their rows moved on. */
export async function dropStaleClaims(db: Queryable): Promise<void> {
  await query(
    db,
    `DELETE FROM ${CLAIMS_TABLE} c WHERE NOT ${sqlWorkerIsLive('c.worker')}`,
  );
}

/**
 * Rows of `tables` claimed by other workers whose leases have not expired, by table and by whether the worker
 * has stopped renewing its lease (`silent`: killed, frozen, cut off) or is still at work.
 */
export async function claimsOfOtherWorkers(db: Queryable, tables: string[], worker: string, silentMs: number): Promise<{ table: string; silent: boolean; rows: number; silentS: number; expiresInMs: number }[]> {
  return query(
    db,
    `SELECT c.table_name AS "table", l.renewed_at < now() - $3::int * interval '1 millisecond' AS silent, count(*)::int AS rows,
            round(extract(epoch FROM now() - min(l.renewed_at)))::int AS "silentS",
            ceil(extract(epoch FROM max(l.expires_at) - now()) * 1000)::float8 AS "expiresInMs"
       FROM ${CLAIMS_TABLE} c
       JOIN ${LEASES_TABLE} l ON l.worker = c.worker
      WHERE c.table_name = ANY($1::text[]) AND c.worker <> $2::bigint AND l.expires_at > now()
      GROUP BY 1, 2`,
    [tables, worker, silentMs],
  );
}
