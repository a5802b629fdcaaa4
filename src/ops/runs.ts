import { sessionIsReadOnly } from '../sql/database-access.ts';
import type { Db } from '../db.ts';
import { UsageError } from '../errors.ts';
import { TABLES } from '../tables.ts';
import { listRuns, moveRun, readRun, runProgress, setPace, transitionsOf, type ProgressPoint, type RunFilter, type RunRow } from '../sql/runs.ts';
import { runWorkers, settlePause, type WorkerRow } from '../sql/run-workers.ts';
import { LEASE_SILENT_MS, reconcileWorkers } from '../workers.ts';
import { describeHealth } from '../runs/worker-health.ts';
import { runItems, type StoredRunItem } from '../sql/run-items.ts';
import { canMove, IllegalRunMoveError, LIVE_STATES, type RunState } from '../runs/states.ts';
import { runTablesPresent } from '../runs/open-run.ts';
import { SchemaMissingError } from '../errors.ts';
import { secondsLeft } from '../runs/rate-window.ts';

async function assertRunTables(db: Db): Promise<void> {
  if (!(await runTablesPresent(db))) throw new SchemaMissingError('This database has no run records yet: run `overskill-storage schema --apply` (it adds the run tables).');
}

/** A run's state for `status`: its workers, its recent rate, and the time left at that rate. */
export interface RunStatus {
  run: RunRow;
  workers: (WorkerRow & { waiting?: string; stalledForMs?: number; pool?: string; pace?: string; bucketLimited?: boolean })[];
  /** Rows and bytes per second over the workers' recent working time (paused time excluded). */
  rate: { rowsPerSecond: number | null; bytesPerSecond: number | null };
  /** Rows still to do against the eligible total at the start, and the time that takes at the recent rate. */
  remaining: { rows: number | null; bytes: number | null; etaSeconds: number | null };
  /** Why the run is not moving, when it is not: paused by whom, the database load probe, --max-rate. */
  waiting: string[];
  /** Live workers with items in flight and no progress for longer than one request can take. */
  stalled: string[];
}

export interface StatusResult {
  active: RunStatus[];
  recent: RunStatus[];
  /** Runs found dead (every worker gone) while looking; they are now interrupted. */
  interruptedNow: string[];
}

export async function runStatus(db: Db, options: { runId?: string; recent?: number } = {}): Promise<StatusResult> {
  await assertRunTables(db);
  // On a standby (or a read-only session) runs are shown as recorded: marking dead ones needs a write.
  const interruptedNow = (await sessionIsReadOnly(db)) ? [] : await reconcileWorkers(db);
  let runs: RunRow[];
  if (options.runId) {
    const run = await readRun(db, options.runId);
    if (!run) throw new UsageError(`There is no run ${options.runId}.`);
    runs = [run];
  } else {
    runs = [...(await listRuns(db, { live: true, limit: 100 })), ...(await listRuns(db, { live: false, limit: options.recent ?? 5 }))];
  }
  const workers = await runWorkers(db, runs.map((run) => run.id));
  const statuses = runs.map((run) => describeRun(run, workers.filter((w) => w.run_id === run.id)));
  return {
    active: statuses.filter((s) => LIVE_STATES.includes(s.run.state)),
    recent: statuses.filter((s) => !LIVE_STATES.includes(s.run.state)),
    interruptedNow,
  };
}

