import { createHash } from 'node:crypto';
import { query, type Queryable } from '../db.ts';
import { RUNS_TABLE, RUN_ITEMS_TABLE } from './run-tables.ts';

/* The failed and refused items of a run, kept for `report --runs --items` and `--retry-failed`. */

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
 * Keeps a batch's failed and refused items, in one statement unless a row repeats. An item met again in the
 * same run counts one more attempt; in a retry run, attempts continue from the run it retries.
 */
export async function recordItems(db: Queryable, runId: string, items: RunItem[]): Promise<void> {
  // ON CONFLICT DO UPDATE cannot touch one row twice in a statement, and one row can fail twice within one
  // flush (a stranded-write repair, then the walk; items the database could not take are flushed with the
  // next batch's): each repeat goes in a later statement, in order, so the last outcome is the one kept and
  // every attempt is counted. Before, such a flush failed, and every later item was kept back with it.
  const rounds: RunItem[][] = [];
  const seen = new Map<string, number>();
  for (const item of items) {
    const key = `${item.table}\u0000${item.rowId}`;
    const round = seen.get(key) ?? 0;
    seen.set(key, round + 1);
    (rounds[round] ??= []).push(item);
  }
  for (const round of rounds) await recordDistinctItems(db, runId, round);
}

async function recordDistinctItems(db: Queryable, runId: string, items: RunItem[]): Promise<void> {
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

/** Objects a run could not delete, or left on purpose, are items too: kept under the pseudo-table `objects`. */
export const OBJECTS_TABLE = 'objects';

/**
 * An item for an object no row owns (cleanup's orphans, a purge's objects): the row id is a stable number
 * drawn from the key, so a key met twice in a run counts one more attempt, as a row does.
 */
export function objectItem(key: string, outcome: RunItem['outcome'], message: string, errorClass = outcome === 'failed' ? 'DeleteFailed' : 'DeleteRefused'): RunItem {
  const rowId = BigInt(`0x${createHash('sha256').update(key).digest('hex').slice(0, 15)}`).toString();
  return { table: OBJECTS_TABLE, rowId, appId: /^apps\/([0-9]+)\//.exec(key)?.[1] ?? null, path: null, key, outcome, errorClass, message };
}
