import { query, type Queryable } from '../db.ts';
import { sqlWorkerIsLive } from '../workers.ts';
import { RUNS_TABLE, RUN_ITEMS_TABLE, RUN_PROGRESS_TABLE, RUN_TRANSITIONS_TABLE, RUN_WORKERS_TABLE } from './run-tables.ts';
import { FINAL_STATES, LIVE_STATES, statesAllowing, type RunState } from '../runs/states.ts';

/** A run row as the other statements and `status` read it; counts are summed over its workers. */
export interface RunRow {
  id: string;
  command: string;
  arguments: string[];
  identity: string;
  scope: Record<string, unknown>;
  operator: string;
  host: string;
  pid: number;
  tool_version: string;
  state: RunState;
  state_reason: string | null;
  state_changed_at: Date;
  pausable: boolean;
  pace: RunPace | null;
  retry_of: string | null;
  eligible_rows: number | null;
  eligible_bytes: number | null;
  rows_done: number;
  bytes_done: number;
  failed: number;
  refused: number;
  error: string | null;
  started_at: Date;
  ended_at: Date | null;
  live_workers: number;
}

/** The pace an operator set on a live run with `tune` (each worker adopts it); `version` counts the changes. */
export interface RunPace {
  concurrency?: number;
  maxRate?: number | null;
  version: number;
}

const RUN_COLUMNS = `r.id, r.command, r.arguments, r.identity, r.scope, r.operator, r.host, r.pid, r.tool_version, r.state, r.state_reason,
  r.state_changed_at, r.pausable, r.pace, r.retry_of, r.eligible_rows::float8 AS eligible_rows, r.eligible_bytes::float8 AS eligible_bytes,
  coalesce((SELECT sum(w.rows_done) FROM ${RUN_WORKERS_TABLE} w WHERE w.run_id = r.id), 0)::float8 AS rows_done,
  coalesce((SELECT sum(w.bytes_done) FROM ${RUN_WORKERS_TABLE} w WHERE w.run_id = r.id), 0)::float8 AS bytes_done,
  coalesce((SELECT sum(w.failed) FROM ${RUN_WORKERS_TABLE} w WHERE w.run_id = r.id), 0)::float8 AS failed,
  coalesce((SELECT sum(w.refused) FROM ${RUN_WORKERS_TABLE} w WHERE w.run_id = r.id), 0)::float8 AS refused,
  r.error, r.started_at, r.ended_at,
  (SELECT count(*) FROM ${RUN_WORKERS_TABLE} w WHERE w.run_id = r.id AND w.ended_at IS NULL AND ${sqlWorkerIsLive('w.worker')})::int AS live_workers`;

/** Serializes the start of runs, so two processes never both decide they are first (or both miss a conflict). */
const RUN_START_LOCK = 71_746_554;

export interface NewRun {
  command: string;
  arguments: string[];
  identity: string;
  scope: Record<string, unknown>;
  operator: string;
  host: string;
  pid: number;
  toolVersion: string;
  pausable: boolean;
  retryOf?: string;
  eligibleRows?: number;
  eligibleBytes?: number;
  /** What the store was proven to honour before the first object write (src/ops/store-gate.ts). */
  storeCheck?: Record<string, unknown>;
}

export interface NewWorker {
  worker: string;
  host: string;
  pid: number;
  concurrency?: number;
  maxRate?: number;
}

export async function lockRunStarts(trx: Queryable): Promise<void> {
  await query(trx, 'SELECT pg_advisory_xact_lock($1::int, 0)', [RUN_START_LOCK]);
}

export async function liveRuns(db: Queryable): Promise<RunRow[]> {
  return query<RunRow>(db, `SELECT ${RUN_COLUMNS} FROM ${RUNS_TABLE} r WHERE r.state = ANY($1::text[]) ORDER BY r.id`, [LIVE_STATES]);
}

