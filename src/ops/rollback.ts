import type { StorageContext } from '../context.ts';
import type { Db } from '../db.ts';
import type { Prices } from '../cost.ts';
import { planRollback, planScopeOf, type Plan } from './plan.ts';
import { storeCheckNote } from './store-gate.ts';
import type { StoredTable } from '../tables.ts';
import type { ClaimedRow } from '../sql/claim-batch.ts';
import { rollbackMove, type RollbackItem } from '../sql/row-moves.ts';
import { dropStaleStaging } from '../sql/content-chunks.ts';
import { fetchBack } from './fetch-back.ts';
import { deleteUnnamed, emptyTally } from './guarded-deletes.ts';
import { windowStats, type DeleteWindowStats } from '../store/deletes.ts';
import { runBatches, type ItemOutcome, type TableRunResult } from './batch-runner.ts';
import { Limiter } from '../pool.ts';
import { errorMessage } from '../errors.ts';
import type { Reporter } from '../reporter.ts';
import { LARGE_ITEM_CONCURRENCY, type CommonRunOptions } from './options.ts';
import { countProblems, runTotals, withWorker } from './worker-run.ts';
import { assertSchemaReady } from './schema.ts';
import { LOCATION } from '../placement.ts';

export interface RollbackOptions extends CommonRunOptions {
  /** Stop at hybrid: content back in the database, object kept (the plan's short-term rollback). */
  keepHybrid: boolean;
  /** Delete the objects of rows that were rolled back, after their flip committed. */
  purge: boolean;
}

export interface RollbackResult {
  tables: TableRunResult[];
  interrupted: boolean;
  sessionLost?: string;
  rolledBack: number;
  bytesRestored: number;
  purged: number;
  purgeFailures: { key: string; reason: string }[];
  /** Objects --purge left in place on purpose: written by someone else (the app), or rewritten since the row was read. */
  purgeRefused: { key: string; reason: string }[];
  /** From each delete's tombstone to its answer: the time R2's per-key write limit must cover. */
  deleteWindow: DeleteWindowStats;
  problems: number;
}

/** Rollback's plan; with --purge, the store check the run makes first is said (store-gate.ts). */
export async function planRollbackRun(db: Db, options: RollbackOptions, prices: Prices, dryRun: boolean): Promise<Plan> {
  const plan = await planRollback(db, planScopeOf(options, prices), options.keepHybrid, options.purge);
  if (options.purge && !options.keepHybrid) plan.notes.push(storeCheckNote(dryRun));
  return plan;
}

/**
 * Brings contents back into the database. r2 rows: the object is downloaded, checked against content_hash,
 * and written back where the content is NULL; hybrid rows (content still there) just lose their key.
 * Both in compare-and-set batches; a missing or different object is reported and its row left alone.
 * With --purge, objects are deleted only for rows whose flip committed, and only if no row names them.
 */
export async function rollback(context: StorageContext, options: RollbackOptions, reporter: Reporter = {}): Promise<RollbackResult> {
  if (!options.prepared) await assertSchemaReady(context.db);
  await dropStaleStaging(context.db);
  const large = new Limiter(Math.min(LARGE_ITEM_CONCURRENCY, options.concurrency));
  const target = options.keepHybrid ? LOCATION.hybrid : LOCATION.database;
  const tally = emptyTally();
  const outcome = await withWorker(context, options, reporter, 'rollback', (run, table) => {
    const bringBack = async (row: ClaimedRow): Promise<ItemOutcome<RollbackItem>> => {
      if (!row.key) return { kind: 'skipped', reason: 'row has no object key' };
      if (row.location === LOCATION.hybrid) {
        if (!row.has_content) return { kind: 'skipped', reason: 'hybrid row has no database content; run verify' };
        return { kind: 'done', value: { kept: { id: row.id, key: row.key, hash: row.hash } }, bytes: 0 };
      }
      if (!row.hash) return { kind: 'failed', key: row.key, reason: 'r2 row has no content_hash: its object cannot be verified, so it is not trusted' };
      if (row.has_content) return { kind: 'skipped', reason: 'r2 row still has database content; run verify' };
      const fetched = await fetchBack(context, table, run.workerId, { id: row.id, key: row.key, hash: row.hash, bytes: row.bytes ?? 0 }, options.inlineMaxBytes, large);
      return { kind: 'done', value: { restored: { id: row.id, key: row.key, hash: row.hash, content: fetched.content } }, bytes: fetched.bytes };
    };
    // Each object only after its row's flip committed, and only while it still holds what its row held: an
    // object the app rewrote since is kept.
    const purge = async (done: RollbackItem[], flipped: string[]) => {
      const flippedSet = new Set(flipped);
      const candidates = done
        .map((item) => ('restored' in item ? item.restored : item.kept))
        .filter((item) => flippedSet.has(item.id))
        .map((item) => ({ key: item.key, expect: { sha256: item.hash ?? undefined } }));
      try {
        await deleteUnnamed(context, candidates, options.concurrency, tally);
      } catch (error) {
        // The rows are rolled back either way; an object left behind is only an orphan for cleanup.
        tally.failed.push(...candidates.map(({ key }) => ({ key, reason: `not purged: ${errorMessage(error)}` })));
      }
    };
    return runBatches(context.db, run, {
      table,
      move: rollbackMove(target),
      work: (row) => bringBack(row).catch((error): ItemOutcome<RollbackItem> => ({ kind: 'failed', key: row.key ?? undefined, reason: errorMessage(error) })),
      afterFlip: options.purge && target === LOCATION.database ? purge : undefined,
    });
  });
  return {
    ...outcome,
    rolledBack: runTotals(outcome).rows,
    bytesRestored: runTotals(outcome).bytes,
    purged: tally.deleted.length,
    purgeFailures: tally.failed,
    purgeRefused: tally.refused,
    deleteWindow: windowStats(tally.windows),
    problems: countProblems(outcome, tally.failed.length),
  };
}
