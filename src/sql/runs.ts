import { query, type Queryable } from '../db.ts';

/* Runs: their rows, states and pace, and the listings status and report read (workers: run-workers.ts; items: run-items.ts). */
import { sqlWorkerIsLive } from './worker-leases.ts';
import { RUNS_TABLE, RUN_PROGRESS_TABLE, RUN_TRANSITIONS_TABLE, RUN_WORKERS_TABLE } from './run-tables.ts';
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
