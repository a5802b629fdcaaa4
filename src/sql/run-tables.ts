/**
 * The tables that record runs (who ran what, how it went) and let another terminal see and steer them.
 * Created by `schema --apply` with the rest of the schema.
 */
export const RUNS_TABLE = 'overskill_storage_runs';
export const RUN_WORKERS_TABLE = 'overskill_storage_run_workers';
export const RUN_ITEMS_TABLE = 'overskill_storage_run_items';
export const RUN_PROGRESS_TABLE = 'overskill_storage_run_progress';
export const RUN_TRANSITIONS_TABLE = 'overskill_storage_run_transitions';

export const RUN_TABLE_DDL: { table: string; purpose: string; sql: string }[] = [
  {
    table: RUNS_TABLE,
    purpose: 'one row per run of a writing command: who, where, arguments (secrets masked), state, counts',
    sql: `CREATE TABLE IF NOT EXISTS ${RUNS_TABLE} (
      id bigserial PRIMARY KEY,
      command text NOT NULL,
      arguments jsonb NOT NULL,
      identity text NOT NULL,
      scope jsonb NOT NULL,
      operator text NOT NULL,
      host text NOT NULL,
      pid integer NOT NULL,
      tool_version text NOT NULL,
      state text NOT NULL DEFAULT 'running',
      state_reason text,
      state_changed_at timestamptz NOT NULL DEFAULT now(),
      pausable boolean NOT NULL DEFAULT true,
      pace jsonb,
      retry_of bigint,
      eligible_rows bigint,
      eligible_bytes bigint,
      rows_done bigint NOT NULL DEFAULT 0,
      bytes_done bigint NOT NULL DEFAULT 0,
      failed bigint NOT NULL DEFAULT 0,
      refused bigint NOT NULL DEFAULT 0,
      error text,
      started_at timestamptz NOT NULL DEFAULT now(),
      ended_at timestamptz,
      CONSTRAINT ${RUNS_TABLE}_state CHECK (state IN ('running', 'pausing', 'paused', 'cancelling', 'cancelled', 'succeeded', 'failed', 'interrupted'))
    )`,
  },
  {
    table: RUN_WORKERS_TABLE,
    purpose: 'one row per worker process of a run, with its heartbeat, pace, wait reason and counts',
    sql: `CREATE TABLE IF NOT EXISTS ${RUN_WORKERS_TABLE} (
      run_id bigint NOT NULL REFERENCES ${RUNS_TABLE} (id) ON DELETE CASCADE,
      worker bigint NOT NULL,
      host text NOT NULL,
      pid integer NOT NULL,
      state text NOT NULL DEFAULT 'running',
      wait_reason text,
      concurrency integer,
      max_rate float8,
      rows_done bigint NOT NULL DEFAULT 0,
      bytes_done bigint NOT NULL DEFAULT 0,
      failed bigint NOT NULL DEFAULT 0,
      refused bigint NOT NULL DEFAULT 0,
      recent_rows_per_s float8,
      recent_bytes_per_s float8,
      started_at timestamptz NOT NULL DEFAULT now(),
      heartbeat_at timestamptz NOT NULL DEFAULT now(),
      ended_at timestamptz,
      PRIMARY KEY (run_id, worker)
    )`,
  },
  {
    table: RUN_ITEMS_TABLE,
    purpose: 'every failed or refused item of a run (table, row, key, error class, message, attempts), for retry by run',
    sql: `CREATE TABLE IF NOT EXISTS ${RUN_ITEMS_TABLE} (
      run_id bigint NOT NULL REFERENCES ${RUNS_TABLE} (id) ON DELETE CASCADE,
      table_name text NOT NULL,
      row_id bigint NOT NULL,
      app_id bigint,
      path text,
      object_key text,
      outcome text NOT NULL,
      error_class text NOT NULL,
      message text NOT NULL,
      attempts integer NOT NULL DEFAULT 1,
      recorded_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (run_id, table_name, row_id)
    )`,
  },
  {
    table: RUN_PROGRESS_TABLE,
    purpose: "each run's progress per minute and worker (rows and bytes done so far), for charts",
    sql: `CREATE TABLE IF NOT EXISTS ${RUN_PROGRESS_TABLE} (
      run_id bigint NOT NULL REFERENCES ${RUNS_TABLE} (id) ON DELETE CASCADE,
      worker bigint NOT NULL,
      minute timestamptz NOT NULL,
      rows_done bigint NOT NULL,
      bytes_done bigint NOT NULL,
      PRIMARY KEY (run_id, worker, minute)
    )`,
  },
  {
    table: RUN_TRANSITIONS_TABLE,
    purpose: 'every state change of a run: when, from, to, by whom and why',
    sql: `CREATE TABLE IF NOT EXISTS ${RUN_TRANSITIONS_TABLE} (
      run_id bigint NOT NULL REFERENCES ${RUNS_TABLE} (id) ON DELETE CASCADE,
      at timestamptz NOT NULL DEFAULT clock_timestamp(),
      from_state text NOT NULL,
      to_state text NOT NULL,
      actor text,
      reason text
    )`,
  },
];
