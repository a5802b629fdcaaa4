import type { StorageContext } from '../context.ts';
import { keysStillReferenced, rowsNamingKeys } from '../sql/references.ts';
import { readContentChunks } from '../sql/content-chunks.ts';
import { TABLES } from '../tables.ts';
import { contentTypeFor } from '../content-type.ts';
import { mapLimit } from '../pool.ts';
import { errorMessage } from '../errors.ts';
import type { DeleteExpectation } from '../store/deletes.ts';
import { LOCATION } from '../placement.ts';

export interface DeleteCandidate {
  key: string;
  expect: DeleteExpectation;
}

export interface DeletionTally {
  deleted: string[];
  /** Left in place on purpose: not ours, rewritten since it was checked, still named by a row. */
  refused: { key: string; reason: string }[];
  failed: { key: string; reason: string }[];
  /** Objects put back from their rows' database content because a row started naming them while they were deleted. */
  restored: string[];
  windows: { ms: number; guarded: boolean }[];
}

export function emptyTally(): DeletionTally {
  return { deleted: [], refused: [], failed: [], restored: [], windows: [] };
}

/**
 * Deletes objects that no row names, each only if this tool wrote it and it is still what was checked
 * (ObjectStore.deleteIfOurs). Afterwards the database is asked once more: a row of ours that started naming
 * one of the keys meanwhile (a migrate adopting an object it had uploaded before) gets the object back from
 * its database content, so no row is left pointing at a deleted object.
 */
export async function deleteUnnamed(context: StorageContext, candidates: DeleteCandidate[], concurrency: number, tally: DeletionTally, onEach?: () => void): Promise<void> {
  if (!candidates.length) return;
  const named = await keysStillReferenced(context.db, candidates.map((candidate) => candidate.key));
  const deletedNow: string[] = [];
  const tombstoned: string[] = [];
  await mapLimit(candidates, concurrency, async ({ key, expect }) => {
    if (named.has(key)) {
      tally.refused.push({ key, reason: 'a row names it; not deleted' });
      return;
    }
    try {
      const outcome = await context.store.deleteIfOurs(key, expect);
      if (outcome.status === 'deleted') {
        deletedNow.push(key);
        tally.windows.push({ ms: outcome.windowMs, guarded: outcome.guarded });
      } else if (outcome.status === 'refused' || outcome.status === 'failed') {
        (outcome.status === 'refused' ? tally.refused : tally.failed).push({ key, reason: outcome.reason });
        if (outcome.tombstoned) tombstoned.push(key);
      }
    } catch (error) {
      tally.failed.push({ key, reason: errorMessage(error) });
    }
    onEach?.();
  });
  tally.deleted.push(...deletedNow);
  // A key left holding our 0-byte tombstone is as good as deleted for a row that started naming it.
  await restoreNamedObjects(context, [...deletedNow, ...tombstoned], tally);
}

async function restoreNamedObjects(context: StorageContext, deleted: string[], tally: DeletionTally): Promise<void> {
  for (const row of await rowsNamingKeys(context.db, deleted)) {
    const table = TABLES[row.table];
    // A 'database' row keeps its content in the database and needs no object (the plan's model leaves its key).
    if (row.location === LOCATION.database) continue;
    if (!row.has_content || row.db_hash === null || row.db_hash !== row.hash || row.bytes === null) {
      tally.failed.push({ key: row.key, reason: `${table.table} #${row.id} started naming this key while it was deleted, and has no matching database content to restore it from; run verify` });
      continue;
    }
    try {
      // Whatever of ours is there (a tombstone) is replaced by the row's own content; anything else is refused.
      await context.store.putStreamVerified({ key: row.key, open: () => readContentChunks(context.db, table, row.id), sha256: row.db_hash, size: row.bytes, contentType: contentTypeFor(row.key), intent: {
        kind: 'create',
        mayReplaceOurs: async () => true,
      } });
      tally.restored.push(row.key);
    } catch (error) {
      tally.failed.push({ key: row.key, reason: `${table.table} #${row.id} names this deleted key and restoring it failed: ${errorMessage(error)}` });
    }
  }
}

/**
 * Moves objects no row names under `prefix` (a server-side copy while the source still has the ETag seen,
 * the copy checked, then the guarded delete of the original): `cleanup --quarantine`, `prune-versions
 * --quarantine`. An object whose ETag the caller does not know is looked at first.
 */
export async function quarantineUnnamed(
  context: StorageContext,
  objects: { key: string; etag?: string; size?: number; expect?: DeleteExpectation }[],
  prefix: string,
  concurrency: number,
  tally: DeletionTally,
): Promise<number> {
  if (!objects.length) return 0;
  const stillNamed = await keysStillReferenced(context.db, objects.map((object) => object.key));
  const copied: DeleteCandidate[] = [];
  await mapLimit(objects.filter((object) => !stillNamed.has(object.key)), concurrency, async (object) => {
    const target = `${prefix}/${object.key}`;
    try {
      const source = object.etag !== undefined && object.size !== undefined ? { etag: object.etag, size: object.size, sha256: undefined } : await context.store.head(object.key);
      if (!source) return; // gone already
      if (object.expect?.sha256 && source.sha256 !== undefined && source.sha256 !== object.expect.sha256) {
        tally.refused.push({ key: object.key, reason: 'holds other content than the row it was checked against; not moved' });
        return;
      }
      await context.store.copy(object.key, target, source.etag);
      const copy = await context.store.head(target);
      if (!copy || copy.size !== source.size || (source.etag && copy.etag !== source.etag)) {
        tally.failed.push({ key: object.key, reason: `quarantine copy ${target} does not match; original kept` });
        return;
      }
      copied.push({ key: object.key, expect: { etag: source.etag } });
    } catch (error) {
      tally.failed.push({ key: object.key, reason: errorMessage(error) });
    }
  });
  const before = tally.deleted.length;
  await deleteUnnamed(context, copied, concurrency, tally);
  return tally.deleted.length - before;
}
