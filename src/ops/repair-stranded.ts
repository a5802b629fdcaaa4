import type { StorageContext } from '../context.ts';
import type { StoredTable } from '../tables.ts';
import type { ClaimedRow } from '../sql/claim-batch.ts';
import { forgetOldRestores, hasAppWriter, type StrandedRepair } from '../sql/stranded-writes.ts';
import { repairStrandedMove } from '../sql/row-moves.ts';
import { runBatches, type ItemOutcome, type TableRunResult } from './batch-runner.ts';
import { fetchBack } from './fetch-back.ts';
import { errorMessage } from '../errors.ts';
import type { Limiter } from '../pool.ts';
import type { Reporter } from '../reporter.ts';
import type { WorkerRun } from './options.ts';
import { LOCATION } from '../placement.ts';

/** Where the plan's `store_in_r2` puts a file: its own formula, unsafe paths included (it refuses none). */
export function planUploadKey(appId: string, path: string): string {
  return `apps/${appId}/files/${path.replace(/^\//, '')}`;
}

/**
 * Finds the app's writes that a save computed from an earlier load left where no reader finds them
 * (sql/stranded-writes.ts), and puts each back: the content in the row is the app's, or the object at the
 * plan key is, proven by its hash before anything changes. Runs first in every command that flips rows,
 * so the command then treats the row as the app left it. A state that proves nothing is left alone and
 * listed as failed, never guessed at.
 */
export async function repairStrandedWrites(
  context: StorageContext,
  run: WorkerRun,
  table: StoredTable,
  large: Limiter,
  reporter: Reporter,
): Promise<TableRunResult | undefined> {
  if (!hasAppWriter(table)) return undefined;
  await forgetOldRestores(context.db);
  const inlineMaxBytes = run.options.inlineMaxBytes;
  const examine = async (row: ClaimedRow): Promise<ItemOutcome<StrandedRepair>> => {
    if (row.has_content && (row.location === LOCATION.r2 || (row.location === LOCATION.hybrid && !row.key))) {
      if (!row.db_hash) return { kind: 'failed', reason: 'content vanished before it could be read' };
      return { kind: 'done', value: { kind: 'content-is-current', id: row.id, contentHash: row.db_hash, key: row.key }, bytes: 0 };
    }
    if (row.location === LOCATION.hybrid && row.key && row.has_content && row.bytes !== null && row.bytes < run.options.policy.hybridMin) {
      // Small enough for the database: stale only if its object no longer holds the row's content.
      if (!row.db_hash) return { kind: 'failed', reason: 'content vanished before it could be read' };
      const head = await context.store.head(row.key);
      const holds = head !== undefined && !head.tombstone && head.sha256 === row.db_hash && head.contentSize === row.bytes;
      // Migrated under a lower threshold: left alone (and passed over for the rest of this run).
      if (holds) return { kind: 'done', value: { kind: 'in-place', id: row.id }, bytes: 0 };
      return { kind: 'done', value: { kind: 'content-is-current', id: row.id, contentHash: row.db_hash, key: row.key }, bytes: 0 };
    }
    if (row.path === null) return { kind: 'skipped', reason: 'row has no path, so no plan key to look at' };
    if (!row.hash) return { kind: 'failed', reason: 'row has no content_hash to prove an object by' };
    const key = planUploadKey(row.app_id, row.path);
    if (row.location === LOCATION.r2) {
      const read = await context.store.readAndHash(key).catch(() => undefined);
      if (read?.sha256 !== row.hash) {
        return { kind: 'failed', key, errorClass: 'StrandedWrite', reason: `r2 row has no object key, and the object at its plan key ${read ? 'holds other bytes' : 'is missing'}: its content is nowhere a reader looks` };
      }
      return { kind: 'done', value: { kind: 'name-plan-key', id: row.id, key, hash: row.hash }, bytes: 0 };
    }
    if (!row.db_hash) return { kind: 'failed', reason: 'content vanished before it could be read' };
    const head = await context.store.head(key);
    if (!head) return { kind: 'failed', key, errorClass: 'StrandedWrite', reason: "the app saved a new content_hash for this row, but its plan key holds no object: the app's content is nowhere" };
    const fetched = await fetchBack(context, table, run.workerId, { id: row.id, key, hash: row.hash, bytes: head.contentSize ?? head.size }, inlineMaxBytes, large);
    return { kind: 'done', value: { kind: 'bring-back', id: row.id, key, hash: row.hash, restoredHash: row.db_hash, content: fetched.content }, bytes: fetched.bytes };
  };
  // Outside the command's --limit: a write of the app's is put back whatever the run was asked to take.
  const unlimited: WorkerRun = { ...run, options: { ...run.options, limit: undefined }, budget: { remaining: Number.POSITIVE_INFINITY }, reporter };
  return runBatches(context.db, unlimited, {
    table,
    move: repairStrandedMove(run.options.policy.hybridMin),
    work: (row) => examine(row).catch((error): ItemOutcome<StrandedRepair> => ({ kind: 'failed', reason: errorMessage(error), errorClass: error instanceof Error ? error.name : undefined })),
  });
}
