import type pg from 'pg';
import { acquireSession, type Queryable } from './db.ts';
import { ConfigError, errorMessage } from './errors.ts';
import { sleep } from './pool.ts';
import type { Reporter } from './reporter.ts';

/**
 * Pauses work while the database looks busy: `probeSql` must return one number (replication lag in seconds,
 * active connections, ...). While it is above `threshold`, no new batch is claimed.
 */
export interface DbLoadGuard {
  probeSql: string;
  threshold: number;
  pollMs?: number;
  /** The probe's statement timeout. */
  timeoutMs?: number;
}

export const DEFAULT_PROBE_TIMEOUT_MS = 5_000;

/** The probe was wrong at the start: the run refuses (exit 2) rather than go on unthrottled. */
export class DbLoadProbeError extends ConfigError {}

export type ProbeReading = { ok: true; value: number } | { ok: false; problem: string };

/**
 * Runs the operator's probe the only way it may run: in a READ ONLY transaction with a statement timeout,
 * as one statement of the extended protocol (a second statement after a `;` is refused by the server, so
 * it cannot end the transaction and write). Anything but one finite number is a problem, named with what
 * the probe gave.
 */
export async function readDbLoad(db: Queryable, guard: DbLoadGuard): Promise<ProbeReading> {
  const { connection, release } = await acquireSession(db);
  let inTransaction = false;
  try {
    await connection.query('BEGIN READ ONLY');
    inTransaction = true;
    await connection.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.floor(guard.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS))}`);
    const result = await connection.query({ text: guard.probeSql, values: [], queryMode: 'extended' } as pg.QueryConfig & { queryMode: 'extended' });
    const row = result.rows[0] as Record<string, unknown> | undefined;
    const raw = row ? Object.values(row)[0] : undefined;
    return interpret(row ? raw : undefined, row !== undefined);
  } catch (error) {
    return { ok: false, problem: `failed: ${errorMessage(error)}` };
  } finally {
    if (inTransaction) await connection.query('ROLLBACK').catch(() => undefined);
    await release();
  }
}

function interpret(raw: unknown, hadRow: boolean): ProbeReading {
  if (!hadRow) return { ok: false, problem: 'returned no row' };
  if (raw === null || raw === undefined) return { ok: false, problem: 'returned NULL' };
  const value = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\s*[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?\s*$/i.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isFinite(value)) return { ok: false, problem: `returned ${JSON.stringify(typeof raw === 'object' ? String(raw) : raw)}, not a number` };
  return { ok: true, value };
}

/** Before the first batch (and in dry runs): a probe that cannot say a number refuses the run. */
export async function assertDbLoadProbe(db: Queryable, guard: DbLoadGuard | undefined): Promise<number | undefined> {
  if (!guard) return undefined;
  const reading = await readDbLoad(db, guard);
  if (!reading.ok) {
    throw new DbLoadProbeError(
      `--db-load-probe ${JSON.stringify(guard.probeSql)} ${reading.problem}. It must return one number (it runs read-only, with a ${Math.round((guard.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS) / 1000)}s statement timeout); the run would otherwise go unthrottled. See docs/operating.md for probes that work on a primary and on a replica.`,
    );
  }
  return reading.value;
}

/**
 * Holds the walk while the probe is above its limit, and also while it cannot say (an error, NULL, a
 * non-number, a timeout): a throttle that cannot read the load fails closed. The reason is the worker's
 * wait reason, which `status` shows.
 */
export async function waitForDbLoad(db: Queryable, guard: DbLoadGuard | undefined, reporter: Reporter, signal?: AbortSignal, onWait?: (reason: string | undefined) => void): Promise<void> {
  if (!guard) return;
  let announced: string | undefined;
  while (!signal?.aborted) {
    const reading = await readDbLoad(db, guard);
    if (reading.ok && reading.value <= guard.threshold) {
      if (announced) {
        reporter.log?.('info', `database load ${reading.value} is back under ${guard.threshold}; resuming`);
        onWait?.(undefined);
      }
      return;
    }
    const reason = reading.ok
      ? `--max-db-load: the probe says ${reading.value}, above ${guard.threshold}`
      : `--db-load-probe ${reading.problem}: holding until it answers a number`;
    if (reason !== announced) reporter.log?.('warn', reading.ok ? `database load ${reading.value} is above ${guard.threshold}; pausing until it drops` : `the database load probe ${reading.problem}; pausing until it answers a number`);
    onWait?.(reason);
    announced = reason;
    await sleep(guard.pollMs ?? 5000, signal);
  }
}
