import { query, type Queryable } from '../db.ts';
import { LEASES_TABLE, sqlWorkerIsLive } from './worker-leases.ts';
import { RUNS_TABLE, RUN_PROGRESS_TABLE, RUN_WORKERS_TABLE } from './run-tables.ts';
import { LIVE_STATES, type RunState } from '../runs/states.ts';
import { moveRun, readRun, type RunPace } from './runs.ts';
import type { WorkerHealth } from '../runs/worker-health.ts';

/* A run's workers: each one's row, its heartbeat and end, and how vanished workers are found. */

export interface NewWorker {
  worker: string;
  host: string;
  pid: number;
  concurrency?: number;
  maxRate?: number;
}

export async function insertWorker(db: Queryable, runId: string, worker: NewWorker): Promise<void> {
  await query(
    db,
    `INSERT INTO ${RUN_WORKERS_TABLE} (run_id, worker, host, pid, concurrency, max_rate) VALUES ($1::bigint, $2::bigint, $3, $4, $5, $6)`,
    [runId, worker.worker, worker.host, worker.pid, worker.concurrency ?? null, worker.maxRate ?? null],
  );
}

/** What a worker reports each heartbeat. */
export interface WorkerBeat {
  state: 'running' | 'paused' | 'waiting';
  waitReason: string | null;
  rowsDone: number;
  bytesDone: number;
  failed: number;
  refused: number;
  recentRowsPerSecond: number | null;
  recentBytesPerSecond: number | null;
  concurrency: number;
  maxRate: number | null;
  /** Items in flight, last progress, and the HTTP pool (src/runs/worker-health.ts). */
  health: WorkerHealth | null;
}

/**
 * One statement per heartbeat: the worker's row, its progress for this minute, and the run's state and pace
 * read back (how pause, cancel and tune reach a running worker).
 */
export async function heartbeat(db: Queryable, runId: string, worker: string, beat: WorkerBeat): Promise<{ state: RunState; pace: RunPace | null; stateReason: string | null } | undefined> {
  const rows = await query<{ state: RunState; pace: RunPace | null; state_reason: string | null }>(
    db,
    `WITH beat AS (
       UPDATE ${RUN_WORKERS_TABLE}
          SET heartbeat_at = now(), state = $3, wait_reason = $4, rows_done = $5, bytes_done = $6, failed = $7, refused = $8,
              recent_rows_per_s = $9, recent_bytes_per_s = $10, concurrency = $11, max_rate = $12, health = $13::jsonb
        WHERE run_id = $1::bigint AND worker = $2::bigint AND ended_at IS NULL
       RETURNING run_id),
     minute AS (
       INSERT INTO ${RUN_PROGRESS_TABLE} (run_id, worker, minute, rows_done, bytes_done)
       SELECT $1::bigint, $2::bigint, date_trunc('minute', now()), $5, $6 FROM beat
       ON CONFLICT (run_id, worker, minute) DO UPDATE SET rows_done = EXCLUDED.rows_done, bytes_done = EXCLUDED.bytes_done)
     SELECT state, pace, state_reason FROM ${RUNS_TABLE} WHERE id = $1::bigint`,
    [
      runId,
      worker,
      beat.state,
      beat.waitReason,
      beat.rowsDone,
      beat.bytesDone,
      beat.failed,
      beat.refused,
      beat.recentRowsPerSecond,
      beat.recentBytesPerSecond,
      beat.concurrency,
      beat.maxRate,
      beat.health === null ? null : JSON.stringify(beat.health),
    ],
  );
  return rows[0] ? { state: rows[0].state, pace: rows[0].pace, stateReason: rows[0].state_reason } : undefined;
}

/** A pausing run whose every live worker has stopped claiming becomes paused. */
export async function settlePause(db: Queryable, runId: string): Promise<boolean> {
  const [{ ready }] = await query<{ ready: boolean }>(
    db,
    `SELECT NOT EXISTS (
       SELECT 1 FROM ${RUN_WORKERS_TABLE} w
        WHERE w.run_id = $1::bigint AND w.ended_at IS NULL AND w.state <> 'paused' AND ${sqlWorkerIsLive('w.worker')}) AS ready`,
    [runId],
  );
  if (!ready) return false;
  // The run keeps saying who paused it; the log says when the workers got there.
  return (await moveRun(db, runId, 'paused', 'workers', 'every worker finished its batches in flight and holds no claim', { keepReason: true }))?.moved ?? false;
}