function describeRun(run: RunRow, rows: WorkerRow[]): RunStatus {
  const workers = rows.map((w) => ({ ...w, ...(w.live ? describeHealth(w.health, Date.now() - w.heartbeat_at.getTime()) : {}) }));
  const live = workers.filter((w) => w.live);
  const working = live.filter((w) => w.state !== 'paused');
  const sum = (values: (number | null)[]) => (values.some((v) => v !== null) ? values.reduce<number>((total, v) => total + (v ?? 0), 0) : null);
  const rowsPerSecond = LIVE_STATES.includes(run.state) ? sum(working.map((w) => w.recent_rows_per_s)) : null;
  const bytesPerSecond = LIVE_STATES.includes(run.state) ? sum(working.map((w) => w.recent_bytes_per_s)) : null;
  const remainingRows = run.eligible_rows === null ? null : Math.max(0, run.eligible_rows - run.rows_done - run.failed - run.refused);
  const remainingBytes = run.eligible_bytes === null ? null : Math.max(0, run.eligible_bytes - run.bytes_done);
  const paused = run.state === 'paused' || run.state === 'pausing';
  const etaSeconds = !paused && remainingRows !== null ? secondsLeft(remainingRows, rowsPerSecond) : null;
  const waiting: string[] = [];
  if (paused) waiting.push(`${run.state} (${run.state_reason ?? 'paused'})`);
  if (run.state === 'cancelling') waiting.push(`cancelling (${run.state_reason ?? ''}): finishing the batches in flight`);
  for (const w of live) if (w.wait_reason && w.wait_reason !== 'paused') waiting.push(`worker ${w.host}:${w.pid} waits: ${w.wait_reason}`);
  // The bucket's request budget, shared by every process writing to it, is what holds these workers back.
  for (const w of live) if (w.bucketLimited) waiting.push(`worker ${w.host}:${w.pid} is held to the bucket's request budget: ${w.pace}`);
  const silent = live
    .filter((w) => w.lease_silent_s !== null && w.lease_silent_s * 1000 >= LEASE_SILENT_MS)
    .map((w) => `worker ${w.host}:${w.pid} has not renewed its lease for ${Math.round(w.lease_silent_s!)}s (killed, or cut off from the database): its claimed rows are free for a rerun once the lease expires, in ${Math.max(0, Math.ceil(w.lease_expires_in_s ?? 0))}s`);
  const stalled = live
    .filter((w) => w.stalledForMs !== undefined && !(w.lease_silent_s !== null && w.lease_silent_s * 1000 >= LEASE_SILENT_MS))
    .map((w) => `worker ${w.host}:${w.pid} has ${w.health?.activity?.inFlightItems} item(s) in flight and no progress for ${Math.round(w.stalledForMs! / 1000)}s, longer than one request can take (${Math.round((w.health?.activity?.requestBoundMs ?? 0) / 1000)}s); its items fail as stalled when their bound passes`);
  return { run, workers, rate: { rowsPerSecond, bytesPerSecond }, remaining: { rows: remainingRows, bytes: remainingBytes, etaSeconds }, waiting: [...new Set(waiting)], stalled: [...silent, ...stalled] };
}

export type ControlVerb = 'pause' | 'resume' | 'cancel';

const TARGET: Record<ControlVerb, RunState> = { pause: 'pausing', resume: 'running', cancel: 'cancelling' };

export interface ControlResult {
  runId: string;
  from: RunState;
  to: RunState;
  /** The state the run reached while we waited (paused, cancelled, ...), if we waited. */
  settled?: RunState;
}

/**
 * Pause, resume or cancel runs. Each is a compare-and-set on the run's state, refused when the state
 * machine does not allow it (pausing a finished run, resuming a cancelled one); the workers act on it
 * at their next heartbeat, between batches.
 */
