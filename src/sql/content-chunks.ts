import { StringDecoder } from 'node:string_decoder';
import { query, type Queryable } from '../db.ts';
import type { StoredTable } from '../tables.ts';
import { STAGING_TABLE } from './schema.ts';
import { sqlWorkerIsLive } from '../workers.ts';

/**
 * Characters per slice when a content is too large to hold (at most 4 bytes each in UTF-8). PostgreSQL
 * detoasts a multibyte text up to the slice end for every substr, so fewer, larger slices are much faster.
 */
export const CHUNK_CHARS = 8_000_000;

/**
 * Reads one large content from the database in character-aligned slices, so no more than one slice is
 * held at a time. A write racing the read yields bytes whose hash differs from the one the claim
 * computed, which the uploader detects; nothing is flipped on such a read.
 */
export async function* readContentChunks(db: Queryable, table: StoredTable, id: string, chunkChars = CHUNK_CHARS): AsyncGenerator<Buffer> {
  for (let start = 1; ; start += chunkChars) {
    const rows = await query<{ chunk: string | null }>(
      db,
      `SELECT substr(t.${table.contentColumn}, $2::int, $3::int) AS chunk FROM ${table.table} t WHERE t.id = $1::bigint`,
      [id, start, chunkChars],
    );
    const chunk = rows[0]?.chunk;
    if (!chunk) return;
    yield Buffer.from(chunk, 'utf8');
    if (chunk.length < chunkChars) return;
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
export async function dropStaleStaging(db: Queryable): Promise<void> {
  await query(
    db,
    `DELETE FROM ${STAGING_TABLE} s WHERE NOT ${sqlWorkerIsLive('s.worker')}`,
  );
}