export async function insertRun(db: Queryable, run: NewRun): Promise<string> {
  const [{ id }] = await query<{ id: string }>(
    db,
    `WITH added AS (
       INSERT INTO ${RUNS_TABLE} (command, arguments, identity, scope, operator, host, pid, tool_version, pausable, retry_of, eligible_rows, eligible_bytes, store_check)
       VALUES ($1, $2::jsonb, $3, $4::jsonb, $5, $6, $7, $8, $9, $10::bigint, $11::bigint, $12::bigint, $13::jsonb)
       RETURNING id)
     , logged AS (INSERT INTO ${RUN_TRANSITIONS_TABLE} (run_id, from_state, to_state, actor, reason) SELECT id, 'new', 'running', $5, 'started' FROM added)
     SELECT id FROM added`,
    [
      run.command,
      JSON.stringify(run.arguments),
      run.identity,
      JSON.stringify(run.scope),
      run.operator,
      run.host,
      run.pid,
      run.toolVersion,
      run.pausable,
      run.retryOf ?? null,
      run.eligibleRows === undefined ? null : Math.round(run.eligibleRows),
      run.eligibleBytes === undefined ? null : Math.round(run.eligibleBytes),
      run.storeCheck ? JSON.stringify(run.storeCheck) : null,
    ],
  );
  return id;
}

export async function insertWorker(db: Queryable, runId: string, worker: NewWorker): Promise<void> {
  await query(
    db,
    `INSERT INTO ${RUN_WORKERS_TABLE} (run_id, worker, host, pid, concurrency, max_rate) VALUES ($1::bigint, $2::bigint, $3, $4, $5, $6)`,
    [runId, worker.worker, worker.host, worker.pid, worker.concurrency ?? null, worker.maxRate ?? null],
  );
}

export async function readRun(db: Queryable, runId: string): Promise<RunRow | undefined> {
  const rows = await query<RunRow>(db, `SELECT ${RUN_COLUMNS} FROM ${RUNS_TABLE} r WHERE r.id = $1::bigint`, [runId]);
  return rows[0];
}

/**
 * Moves a run to `to` if the state machine allows it from the state the run is in (compare-and-set in one
 * statement), and logs the move. Returns the state it was in, and whether it moved; undefined: no such run.
 */
