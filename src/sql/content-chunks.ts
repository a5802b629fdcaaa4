import { StringDecoder } from 'node:string_decoder';
import { acquireSession, prepareTransaction, query, type Queryable } from '../db.ts';
import { sqlContentBytes, type StoredTable } from '../tables.ts';
import { STAGING_TABLE } from './schema.ts';
import { sqlWorkerIsLive } from './worker-leases.ts';

/**
 * Bytes per slice, and slices per round trip, when a content is too large to hold. Slices stay well below
 * the size at which the driver starts doubling its receive buffer for one message (garbage that would
 * dominate memory); a round trip still carries 1 MiB, so a 20 MB row is twenty of them.
 */
export const SLICE_BYTES = 64 * 1024;
const SLICES_PER_FETCH = 16;

/**
 * Reads one large content from the database in byte slices, so no more than one slice is held at a time.
 * One cursor over one statement: the content is detoasted and converted to UTF-8 once, and every slice is
 * cut by byte offset. (Slicing text by characters, one statement per slice, costs quadratic time on
 * multibyte text: PostgreSQL counts characters from the start for every slice.) The statement's snapshot
 * makes the slices one consistent version of the row; a write that lands meanwhile changes the hash the
 * claim computed, which the uploader detects, and nothing is flipped on such a read.
 * The cursor needs its own connection and transaction for as long as the caller keeps reading.
 * Slices travel as base64 text (PostgreSQL's line breaks are skipped by the decoder): a third more than the
 * bytes, where bytea's hex text is twice as many, so each slice is a string small enough to die young in
 * the driver's heap. Whatever the encoding, the bytes are hashed on the way and must match the claim's hash.
 */
let cursors = 0;

export async function* readContentChunks(db: Queryable, table: StoredTable, id: string, sliceBytes = SLICE_BYTES, slicesPerFetch = SLICES_PER_FETCH): AsyncGenerator<Buffer> {
  // Inside a caller's transaction the cursor lives in it; otherwise in a read-only transaction of its own.
  const ownTransaction = !(db as { isTransaction?: boolean }).isTransaction;
  const cursor = `overskill_slices_${++cursors}`;
  const session = await acquireSession(db);
  let open = false;
  try {
    if (ownTransaction) await session.connection.query('BEGIN READ ONLY');
    await prepareTransaction(db, session.connection, ownTransaction ? {} : db);
    open = true;
    await session.connection.query(
      `DECLARE ${cursor} NO SCROLL CURSOR FOR
       SELECT encode(substring(c.bytes FROM s.at FOR ${Number(sliceBytes)}), 'base64') AS slice
         FROM (SELECT ${sqlContentBytes(`t.${table.contentColumn}`)} AS bytes FROM ${table.table} t WHERE t.id = $1::bigint OFFSET 0) c
        CROSS JOIN LATERAL generate_series(1, octet_length(c.bytes), ${Number(sliceBytes)}) AS s(at)`,
      [id],
    );
    for (;;) {
      const result = await session.connection.query(`FETCH ${Number(slicesPerFetch)} FROM ${cursor}`);
      for (const row of result.rows as { slice: string }[]) yield Buffer.from(row.slice, 'base64');
      if (result.rows.length < slicesPerFetch) break;
    }
    await session.connection.query(ownTransaction ? 'COMMIT' : `CLOSE ${cursor}`);
    open = false;
  } finally {
    // An abandoned read (the upload failed) must not leave a transaction or cursor open on a pooled connection.
    if (open) await session.connection.query(ownTransaction ? 'ROLLBACK' : `CLOSE ${cursor}`).catch(() => undefined);
    await session.release();
  }
}

/**
 * Writes a large content coming back from R2 into the staging table in slices, so rollback and restore
 * never hold a whole large content in memory. The slices are joined inside PostgreSQL by the flip.
 */
export async function stageContent(db: Queryable, table: StoredTable, worker: string, id: string, bytes: AsyncIterable<Buffer>, sliceBytes = 4 * 1024 * 1024): Promise<void> {
  await query(db, `DELETE FROM ${STAGING_TABLE} WHERE table_name = $1 AND row_id = $2::bigint AND worker = $3::bigint`, [table.table, id, worker]);
  const decoder = new StringDecoder('utf8');
  let pending = '';
  let seq = 0;
  const flush = async () => {
    if (!pending) return;
    await query(db, `INSERT INTO ${STAGING_TABLE} (table_name, row_id, worker, seq, chunk) VALUES ($1, $2::bigint, $3::bigint, $4, $5)`, [table.table, id, worker, seq++, pending]);
    pending = '';
  };
  for await (const chunk of bytes) {
    pending += decoder.write(chunk);
    if (pending.length >= sliceBytes) await flush();
  }
  pending += decoder.end();
  await flush();
}

/** Staged slices of workers that are gone (killed mid-rollback) are dead weight. */
/**
 * The CTEs a flip that writes staged contents back uses: `staged` joins each row's chunks in order, and
 * `unstaged` removes them in the same statement. Placeholders: table name, worker, row ids.
 */
export function stagedContentCtes(table: string, worker: string, ids: string): { staged: string; unstaged: string } {
  const mine = `s.table_name = ${table} AND s.worker = ${worker}::bigint AND s.row_id = ANY(${ids}::bigint[])`;
  return {
    staged: `staged AS (
       SELECT s.row_id, string_agg(s.chunk, '' ORDER BY s.seq) AS content
         FROM ${STAGING_TABLE} s
        WHERE ${mine}
        GROUP BY s.row_id
     )`,
    unstaged: `unstaged AS (DELETE FROM ${STAGING_TABLE} s WHERE ${mine})`,
  };
}

export async function dropStaleStaging(db: Queryable): Promise<void> {
  await query(
    db,
    `DELETE FROM ${STAGING_TABLE} s WHERE NOT ${sqlWorkerIsLive('s.worker')}`,
  );
}