export interface WorkerEnd {
  state: 'done' | 'failed' | 'interrupted' | 'cancelled';
  error?: string;
  beat: WorkerBeat;
}

/**
 * Ends a worker's row; if it was the run's last live worker, ends the run too: cancelled if a cancel was
 * asked for, interrupted if this worker was stopped by a signal, failed if any item failed or a worker
 * failed, else succeeded (refused items are counted and named in the reason).
 */
export async function endWorker(db: Queryable, runId: string, worker: string, end: WorkerEnd): Promise<RunState | undefined> {
  await heartbeat(db, runId, worker, end.beat);
  await query(
    db,
    `UPDATE ${RUN_WORKERS_TABLE} SET state = $3, ended_at = now(), wait_reason = NULL WHERE run_id = $1::bigint AND worker = $2::bigint`,
    [runId, worker, end.state],
  );
  if (end.error) await query(db, `UPDATE ${RUNS_TABLE} SET error = coalesce(error || E'\\n', '') || $2 WHERE id = $1::bigint`, [runId, end.error]);
  const [others] = await query<{ live: number }>(
    db,
    `SELECT count(*)::int AS live FROM ${RUN_WORKERS_TABLE} w
      WHERE w.run_id = $1::bigint AND w.worker <> $2::bigint AND w.ended_at IS NULL AND ${sqlWorkerIsLive('w.worker')}`,
    [runId, worker],
  );
  const run = await readRun(db, runId);
  if (!run || others.live > 0) return run?.state;
  let final: RunState;
  let reason: string;
  const anyWorkerFailed = await query<{ n: number }>(db, `SELECT count(*)::int AS n FROM ${RUN_WORKERS_TABLE} WHERE run_id = $1::bigint AND state = 'failed'`, [runId]);
  if (run.state === 'cancelling') [final, reason] = ['cancelled', 'cancelled; every worker finished its batches in flight'];
  else if (end.state === 'interrupted') [final, reason] = ['interrupted', 'stopped by a signal after its batches in flight'];
  else if (anyWorkerFailed[0].n > 0 || end.state === 'failed') [final, reason] = ['failed', run.error ?? 'a worker failed'];
  else if (run.failed > 0) [final, reason] = ['failed', `${run.failed} item${run.failed === 1 ? '' : 's'} failed${run.refused ? ` and ${run.refused} ${run.refused === 1 ? 'was' : 'were'} refused` : ''}; see \`report --items ${runId}\``];
  // A refusal is the tool declining on purpose (an object it did not write): the run still did its work.
  else [final, reason] = ['succeeded', run.refused ? `finished; ${run.refused} item${run.refused === 1 ? '' : 's'} refused on purpose (see \`report --items ${runId}\`)` : 'finished'];
  if (run.state === 'paused' && final !== 'interrupted' && final !== 'cancelled') final = 'interrupted';
  const moved = await moveRun(db, runId, final, 'workers', reason);
  await query(
    db,
    `UPDATE ${RUNS_TABLE} SET rows_done = $2, bytes_done = $3, failed = $4, refused = $5 WHERE id = $1::bigint`,
    [runId, run.rows_done, run.bytes_done, run.failed, run.refused],
  );
  return moved?.moved ? final : run.state;
}

/**
 * Runs whose workers are gone. A worker is alive exactly while its lease has not expired (worker-leases.ts:
 * the database's clock, never the hosts'), so a worker row without a live lease and without an end was killed
 * or cut off: it is marked interrupted, and so is a live run with no live worker left. A worker that has
 * written its end still holds its lease while it settles the run's final state, so that moment is not
 * mistaken for a vanished run.
 */
