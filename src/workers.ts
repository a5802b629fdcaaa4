import pg from 'pg';
import { randomInt } from 'node:crypto';

/** First key of the two-int advisory locks that mark a live worker (an arbitrary, fixed number). */
export const WORKER_LOCK_NAMESPACE = 71_746_553;

export interface WorkerSession {
  /** The worker's id, the second advisory-lock key; claims carry it. */
  id: string;
  close(): Promise<void>;
}

/**
 * Opens the worker's own connection and takes its advisory lock for the whole run. The lock is the worker's
 * heartbeat: it lives exactly as long as the process's session, so claims never outlive a crash.
 */
export async function startWorkerSession(databaseUrl: string): Promise<WorkerSession> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'overskill-storage worker' });
  await client.connect();
  client.on('error', () => {
    // The session's end is noticed by the next claim (its lock is gone); nothing to do here.
  });
  for (let attempt = 0; attempt < 20; attempt++) {
    const id = String(randomInt(1, 2 ** 31 - 1));
    const result = await client.query('SELECT pg_try_advisory_lock($1::int, $2::int) AS locked', [WORKER_LOCK_NAMESPACE, id]);
    if (result.rows[0]?.locked) {
      return {
        id,
        close: async () => {
          try {
            await client.query('SELECT pg_advisory_unlock($1::int, $2::int)', [WORKER_LOCK_NAMESPACE, id]);
          } finally {
            await client.end().catch(() => undefined);
          }
        },
      };
    }
  }
  await client.end();
  throw new Error('could not take a worker lock');
}
