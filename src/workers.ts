import pg from 'pg';
import { randomInt } from 'node:crypto';

/** First key of the two-int advisory locks that mark a live worker (an arbitrary, fixed number). */
export const WORKER_LOCK_NAMESPACE = 71_746_553;

/** SQL: true while the worker whose id is `workerExpr` holds its lock (is alive). */
export function sqlWorkerIsLive(workerExpr: string): string {
  return `EXISTS (SELECT 1 FROM pg_locks l
                   WHERE l.locktype = 'advisory' AND l.classid = ${WORKER_LOCK_NAMESPACE}::oid AND l.objsubid = 2 AND l.granted
                     AND l.objid::bigint = ${workerExpr})`;
}

export interface WorkerSession {
  /** The worker's id, the second advisory-lock key; claims carry it. */
  id: string;
  close(): Promise<void>;
}

/**
 * Opens the worker's own connection and takes its advisory lock for the whole run. The lock is the worker's
 * heartbeat: it lives exactly as long as the process's session, so claims never outlive a crash.
 */
export async function startWorkerSession(databaseUrl: string, onLost: (error: Error) => void = () => undefined): Promise<WorkerSession> {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: 'overskill-storage worker' });
  await client.connect();
  let closing = false;
  // Losing this session releases the lock, and with it every claim: other workers may take our rows, so
  // the run must stop claiming and uploading at once.
  client.on('error', (error) => {
    if (!closing) onLost(error);
  });
  client.on('end', () => {
    if (!closing) onLost(new Error('the worker session ended'));
  });
  for (let attempt = 0; attempt < 20; attempt++) {
    const id = String(randomInt(1, 2 ** 31 - 1));
    const result = await client.query('SELECT pg_try_advisory_lock($1::int, $2::int) AS locked', [WORKER_LOCK_NAMESPACE, id]);
    if (result.rows[0]?.locked) {
      return {
        id,
        close: async () => {
          closing = true;
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