export async function moveRun(
  db: Queryable,
  runId: string,
  to: RunState,
  actor: string,
  reason: string | null,
  options: { keepReason?: boolean } = {},
): Promise<{ from: RunState; moved: boolean } | undefined> {
  const rows = await query<{ from_state: RunState; moved: boolean }>(
    db,
    `WITH old AS (SELECT id, state FROM ${RUNS_TABLE} WHERE id = $1::bigint FOR UPDATE),
     moved AS (
       UPDATE ${RUNS_TABLE} r
          SET state = $2, state_reason = CASE WHEN $7 THEN r.state_reason ELSE $4 END, state_changed_at = now(),
              ended_at = CASE WHEN $2 = ANY($5::text[]) THEN coalesce(r.ended_at, now()) ELSE r.ended_at END
         FROM old
        WHERE r.id = old.id AND old.state = ANY($6::text[])
       RETURNING r.id),
     logged AS (
       INSERT INTO ${RUN_TRANSITIONS_TABLE} (run_id, from_state, to_state, actor, reason)
       SELECT old.id, old.state, $2, $3, $4 FROM old JOIN moved ON moved.id = old.id)
     SELECT old.state AS from_state, EXISTS (SELECT 1 FROM moved) AS moved FROM old`,
    [runId, to, actor, reason, FINAL_STATES, statesAllowing(to), options.keepReason ?? false],
  );
  return rows[0] ? { from: rows[0].from_state, moved: rows[0].moved } : undefined;
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
              recent_rows_per_s = $9, recent_bytes_per_s = $10, concurrency = $11, max_rate = $12
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
  else if (run.failed > 0) [final, reason] = ['failed', `${run.failed} item(s) failed${run.refused ? ` and ${run.refused} were refused` : ''}; see \`report --items ${runId}\``];
  // A refusal is the tool declining on purpose (an object it did not write): the run still did its work.
  else [final, reason] = ['succeeded', run.refused ? `finished; ${run.refused} item(s) refused on purpose (see \`report --items ${runId}\`)` : 'finished'];
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
 * Runs whose workers are gone. A worker is alive exactly while its session holds its advisory lock, so a
 * worker row without a live lock and without an end was killed or lost its connection: it is marked
 * interrupted, and so is a live run with no live worker left. Never guessed from clocks. A worker that has
 * written its end still holds its lock while it settles the run's final state, so that moment is not
 * mistaken for a vanished run.
 */
export async function reconcileRuns(db: Queryable): Promise<string[]> {
  await query(
    db,
    `UPDATE ${RUN_WORKERS_TABLE} w SET state = 'interrupted', ended_at = now(), wait_reason = 'its process or database session vanished'
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
    const moved = await moveRun(db, id, 'interrupted', 'overskill-storage', 'every worker vanished (killed, or lost its database session); their claims lapsed');
    if (moved?.moved) interrupted.push(id);
  }
  for (const run of await query<{ id: string }>(db, `SELECT id FROM ${RUNS_TABLE} WHERE state = 'pausing'`)) await settlePause(db, run.id);
  return interrupted;
}

export async function setPace(db: Queryable, runId: string, pace: { concurrency?: number; maxRate?: number | null }): Promise<RunPace | undefined> {
  const rows = await query<{ pace: RunPace }>(
    db,
    `UPDATE ${RUNS_TABLE}
        SET pace = coalesce(pace, '{}'::jsonb) || $2::jsonb || jsonb_build_object('version', coalesce((pace ->> 'version')::int, 0) + 1)
      WHERE id = $1::bigint
      RETURNING pace`,
    [runId, JSON.stringify(Object.fromEntries(Object.entries(pace).filter(([, value]) => value !== undefined)))],
  );
  return rows[0]?.pace;
}

/** One failed or refused item, as kept per run. */
export interface RunItem {
  table: string;
  rowId: string;
  appId: string | null;
  path: string | null;
  key: string | null;
  outcome: 'failed' | 'refused';
  errorClass: string;
  message: string;
}

/**
 * Keeps a batch's failed and refused items in one statement. An item met again in the same run counts one
 * more attempt; in a retry run, attempts continue from the run it retries.
 */
export async function recordItems(db: Queryable, runId: string, items: RunItem[]): Promise<void> {
  if (!items.length) return;
  await query(
    db,
    `INSERT INTO ${RUN_ITEMS_TABLE} AS i (run_id, table_name, row_id, app_id, path, object_key, outcome, error_class, message, attempts)
     SELECT $1::bigint, u.table_name, u.row_id, u.app_id, u.path, u.object_key, u.outcome, u.error_class, u.message,
            1 + coalesce((SELECT p.attempts FROM ${RUN_ITEMS_TABLE} p JOIN ${RUNS_TABLE} r ON r.retry_of = p.run_id
                           WHERE r.id = $1::bigint AND p.table_name = u.table_name AND p.row_id = u.row_id), 0)
       FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
            AS u (table_name, row_id, app_id, path, object_key, outcome, error_class, message)
     ON CONFLICT (run_id, table_name, row_id) DO UPDATE
        SET attempts = i.attempts + 1, outcome = EXCLUDED.outcome, error_class = EXCLUDED.error_class, message = EXCLUDED.message,
            object_key = coalesce(EXCLUDED.object_key, i.object_key), recorded_at = now()`,
    [
      runId,
      items.map((item) => item.table),
      items.map((item) => item.rowId),
      items.map((item) => item.appId),
      items.map((item) => item.path),
      items.map((item) => item.key),
      items.map((item) => item.outcome),
      items.map((item) => item.errorClass),
      items.map((item) => item.message),
    ],
  );
}

export interface StoredRunItem {
  table_name: string;
  row_id: string;
  app_id: string | null;
  path: string | null;
  object_key: string | null;
  outcome: 'failed' | 'refused';
  error_class: string;
  message: string;
  attempts: number;
  recorded_at: Date;
}

export async function runItems(db: Queryable, runId: string, limit?: number): Promise<StoredRunItem[]> {
  return query<StoredRunItem>(
    db,
    `SELECT table_name, row_id, app_id, path, object_key, outcome, error_class, message, attempts, recorded_at
       FROM ${RUN_ITEMS_TABLE} WHERE run_id = $1::bigint ORDER BY table_name, row_id ${limit ? `LIMIT ${Math.floor(limit)}` : ''}`,
    [runId],
  );
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
  started_at: Date;
  heartbeat_at: Date;
  ended_at: Date | null;
  live: boolean;
}

export async function runWorkers(db: Queryable, runIds: string[]): Promise<WorkerRow[]> {
  if (!runIds.length) return [];
  return query<WorkerRow>(
    db,
    `SELECT w.run_id, w.worker, w.host, w.pid, w.state, w.wait_reason, w.concurrency, w.max_rate, w.rows_done::float8 AS rows_done,
            w.bytes_done::float8 AS bytes_done, w.failed::float8 AS failed, w.refused::float8 AS refused, w.recent_rows_per_s,
            w.recent_bytes_per_s, w.started_at, w.heartbeat_at, w.ended_at, (w.ended_at IS NULL AND ${sqlWorkerIsLive('w.worker')}) AS live
       FROM ${RUN_WORKERS_TABLE} w WHERE w.run_id = ANY($1::bigint[]) ORDER BY w.run_id, w.started_at, w.worker`,
    [runIds],
  );
}

export interface RunFilter {
  command?: string;
  state?: RunState;
  since?: Date;
  limit: number;
}

/** Runs, newest first: live ones and the last finished ones (`status`), or the history (`report --runs`). */
export async function listRuns(db: Queryable, filter: RunFilter & { live?: boolean }): Promise<RunRow[]> {
  const conditions: string[] = [];
  const values: unknown[] = [];
  const add = (value: unknown) => {
    values.push(value);
    return `$${values.length}`;
  };
  if (filter.command) conditions.push(`r.command = ${add(filter.command)}`);
  if (filter.state) conditions.push(`r.state = ${add(filter.state)}`);
  if (filter.since) conditions.push(`r.started_at >= ${add(filter.since)}::timestamptz`);
  if (filter.live !== undefined) conditions.push(`${filter.live ? '' : 'NOT '}(r.state = ANY(${add(LIVE_STATES)}::text[]))`);
  return query<RunRow>(
    db,
    `SELECT ${RUN_COLUMNS} FROM ${RUNS_TABLE} r ${conditions.length ? `WHERE ${conditions.join(' AND ')}` : ''} ORDER BY r.id DESC LIMIT ${Math.floor(filter.limit)}`,
    values,
  );
}

export interface ProgressPoint {
  run_id: string;
  minute: Date;
  rows_done: number;
  bytes_done: number;
}

/** Per run and minute, rows and bytes done by then (the workers' counts summed). */
export async function runProgress(db: Queryable, runIds: string[]): Promise<ProgressPoint[]> {
  if (!runIds.length) return [];
  return query<ProgressPoint>(
    db,
    `SELECT run_id, minute, sum(rows_done)::float8 AS rows_done, sum(bytes_done)::float8 AS bytes_done
       FROM (SELECT p.run_id, m.minute, w.worker,
                    (SELECT q.rows_done FROM ${RUN_PROGRESS_TABLE} q WHERE q.run_id = p.run_id AND q.worker = w.worker AND q.minute <= m.minute ORDER BY q.minute DESC LIMIT 1) AS rows_done,
                    (SELECT q.bytes_done FROM ${RUN_PROGRESS_TABLE} q WHERE q.run_id = p.run_id AND q.worker = w.worker AND q.minute <= m.minute ORDER BY q.minute DESC LIMIT 1) AS bytes_done
               FROM (SELECT DISTINCT run_id FROM ${RUN_PROGRESS_TABLE} WHERE run_id = ANY($1::bigint[])) p
               JOIN LATERAL (SELECT DISTINCT minute FROM ${RUN_PROGRESS_TABLE} WHERE run_id = p.run_id) m ON true
               JOIN LATERAL (SELECT DISTINCT worker FROM ${RUN_PROGRESS_TABLE} WHERE run_id = p.run_id) w ON true) per_worker
      GROUP BY run_id, minute ORDER BY run_id, minute`,
    [runIds],
  );
}

export async function transitionsOf(db: Queryable, runId: string): Promise<{ at: Date; from_state: string; to_state: string; actor: string | null; reason: string | null }[]> {
  return query(db, `SELECT at, from_state, to_state, actor, reason FROM ${RUN_TRANSITIONS_TABLE} WHERE run_id = $1::bigint ORDER BY at`, [runId]);
}
