import { hostname } from 'node:os';
import type { Db } from '../db.ts';
import { query } from '../db.ts';
import { insertRun, liveRuns, lockRunStarts } from '../sql/runs.ts';
import { insertWorker, silentWorkersOf, type NewWorker } from '../sql/run-workers.ts';
import { LEASE_SILENT_MS, reconcileWorkers } from '../workers.ts';
import { currentOperator, findConflict, runIdentity, RunConflictError, type RunScope } from './identity.ts';

export { currentOperator } from './identity.ts';
import type { RunState } from './states.ts';

/** What a writing command tells the core about itself, so its run can be recorded. */
export interface RunRecordSpec {
  command: string;
  /** The command line, secrets already masked (identity.ts maskArguments). */
  arguments: string[];
  /** `--operator`, else the OS user. */
  operator?: string;
  toolVersion: string;
  scope: RunScope;
  /** Options that make two processes' work different (joined runs must agree on them). */
  identityExtra?: Record<string, unknown>;
  /** Rows and bytes eligible when the run starts (the plan's totals): progress and ETA are measured against them. */
  eligible?: { rows: number; bytes: number };
  retryOf?: string;
  /** Start even though a conflicting run is active. */
  force?: boolean;
  /** Row walks can be paused between batches; cleanup and restore-version cannot. */
  pausable: boolean;
  /** What the store was proven to honour before the first object write, for commands that write objects. */
  storeCheck?: Record<string, unknown>;
}

export interface OpenedRun {
  runId: string;
  /** Another process had started this run with the same command and rows; this one joined it. */
  joined: boolean;
  state: RunState;
}

/**
 * Records a new run, or joins the live run started by the same command over the same rows (several
 * processes of one migration), and registers this worker. One transaction under an advisory lock, so
 * concurrent starts agree. Runs whose workers vanished are marked interrupted first; a conflicting live
 * run refuses the start unless `force`.
 */
export async function openRun(db: Db, spec: RunRecordSpec, worker: Omit<NewWorker, 'host' | 'pid'>): Promise<OpenedRun> {
  const identity = runIdentity(spec.command, spec.scope, { ...spec.identityExtra, retryOf: spec.retryOf });
  return db.transaction(async (trx) => {
    await lockRunStarts(trx);
    await reconcileWorkers(trx);
    const live = await liveRuns(trx);
    if (!spec.force) {
      const conflict = findConflict(spec.command, spec.scope, live);
      if (conflict) throw new RunConflictError(conflict.sentence);
    }
    const self = { ...worker, host: hostname(), pid: process.pid };
    const joinable = live.find((run) => run.identity === identity && run.live_workers > 0 && run.state !== 'cancelling');
    if (joinable) {
      await insertWorker(trx, joinable.id, self);
      return { runId: joinable.id, joined: true, state: joinable.state };
    }
    const runId = await insertRun(trx, {
      command: spec.command,
      arguments: spec.arguments,
      identity,
      scope: spec.scope as unknown as Record<string, unknown>,
      operator: currentOperator(spec),
      host: self.host,
      pid: self.pid,
      toolVersion: spec.toolVersion,
      pausable: spec.pausable,
      retryOf: spec.retryOf,
      eligibleRows: spec.eligible?.rows,
      eligibleBytes: spec.eligible?.bytes,
      storeCheck: spec.storeCheck,
    });
    await insertWorker(trx, runId, self);
    return { runId, joined: false, state: 'running' as RunState };
  });
}

/**
 * Refuses early (before the plan is shown and confirmation asked) a run that would conflict with a live
 * one; openRun checks again, atomically, when the run starts.
 */
export async function refuseConflicts(db: Db, spec: RunRecordSpec, onWait: (sentence: string) => void = () => undefined): Promise<void> {
  if (spec.force) return;
  let lookedAgain = false;
  for (let look = 0; look < 4; look++) {
    await reconcileWorkers(db);
    const conflict = findConflict(spec.command, spec.scope, await liveRuns(db));
    if (!conflict) return;
    // A run whose every worker stopped renewing its lease (killed on another machine, or its process gone
    // while the database was down) is over once the leases expire: waited for, not refused. One killed a
    // moment ago is not silent yet: it is looked at again after a silence period.
    const silent = await silentWorkersOf(db, conflict.run.id, LEASE_SILENT_MS);
    if (silent.live > 0 && silent.silent === silent.live) {
      onWait(`run ${conflict.run.id} (${conflict.run.command}) works on overlapping rows, but its ${silent.live === 1 ? 'worker has' : `${silent.live} workers have`} stopped renewing ${silent.live === 1 ? 'its lease' : 'their leases'}: waiting ${Math.ceil(silent.expiresInMs / 1000)} s for ${silent.live === 1 ? 'it' : 'them'} to expire`);
      await new Promise((resolve) => setTimeout(resolve, silent.expiresInMs + 250));
      continue;
    }
    if (lookedAgain || silent.live === 0) break;
    lookedAgain = true;
    await new Promise((resolve) => setTimeout(resolve, LEASE_SILENT_MS + 500));
  }
  await reconcileWorkers(db);
  const conflict = findConflict(spec.command, spec.scope, await liveRuns(db));
  if (conflict) throw new RunConflictError(conflict.sentence);
}

/** Whether the run tables exist (they come with `schema --apply`). */
export async function runTablesPresent(db: Db): Promise<boolean> {
  const [{ present }] = await query<{ present: boolean }>(db, "SELECT to_regclass('overskill_storage_runs') IS NOT NULL AND to_regclass('overskill_storage_worker_leases') IS NOT NULL AS present");
  return present;
}
