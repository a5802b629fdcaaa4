import { PROBE_PREFIX } from '../store/preflight.ts';
import type { StorageContext } from '../context.ts';
import { TABLE_NAMES, TABLES } from '../tables.ts';
import type { RowFilter } from '../sql/filters.ts';
import { deleteUnnamed, emptyTally, quarantineUnnamed, type DeletionTally } from './guarded-deletes.ts';
import { windowStats, type DeleteWindowStats } from '../store/deletes.ts';
import { walkBucketByApp } from './bucket-walk.ts';
import type { StoredObject } from '../object-store.ts';
import { UsageError } from '../errors.ts';
import { keyIdentity } from '../keys.ts';
import type { Reporter } from '../reporter.ts';
import { assertSchemaReady } from './schema.ts';
import { assertScopeSelects } from './scope.ts';
import { TOOL_KEY_PREFIX } from '../store/lifecycle.ts';
import { mapLimit } from '../pool.ts';
import { errorMessage } from '../errors.ts';

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
  /** Orphans left in place on purpose: written by someone else (the app), or rewritten since they were listed. */
  refused: { key: string; reason: string }[];
  /** Objects put back because a row started naming them while they were deleted (see guarded-deletes.ts). */
  restored: number;
  failed: { key: string; reason: string }[];
  /** From each delete's tombstone to its answer: the time R2's per-key write limit must cover. */
  deleteWindow: DeleteWindowStats;
  /**
   * Incomplete multipart uploads under apps/: billed until aborted, and R2 aborts them itself only after seven
   * days. Those older than the grace period are aborted (an upload of the tool's that old is long dead: a run
   * completes or aborts its own). `unknown` when the store does not list them.
   */
  uploads: { found: number; tooYoung: number; aborted: number; failed: { key: string; reason: string }[]; unknown?: string };
  applied: boolean;
  interrupted: boolean;
}

const DELETE_BATCH = 1000;

/** Lists the incomplete uploads under apps/, and aborts those begun before `cutoff` when applying. */
async function sweepUploads(context: StorageContext, result: CleanupResult, cutoff: number, options: CleanupOptions): Promise<void> {
  const old: { key: string; uploadId: string }[] = [];
  try {
    const prefixes = options.appIds?.length ? options.appIds.map((id) => `${TOOL_KEY_PREFIX}${id}/`) : [TOOL_KEY_PREFIX];
    for (const prefix of prefixes) {
      for await (const upload of context.store.listUploads(prefix)) {
        if (options.signal?.aborted) break;
        result.uploads.found++;
        if (!upload.initiated || upload.initiated.getTime() > cutoff) result.uploads.tooYoung++;
        else old.push(upload);
      }
    }
  } catch (error) {
    result.uploads.unknown = errorMessage(error);
    return;
  }
  if (!options.apply) return;
  await mapLimit(old, options.concurrency, async (upload) => {
    if (options.signal?.aborted) return;
    try {
      await context.store.abortUpload(upload.key, upload.uploadId);
      result.uploads.aborted++;
    } catch (error) {
      result.uploads.failed.push({ key: upload.key, reason: errorMessage(error) });
    }
  });
}

export function validateQuarantinePrefix(prefix: string): string {
  const clean = prefix.replace(/^\/+|\/+$/g, '');
  if (!clean || clean === 'apps' || clean.startsWith('apps/')) throw new UsageError('--quarantine needs a prefix outside apps/ (e.g. quarantine).');
  if (`${clean}/`.startsWith(PROBE_PREFIX.split('/')[0] + '/')) throw new UsageError(`--quarantine cannot be under ${PROBE_PREFIX.split('/')[0]}/: that prefix is reserved for the store probes.`);
  if (/[\u0000-\u001f\u007f]/.test(clean)) throw new UsageError('--quarantine prefix contains control characters.');
  return clean;
}

/**
 * Finds objects under apps/ that no row of any table names and that are older than the grace period; lists
 * them, or deletes them (or moves them under a quarantine prefix). Immediately before each deletion batch the
 * database is asked again, so a row that started naming a key during the walk keeps its object; and each
 * object is deleted only if this tool wrote it and it still has the ETag it was listed with (guarded-deletes.ts):
 * an object the app wrote is never deleted, whatever its age.
 */
export async function cleanup(context: StorageContext, options: CleanupOptions, reporter: Reporter = {}): Promise<CleanupResult> {
  await assertSchemaReady(context.db);
  await assertScopeSelects(context.db, { appIds: options.appIds });
  const quarantine = options.quarantinePrefix ? validateQuarantinePrefix(options.quarantinePrefix) : undefined;
  const cutoff = (options.now ?? new Date()).getTime() - options.graceMs;
  const result: CleanupResult = {
    orphans: 0,
    orphanBytes: 0,
    tooYoung: 0,
    sample: [],
    deleted: 0,
    quarantined: 0,
    refused: [],
    restored: 0,
    failed: [],
    deleteWindow: windowStats([]),
    uploads: { found: 0, tooYoung: 0, aborted: 0, failed: [] },
    applied: options.apply,
    interrupted: false,
  };
  const tally: DeletionTally = emptyTally();
  const sampleSize = options.sampleSize ?? 20;
  const filter: RowFilter = { appIds: options.appIds };
  let pending: StoredObject[] = [];

  const removePending = async () => {
    if (!pending.length) return;
    const batch = pending;
    pending = [];
    if (quarantine) {
      result.quarantined += await quarantineUnnamed(context, batch, quarantine, options.concurrency, tally);
    } else {
      // Told object by object: a batch of a thousand takes a while at R2's distance.
      await deleteUnnamed(context, batch.map((object) => ({ key: object.key, expect: { etag: object.etag } })), options.concurrency, tally, () => reporter.worked?.(1, 0));
    }
    reporter.advance?.(batch.length, batch.reduce((sum, object) => sum + object.size, 0));
  };

  reporter.stage?.(options.apply ? 'cleanup' : 'cleanup (listing)');
  const tables = TABLE_NAMES.map((name) => TABLES[name]);
  for await (const group of walkBucketByApp(context, { tables, filter, withMd5: false, groupObjects: options.groupObjects, signal: options.signal })) {
    // Compared as the store compares keys: a row naming another spelling of a listed key names that object.
    const referenced = new Set(group.rows.map((row) => keyIdentity(row.key)));
    for (const object of group.objects) {
      if (referenced.has(keyIdentity(object.key))) continue;
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
  await sweepUploads(context, result, cutoff, options);
  if (!quarantine) result.deleted = tally.deleted.length;
  result.refused = tally.refused;
  result.restored = tally.restored.length;
  result.failed.push(...tally.failed);
  result.deleteWindow = windowStats(tally.windows);
  result.interrupted = options.signal?.aborted ?? false;
  reporter.stageDone?.(options.apply ? 'cleanup' : 'cleanup (listing)');
  return result;
}
