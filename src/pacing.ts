import { query, type Queryable } from './db.ts';
import { sleep } from './pool.ts';
import type { Reporter } from './reporter.ts';

/** Spaces object requests to at most `perSecond` (a token bucket with a one-second burst). */
export class RateLimiter {
  private tokens: number;
  private last = Date.now();
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly perSecond: number) {
    this.tokens = perSecond;
  }

  take(): Promise<void> {
    const next = this.queue.then(async () => {
      for (;;) {
        const now = Date.now();
        this.tokens = Math.min(this.perSecond, this.tokens + ((now - this.last) / 1000) * this.perSecond);
        this.last = now;
        if (this.tokens >= 1) {
          this.tokens -= 1;
          return;
        }
        await sleep(Math.ceil(((1 - this.tokens) / this.perSecond) * 1000));
      }
    });
    this.queue = next;
    return next;
  }
}

/**
 * Pauses work while the database looks busy: `probeSql` must return one number (replication lag in seconds,
 * active connections, ...). While it is above `threshold`, no new batch is claimed.
 */
export interface DbLoadGuard {
  probeSql: string;
  threshold: number;
  pollMs?: number;
}

export async function waitForDbLoad(db: Queryable, guard: DbLoadGuard | undefined, reporter: Reporter, signal?: AbortSignal): Promise<void> {
  if (!guard) return;
  let announced = false;
  while (!signal?.aborted) {
    const rows = await query<Record<string, unknown>>(db, guard.probeSql);
    const value = Number(Object.values(rows[0] ?? {})[0]);
    if (!Number.isFinite(value) || value <= guard.threshold) {
      if (announced) reporter.log?.('info', `database load ${Number.isFinite(value) ? value : '?'} is back under ${guard.threshold}; resuming`);
      return;
    }
    if (!announced) reporter.log?.('warn', `database load ${value} is above ${guard.threshold}; pausing until it drops`);
    announced = true;
    await sleep(guard.pollMs ?? 5000, signal);
  }
}