export async function reconcileRuns(db: Queryable): Promise<string[]> {
  await query(
    db,
    `UPDATE ${RUN_WORKERS_TABLE} w SET state = 'interrupted', ended_at = now(), wait_reason = 'its process vanished or was cut off: its lease expired'
      WHERE w.ended_at IS NULL AND NOT ${sqlWorkerIsLive('w.worker')}`,
  );
  const orphans = await query<{ id: string }>(
    db,
    `SELECT r.id FROM ${RUNS_TABLE} r
      WHERE r.state = ANY($1::text[])
        AND NOT EXISTS (SELECT 1 FROM ${RUN_WORKERS_TABLE} w WHERE w.run_id = r.id AND (w.ended_at IS NULL OR ${sqlWorkerIsLive('w.worker')}))`,
    [LIVE_STATES],
  );
  const interrupted: string[] = [];
  for (const { id } of orphans) {
    const moved = await moveRun(db, id, 'interrupted', 'overskill-storage', 'every worker vanished (killed, or cut off from the database): their leases expired, and their claims with them');
    if (moved?.moved) interrupted.push(id);
  }
  for (const run of await query<{ id: string }>(db, `SELECT id FROM ${RUNS_TABLE} WHERE state = 'pausing'`)) await settlePause(db, run.id);
  return interrupted;
}

export interface WorkerRow {
  run_id: string;
  worker: string;
  host: string;
  pid: number;
  state: string;
  wait_reason: string | null;
  concurrency: number | null;
  max_rate: number | null;
  rows_done: number;
  bytes_done: number;
  failed: number;
  refused: number;
  recent_rows_per_s: number | null;
  recent_bytes_per_s: number | null;
  health: WorkerHealth | null;
  started_at: Date;
  heartbeat_at: Date;
  ended_at: Date | null;
  live: boolean;
  /** Seconds since the worker last renewed its lease, and until the lease expires (null once it has). */
  lease_silent_s: number | null;
  lease_expires_in_s: number | null;
}

export async function runWorkers(db: Queryable, runIds: string[]): Promise<WorkerRow[]> {
  if (!runIds.length) return [];
  return query<WorkerRow>(
    db,
    `SELECT w.run_id, w.worker, w.host, w.pid, w.state, w.wait_reason, w.concurrency, w.max_rate, w.rows_done::float8 AS rows_done,
            w.bytes_done::float8 AS bytes_done, w.failed::float8 AS failed, w.refused::float8 AS refused, w.recent_rows_per_s,
            w.recent_bytes_per_s, w.health, w.started_at, w.heartbeat_at, w.ended_at, (w.ended_at IS NULL AND ${sqlWorkerIsLive('w.worker')}) AS live,
            CASE WHEN l.expires_at > now() THEN extract(epoch FROM now() - l.renewed_at)::float8 END AS lease_silent_s,
            CASE WHEN l.expires_at > now() THEN extract(epoch FROM l.expires_at - now())::float8 END AS lease_expires_in_s
       FROM ${RUN_WORKERS_TABLE} w LEFT JOIN ${LEASES_TABLE} l ON l.worker = w.worker
      WHERE w.run_id = ANY($1::bigint[]) ORDER BY w.run_id, w.started_at, w.worker`,
    [runIds],
  );
}

/** A run's workers with unexpired leases, how many of them stopped renewing, and when the last lease expires. */
export async function silentWorkersOf(db: Queryable, runId: string, silentMs: number): Promise<{ live: number; silent: number; expiresInMs: number }> {
  const [row] = await query<{ live: number; silent: number; expiresInMs: number | null }>(
    db,
    `SELECT count(*)::int AS live,
            count(*) FILTER (WHERE l.renewed_at < now() - $2::int * interval '1 millisecond')::int AS silent,
            ceil(extract(epoch FROM max(l.expires_at) - now()) * 1000)::float8 AS "expiresInMs"
       FROM ${RUN_WORKERS_TABLE} w JOIN ${LEASES_TABLE} l ON l.worker = w.worker
      WHERE w.run_id = $1::bigint AND w.ended_at IS NULL AND l.expires_at > now()`,
    [runId, silentMs],
  );
  return { live: row?.live ?? 0, silent: row?.silent ?? 0, expiresInMs: row?.expiresInMs ?? 0 };
}
