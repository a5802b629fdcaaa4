import pg from 'pg';
import { randomInt } from 'node:crypto';
import { hostname } from 'node:os';
import { query, type Db, type Queryable } from './db.ts';
import { reconcileRuns } from './sql/run-workers.ts';
import { errorMessage } from './errors.ts';
import { readFileSync, readlinkSync } from 'node:fs';
import { dropLease, expireLeases, leasesOfScope, renewLease, takeLease } from './sql/worker-leases.ts';


/** How long a lease lasts unrenewed: a killed worker's rows are free again at most this long after its death. */
export const LEASE_TTL_MS = 15_000;
/** How often a live worker renews its lease. */
export const LEASE_RENEW_MS = 1_000;
/**
 * A worker that has not renewed its lease for this long stops using its claims (stops claiming, and flips
 * nothing more), so it stops well before the lease can expire and another worker take its rows.
 */
export const LEASE_OWN_DEADLINE_MS = LEASE_TTL_MS - 3_000;
/** A lease not renewed for this long belongs to a worker that is gone or stalled (status, and a rerun's wait). */
export const LEASE_SILENT_MS = 3 * LEASE_RENEW_MS;

export interface WorkerSession {
  /** The worker's id; claims carry it. */
  id: string;
  /** True while this worker may still act on its claims (its lease surely has not expired). */
  holds(): boolean;
  close(): Promise<void>;
}

/**
 * Takes the worker's lease and renews it every second, on a connection of its own (a pool busy with the
 * run's statements must not delay a renewal). Renewals are measured from when each was sent, so the
 * worker's own deadline falls before the lease's expiry in the database, whatever the round trip took. A
 * renewal that finds the lease expired, or no renewal for LEASE_OWN_DEADLINE_MS (the database was restarted,
 * the network cut), calls `onLost` once: the run must stop claiming and flipping at once. A lost connection
 * is opened again at the next renewal.
 */
export async function startWorkerSession(db: Db, databaseUrl: string, onLost: (error: Error) => void = () => undefined): Promise<WorkerSession> {
  let id: string | undefined;
  for (let attempt = 0; attempt < 20 && !id; attempt++) {
    const candidate = String(randomInt(1, 2 ** 31 - 1));
    if (await takeLease(db, candidate, LEASE_TTL_MS, { host: hostname(), pid: process.pid, processScope: PROCESS_SCOPE })) id = candidate;
  }
  if (!id) throw new Error('could not take a worker lease');
  const worker = id;
  // The embedded server (the demo's PGlite) serves one connection at a time: its renewals share the pool.
  const [{ version }] = await query<{ version: string }>(db, 'SELECT version() AS version');
  const embedded = /PGlite/.test(version);
  let renewedFrom = Date.now();
  let lost: Error | undefined;
  let closing = false;
  let lastError = '';
  let client: pg.Client | undefined;
  let renewing: Promise<void> | undefined;

  const lose = (error: Error) => {
    if (lost || closing) return;
    lost = error;
    onLost(error);
  };
  const connect = async (): Promise<pg.Client> => {
    const fresh = new pg.Client({ connectionString: databaseUrl, application_name: 'overskill-storage worker', connectionTimeoutMillis: 5_000 });
    // A broken connection is dropped and opened again at the next renewal; only the deadline ends the worker.
    fresh.on('error', () => {
      if (client === fresh) client = undefined;
    });
    await fresh.connect();
    return fresh;
  };
  const renew = async () => {
    const sentAt = Date.now();
    try {
      if (!embedded) client ??= await connect();
      if (await renewLease(client ?? db, worker, LEASE_TTL_MS)) {
        renewedFrom = sentAt;
        lastError = '';
      } else {
        lose(new Error("this worker's lease expired before it could be renewed, so another worker may have taken its rows"));
      }
    } catch (error) {
      lastError = errorMessage(error);
      const broken = client;
      client = undefined;
      await broken?.end().catch(() => undefined);
    }
  };
  const timer = setInterval(() => {
    if (closing || lost) return;
    if (Date.now() - renewedFrom >= LEASE_OWN_DEADLINE_MS) {
      lose(new Error(`its lease could not be renewed for ${Math.round((Date.now() - renewedFrom) / 1000)} s${lastError ? ` (${lastError})` : ''}`));
      return;
    }
    renewing ??= renew().finally(() => {
      renewing = undefined;
    });
  }, LEASE_RENEW_MS);
  timer.unref();

  return {
    id: worker,
    holds: () => !lost && Date.now() - renewedFrom < LEASE_OWN_DEADLINE_MS,
    close: async () => {
      closing = true;
      clearInterval(timer);
      await renewing;
      try {
        // Ending the lease frees the worker's claims at once (the flips released them already, normally).
        if (!lost) await dropLease(db, worker);
      } finally {
        await client?.end().catch(() => undefined);
      }
    },
  };
}

/**
 * Where a process id means one process: this machine's boot and PID namespace (Linux's boot_id and
 * /proc/self/ns/pid). Two containers may share a host name, never both of these. Null where they cannot be read.
 */
const PROCESS_SCOPE = (() => {
  try {
    return `${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()} ${readlinkSync('/proc/self/ns/pid')}`;
  } catch {
    return null;
  }
})();

/**
 * A worker killed on this machine (its process id names no process here) need not be waited out: its lease
 * is ended at once, and with it its claims. Workers elsewhere are judged by their leases alone.
 */
export async function expireLeasesOfDeadLocalWorkers(db: Queryable): Promise<number> {
  if (!PROCESS_SCOPE) return 0;
  const dead = (await leasesOfScope(db, PROCESS_SCOPE)).filter((lease) => !processExists(lease.pid)).map((lease) => lease.worker);
  await expireLeases(db, dead);
  return dead.length;
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, and is another user's.
    return (error as { code?: string }).code !== 'ESRCH';
  }
}

/** Ends the leases of this machine's dead workers, then marks the runs and workers that are gone (reconcileRuns). */
export async function reconcileWorkers(db: Queryable): Promise<string[]> {
  await expireLeasesOfDeadLocalWorkers(db);
  return reconcileRuns(db);
}
