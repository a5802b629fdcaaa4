import pg from 'pg';
import { query, type Queryable } from '../db.ts';

/*
 * Worker leases: a worker is alive while its lease has not expired. The lease is a row of the tool's own that
 * the worker renews every second, so liveness rests on nothing a connection pooler would have to keep: a
 * session advisory lock sits on whichever server connection ran it behind a pooler in transaction mode, and
 * is neither released by a killed client nor kept for a live one (PgBouncer's "Features": advisory locks are a
 * session feature transaction pooling does not support). Every time is the database's (now()), so the clocks
 * of the hosts running workers never meet.
 */

export const LEASES_TABLE = 'overskill_storage_worker_leases';

export const LEASES_DDL = `CREATE TABLE IF NOT EXISTS ${LEASES_TABLE} (
        worker bigint PRIMARY KEY,
        host text,
        pid integer,
        process_scope text,
        started_at timestamptz NOT NULL DEFAULT now(),
        renewed_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL
      )`;

/** SQL: true while the worker whose id is `workerExpr` holds an unexpired lease (is alive). */
export function sqlWorkerIsLive(workerExpr: string): string {
  return `EXISTS (SELECT 1 FROM ${LEASES_TABLE} l WHERE l.worker = ${workerExpr} AND l.expires_at > now())`;
}

type Runner = Queryable | pg.Client;

async function run<Row>(db: Runner, sql: string, params: unknown[]): Promise<Row[]> {
  if (db instanceof pg.Client) return (await db.query(sql, params)).rows as Row[];
  return query<Row>(db, sql, params);
}

/** Takes a lease for `worker` unless one is held under that id; true when taken. */
export async function takeLease(db: Runner, worker: string, ttlMs: number, owner: { host: string; pid: number; processScope: string | null }): Promise<boolean> {
  const rows = await run<{ worker: string }>(
    db,
    `INSERT INTO ${LEASES_TABLE} AS l (worker, host, pid, process_scope, expires_at) VALUES ($1::bigint, $3, $4, $5, now() + $2::int * interval '1 millisecond')
     ON CONFLICT (worker) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, process_scope = EXCLUDED.process_scope, started_at = now(), renewed_at = now(), expires_at = EXCLUDED.expires_at
      WHERE l.expires_at <= now()
     RETURNING l.worker`,
    [worker, ttlMs, owner.host, owner.pid, owner.processScope],
  );
  return rows.length === 1;
}

/** Unexpired leases taken by processes of one process scope (one machine's boot and PID namespace). */
export async function leasesOfScope(db: Queryable, processScope: string): Promise<{ worker: string; pid: number }[]> {
  return query(db, `SELECT worker, pid FROM ${LEASES_TABLE} WHERE process_scope = $1 AND expires_at > now()`, [processScope]);
}

/** Ends the leases of workers whose processes are known to be gone. */
export async function expireLeases(db: Queryable, workers: string[]): Promise<void> {
  if (workers.length) await query(db, `UPDATE ${LEASES_TABLE} SET expires_at = now() WHERE worker = ANY($1::bigint[]) AND expires_at > now()`, [workers]);
}

/** Extends an unexpired lease; false when it had already expired (another worker may hold its rows now). */
export async function renewLease(db: Runner, worker: string, ttlMs: number): Promise<boolean> {
  const rows = await run<{ worker: string }>(
    db,
    `UPDATE ${LEASES_TABLE} SET renewed_at = now(), expires_at = now() + $2::int * interval '1 millisecond'
      WHERE worker = $1::bigint AND expires_at > now()
     RETURNING worker`,
    [worker, ttlMs],
  );
  return rows.length === 1;
}

/** Ends a lease at once: the worker's claims lapse with it. */
export async function dropLease(db: Runner, worker: string): Promise<void> {
  await run(db, `DELETE FROM ${LEASES_TABLE} WHERE worker = $1::bigint`, [worker]);
}

/** Expired leases are only clutter. */
export async function dropExpiredLeases(db: Queryable): Promise<void> {
  await query(db, `DELETE FROM ${LEASES_TABLE} WHERE expires_at <= now() - interval '1 hour'`);
}
