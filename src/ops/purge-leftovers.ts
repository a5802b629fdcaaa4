import { withStore, type DatabaseContext, type StorageContext } from '../context.ts';
import type { Reporter } from '../reporter.ts';
import type { RunRecordSpec } from '../runs/open-run.ts';
import { withRecordedRun } from '../runs/recorded.ts';
import type { RunState } from '../runs/states.ts';
import { objectItem } from '../sql/run-items.ts';
import { listRuns } from '../sql/runs.ts';
import { cleanup, type CleanupResult } from './cleanup.ts';
import type { RollbackOptions } from './rollback.ts';

/**
 * `rollback --purge` with nothing left to roll back. Rows an earlier rollback without --purge brought back no
 * longer name their objects: those are what --purge is asked for now. They are orphans of ours, deleted as
 * cleanup deletes them (guarded-deletes.ts: the database is asked again before each batch, and a row that
 * starts naming a key meanwhile gets its object back). Only by --app: a --rollout or --shard scope is not one
 * of the bucket's prefixes, and cleanup is the way for it.
 */
export type LeftoverPurgePlan =
  | { leftovers: 'scope-is-not-a-prefix'; appIds?: string[] }
  /** A dry run opens no bucket: it can say what the real run will do, not what it will find. */
  | { leftovers: 'not-listed-in-a-dry-run'; appIds?: string[] }
  /** A migrate's upload may be named by no row yet, for a moment: with one live, cleanup's grace period is the safe way. */
  | { leftovers: 'migrate-running'; appIds?: string[]; runIds: string[] }
  | { leftovers: 'listed'; appIds?: string[]; listing: CleanupResult; now: Date };

export interface LeftoverPurgeResult {
  result: CleanupResult;
  run?: { id: string; joined: boolean; state?: RunState };
}

export async function planLeftoverPurge(context: DatabaseContext, options: RollbackOptions, dryRun: boolean, reporter: Reporter = {}): Promise<LeftoverPurgePlan> {
  const appIds = options.filter.appIds;
  if (options.filter.rolloutPercent !== undefined || options.filter.shard || options.filter.rowIds) return { leftovers: 'scope-is-not-a-prefix', appIds };
  if (dryRun) return { leftovers: 'not-listed-in-a-dry-run', appIds };
  const migrating = await listRuns(context.db, { live: true, command: 'migrate', limit: 100 });
  if (migrating.length) return { leftovers: 'migrate-running', appIds, runIds: migrating.map((run) => String(run.id)) };
  // With no migrate live, every object named by no row and older than this moment was left by a run that has
  // ended; one a migrate starts uploading from now on is newer, and left alone (a grace of zero from `now`).
  const now = new Date();
  const listing = await cleanup(withStore(context), { appIds, graceMs: 0, now, apply: false, concurrency: options.concurrency, signal: options.signal }, reporter);
  return { leftovers: 'listed', appIds, listing, now };
}

/** Deletes what planLeftoverPurge listed (and what appeared since, up to its `now`), as one recorded run. */
export async function purgeLeftovers(
  context: StorageContext,
  options: RollbackOptions,
  plan: Extract<LeftoverPurgePlan, { leftovers: 'listed' }>,
  record: RunRecordSpec,
  reporter: Reporter = {},
): Promise<LeftoverPurgeResult> {
  return withRecordedRun(
    context,
    record,
    () => cleanup(context, { appIds: plan.appIds, graceMs: 0, now: plan.now, apply: true, concurrency: options.concurrency, signal: options.signal }, reporter),
    (done) => ({
      rows: done.deleted,
      bytes: 0,
      items: [...done.failed.map((f) => objectItem(f.key, 'failed', f.reason)), ...done.refused.map((r) => objectItem(r.key, 'refused', r.reason))],
      interrupted: done.interrupted,
    }),
  );
}