export async function controlRuns(
  db: Db,
  verb: ControlVerb,
  target: { runIds?: string[]; all?: boolean },
  actor: string,
  options: { wait?: boolean; timeoutMs?: number; dryRun?: boolean } = {},
): Promise<ControlResult[]> {
  await assertRunTables(db);
  await reconcileWorkers(db);
  let ids = target.runIds ?? [];
  if (target.all) {
    const from = verb === 'resume' ? ['paused', 'pausing'] : verb === 'pause' ? ['running'] : ['running', 'pausing', 'paused'];
    ids = (await listRuns(db, { live: true, limit: 1000 })).filter((run) => from.includes(run.state) && run.pausable).map((run) => run.id);
  }
  if (!ids.length) throw new UsageError(target.all ? `No run to ${verb}.` : `Name a run (see \`overskill-storage status\`) or pass --all.`);
  const results: ControlResult[] = [];
  for (const id of ids) {
    const run = await readRun(db, id);
    if (!run) throw new UsageError(`There is no run ${id}.`);
    if (!run.pausable) throw new UsageError(`Run ${id} (${run.command}) cannot be ${verb === 'pause' ? 'paused' : verb === 'resume' ? 'resumed' : 'cancelled'} from another terminal: only row walks (migrate, finalize, rollback) stop between batches. Ctrl-C in its own terminal stops it cleanly.`);
    const to = TARGET[verb];
    const reason = `${verb === 'pause' ? 'paused' : verb === 'resume' ? 'resumed' : 'cancelled'} by ${actor}`;
    const already = (from: RunState) => (verb === 'pause' && (from === 'paused' || from === 'pausing')) || (verb === 'cancel' && from === 'cancelling') || (verb === 'resume' && from === 'running');
    if (options.dryRun) {
      // What the move would do, checked against the state machine, without making it.
      if (already(run.state)) results.push({ runId: id, from: run.state, to: run.state });
      else if (!canMove(run.state, to)) throw new IllegalRunMoveError(id, run.state, to);
      else results.push({ runId: id, from: run.state, to });
      continue;
    }
    const moved = await moveRun(db, id, to, actor, reason);
    if (!moved) throw new UsageError(`There is no run ${id}.`);
    if (!moved.moved) {
      // Asking twice is not an error: a paused run asked to pause is already where it should be.
      if (already(moved.from)) {
        results.push({ runId: id, from: moved.from, to: moved.from });
        continue;
      }
      throw new IllegalRunMoveError(id, moved.from, to);
    }
    if (verb === 'pause') await settlePause(db, id);
    results.push({ runId: id, from: moved.from, to });
  }
  if (options.wait && !options.dryRun) {
    const goal: RunState[] = verb === 'pause' ? ['paused'] : verb === 'cancel' ? ['cancelled', 'interrupted', 'succeeded', 'failed'] : ['running'];
    const deadline = Date.now() + (options.timeoutMs ?? 120_000);
    for (const result of results) {
      for (;;) {
        await reconcileWorkers(db);
        const state = (await readRun(db, result.runId))?.state;
        if (state && (goal.includes(state) || !LIVE_STATES.includes(state) || Date.now() > deadline)) {
          result.settled = state;
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  }
  return results;
}

/** Changes the pace of live runs; their workers adopt it within a heartbeat, without a restart. */
export async function tuneRuns(db: Db, target: { runIds?: string[]; all?: boolean }, pace: { concurrency?: number; maxRate?: number | null }, options: { dryRun?: boolean } = {}): Promise<{ runId: string; pace: unknown }[]> {
  await assertRunTables(db);
  await reconcileWorkers(db);
  if (pace.concurrency === undefined && pace.maxRate === undefined) throw new UsageError('Nothing to tune: pass --concurrency and/or --max-rate (or --no-max-rate).');
  const live = await listRuns(db, { live: true, limit: 1000 });
  const ids = target.all ? live.filter((run) => run.pausable).map((run) => run.id) : (target.runIds ?? []);
  if (!ids.length) throw new UsageError(target.all ? 'No live run to tune.' : 'Name a run (see `overskill-storage status`) or pass --all.');
  const results = [];
  for (const id of ids) {
    const run = await readRun(db, id);
    if (!run) throw new UsageError(`There is no run ${id}.`);
    if (!LIVE_STATES.includes(run.state)) throw new IllegalRunMoveError(id, run.state, run.state);
    results.push({ runId: id, pace: options.dryRun ? { ...(run.pace ?? {}), ...pace } : await setPace(db, id, pace) });
  }
  return results;
}

/** The rows a run failed or refused, per table, for `migrate --retry-failed RUN`. */
export async function retrySelection(db: Db, runId: string): Promise<{ rowIds: Record<string, string[]>; items: number; command: string }> {
  await assertRunTables(db);
  const run = await readRun(db, runId);
  if (!run) throw new UsageError(`There is no run ${runId}.`);
  if (LIVE_STATES.includes(run.state)) throw new UsageError(`Run ${runId} is still ${run.state}; retry its items once it has ended.`);
  const items = await runItems(db, runId);
  const rowIds: Record<string, string[]> = {};
  for (const item of items) (rowIds[item.table_name] ??= []).push(item.row_id);
  return { rowIds, items: items.length, command: run.command };
}

export interface RunHistory {
  runs: (RunRow & { workers: number })[];
  /** Per run and minute, rows and bytes done by then. */
  progress: ProgressPoint[];
}

/** With `readOnly` (the storage report), runs whose workers vanished are shown as they are, not marked. */
export async function runHistory(db: Db, filter: RunFilter, options: { readOnly?: boolean } = {}): Promise<RunHistory> {
  if (options.readOnly && !(await runTablesPresent(db))) return { runs: [], progress: [] };
  await assertRunTables(db);
  if (!options.readOnly && !(await sessionIsReadOnly(db))) await reconcileWorkers(db);
  const runs = await listRuns(db, filter);
  const workers = await runWorkers(db, runs.map((run) => run.id));
  return {
    runs: runs.map((run) => ({ ...run, workers: workers.filter((w) => w.run_id === run.id).length })),
    progress: await runProgress(db, runs.map((run) => run.id)),
  };
}

export interface RunDetail {
  status: RunStatus;
  items: StoredRunItem[];
  transitions: Awaited<ReturnType<typeof transitionsOf>>;
}

export async function runDetail(db: Db, runId: string, itemLimit = 1000): Promise<RunDetail> {
  const found = await runStatus(db, { runId });
  const status = [...found.active, ...found.recent][0];
  return { status, items: await runItems(db, runId, itemLimit), transitions: await transitionsOf(db, runId) };
}

/** Display names of the SQL tables a run's items belong to. */
export function tableLabel(sqlTable: string): string {
  return Object.values(TABLES).find((table) => table.table === sqlTable)?.name ?? sqlTable;
}
