import { query, type Queryable } from '../db.ts';

/** A session whose open transaction keeps dead rows from being removed (see openTransactions). */
export interface OpenTransaction {
  pid: number;
  database: string | null;
  user: string | null;
  application: string | null;
  /** When its transaction began (ISO), and how long ago. */
  started: string;
  openSeconds: number;
}

/**
 * The sessions of the whole cluster, any database, whose transaction holds a transaction id or a snapshot:
 * a row deleted after it began is still visible to it, so neither VACUUM FULL nor pg_repack may drop that row
 * until it ends (PostgreSQL's "Recovering Disk Space": a row version "must not be deleted while it is still
 * potentially visible to other transactions"), and a transaction of another database holds them back too
 * (test/reclaim.test.ts). Autovacuum workers and this session are left out. A role
 * without pg_read_all_stats sees other roles' sessions without these columns, so they are not listed.
 */
export async function openTransactions(db: Queryable): Promise<OpenTransaction[]> {
  return query<OpenTransaction>(
    db,
    `SELECT pid, datname AS database, usename AS user, nullif(application_name, '') AS application,
            to_char(xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS started,
            extract(epoch FROM now() - xact_start)::float8 AS "openSeconds"
       FROM pg_stat_activity
      WHERE pid <> pg_backend_pid() AND xact_start IS NOT NULL AND backend_type <> 'autovacuum worker'
        AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)
      ORDER BY xact_start`,
  );
}
