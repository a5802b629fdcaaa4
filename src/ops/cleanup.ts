import type { StorageContext } from '../context.ts';
import { TABLE_NAMES, TABLES } from '../tables.ts';
import type { RowFilter } from '../sql/filters.ts';
import { keysStillReferenced } from '../sql/references.ts';
import { walkBucketByApp } from './bucket-walk.ts';
import type { StoredObject } from '../object-store.ts';
import { UsageError, errorMessage } from '../errors.ts';
import type { Reporter } from '../reporter.ts';
import { assertSchemaReady } from './schema.ts';
import { mapLimit } from '../pool.ts';

export interface CleanupOptions {
  appIds?: string[];
  /** Objects younger than this are never touched: an upload racing its flip is not an orphan. */
  graceMs: number;
  /** false: list only. true: delete (or quarantine). */
  apply: boolean;
  /** Move orphans under this prefix (copy, verify, delete) instead of deleting them. */
  quarantinePrefix?: string;
  concurrency: number;
  sampleSize?: number;
  /** Objects per app group of the bucket walk (see walkBucketByApp). */
  groupObjects?: number;
  signal?: AbortSignal;
  now?: Date;
}

export interface CleanupResult {
  orphans: number;
  orphanBytes: number;
  /** Orphans still inside the grace period (left alone). */
  tooYoung: number;
  sample: { key: string; size: number; lastModified?: string }[];
  deleted: number;
  quarantined: number;
  failed: { key: string; reason: string }[];
  applied: boolean;
  interrupted: boolean;
}

const DELETE_BATCH = 1000;

export function validateQuarantinePrefix(prefix: string): string {
  const clean = prefix.replace(/^\/+|\/+$/g, '');
  if (!clean || clean === 'apps' || clean.startsWith('apps/')) throw new UsageError('--quarantine needs a prefix outside apps/ (e.g. quarantine).');
  if (/[\u0000-\u001f\u007f]/.test(clean)) throw new UsageError('--quarantine prefix contains control characters.');
  return clean;
}

/**
 * Finds objects under apps/ that no row of any table names and that are older than the grace period; lists
 * them, or deletes them in DeleteObjects batches of up to 1000 (or moves them under a quarantine prefix).
 * Immediately before each deletion batch the database is asked again, so a row that started naming a key
 * during the walk keeps its object.
 */
export async function cleanup(context: StorageContext, options: CleanupOptions, reporter: Reporter = {}): Promise<CleanupResult> {
  await assertSchemaReady(context.db);
  const quarantine = options.quarantinePrefix ? validateQuarantinePrefix(options.quarantinePrefix) : undefined;
  const cutoff = (options.now ?? new Date()).getTime() - options.graceMs;
  const result: CleanupResult = { orphans: 0, orphanBytes: 0, tooYoung: 0, sample: [], deleted: 0, quarantined: 0, failed: [], applied: options.apply, interrupted: false };
  const sampleSize = options.sampleSize ?? 20;
  const filter: RowFilter = { appIds: options.appIds };
  let pending: StoredObject[] = [];

  const removePending = async () => {
    if (!pending.length) return;
    const batch = pending;
    pending = [];
    const stillNamed = await keysStillReferenced(context.db, batch.map((object) => object.key));
    const doomed = batch.filter((object) => !stillNamed.has(object.key));
    if (quarantine) {
      await mapLimit(doomed, options.concurrency, async (object) => {
        const target = `${quarantine}/${object.key}`;
        try {
          await context.store.copy(object.key, target);
          const copy = await context.store.head(target);
          if (!copy || copy.size !== object.size || (object.etag && copy.etag !== object.etag)) {
            result.failed.push({ key: object.key, reason: `quarantine copy ${target} does not match; original kept` });
            return;
          }
          const deletion = await context.store.deleteMany([object.key]);
          if (deletion.deleted.length) result.quarantined++;
          result.failed.push(...deletion.failed);
        } catch (error) {
          result.failed.push({ key: object.key, reason: errorMessage(error) });
        }
      });
    } else {
      const deletion = await context.store.deleteMany(doomed.map((object) => object.key));
      result.deleted += deletion.deleted.length;
      result.failed.push(...deletion.failed);
    }
    reporter.advance?.(batch.length, batch.reduce((sum, object) => sum + object.size, 0));
  };

  reporter.stage?.(options.apply ? 'cleanup' : 'cleanup (listing)');
  const tables = TABLE_NAMES.map((name) => TABLES[name]);
  for await (const group of walkBucketByApp(context, { tables, filter, withMd5: false, groupObjects: options.groupObjects, signal: options.signal })) {
    const referenced = new Set(group.rows.map((row) => row.key));
    for (const object of group.objects) {
      if (referenced.has(object.key)) continue;
      if (!object.lastModified || object.lastModified.getTime() > cutoff) {
        result.tooYoung++;
        continue;
      }
      result.orphans++;
      result.orphanBytes += object.size;
      if (result.sample.length < sampleSize) result.sample.push({ key: object.key, size: object.size, lastModified: object.lastModified.toISOString() });
      if (options.apply) {
        pending.push(object);
        if (pending.length >= DELETE_BATCH) await removePending();
      }
    }
  }
  if (options.apply) await removePending();
  result.interrupted = options.signal?.aborted ?? false;
  reporter.stageDone?.(options.apply ? 'cleanup' : 'cleanup (listing)');
  return result;
}
