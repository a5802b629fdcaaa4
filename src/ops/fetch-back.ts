import { createHash } from 'node:crypto';
import type { StorageContext } from '../context.ts';
import type { StoredTable } from '../tables.ts';
import { stageContent } from '../sql/content-chunks.ts';
import { IntegrityError } from '../errors.ts';
import type { Limiter } from '../pool.ts';

/**
 * Downloads an object that must hash to `hash`, for writing back into the database: up to `inlineMaxBytes`
 * as a string, larger ones streamed into the staging table in chunks (content null), hashed on the way; the
 * flip that uses it joins the staged chunks. `large` bounds how many large contents move at once.
 */
export async function fetchBack(
  context: StorageContext,
  table: StoredTable,
  worker: string,
  item: { id: string; key: string; hash: string; bytes: number },
  inlineMaxBytes: number,
  large: Limiter,
): Promise<{ content: string | null; bytes: number }> {
  if (item.bytes <= inlineMaxBytes) {
    const body = await context.store.getVerified(item.key, item.hash);
    return { content: body.toString('utf8'), bytes: body.length };
  }
  const bytes = await large.run(async () => {
    const download = await context.store.getStream(item.key);
    const digest = createHash('sha256');
    let count = 0;
    await stageContent(
      context.db,
      table,
      worker,
      item.id,
      (async function* () {
        for await (const chunk of download.body) {
          digest.update(chunk);
          count += chunk.length;
          yield chunk;
        }
      })(),
    );
    const actual = digest.digest('hex');
    if (actual !== item.hash) throw new IntegrityError(`object ${item.key} does not match its content_hash (hashes to ${actual.slice(0, 12)}…)`, item.key);
    return count;
  });
  return { content: null, bytes };
}
