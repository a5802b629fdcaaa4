import { query, type Queryable } from './db.ts';
import { sleep } from './pool.ts';
import type { Reporter } from './reporter.ts';

/**
 * Spaces object requests to at most `perSecond` (a token bucket with a one-second burst); no limit while
 * the rate is undefined. The rate can change while requests wait (live tuning).
 */
export class RateLimiter {
  private tokens: number;
  private last = Date.now();
  private queue: Promise<void> = Promise.resolve();
  /** Told when requests start and stop waiting for the rate (a run's wait reason). */
  onWait?: (reason: string | undefined) => void;

  constructor(private perSecond?: number) {
    this.tokens = perSecond ?? 0;
  }

  get rate(): number | undefined {
    return this.perSecond;
  }

  setRate(perSecond: number | undefined): void {
    this.perSecond = perSecond;
    this.tokens = Math.min(this.tokens, perSecond ?? 0);
  }

  take(): Promise<void> {
    if (this.perSecond === undefined) return Promise.resolve();
    const next = this.queue.then(async () => {
      let waited = false;
      for (;;) {
        const rate = this.perSecond;
        if (rate === undefined) break;
        const now = Date.now();
        this.tokens = Math.min(rate, this.tokens + ((now - this.last) / 1000) * rate);
        this.last = now;
        if (this.tokens >= 1) {
          this.tokens -= 1;
          break;
        }
        if (!waited) this.onWait?.(`--max-rate ${rate}/s`);
        waited = true;
        await sleep(Math.min(500, Math.ceil(((1 - this.tokens) / rate) * 1000)));
      }
      if (waited) this.onWait?.(undefined);
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

export async function waitForDbLoad(db: Queryable, guard: DbLoadGuard | undefined, reporter: Reporter, signal?: AbortSignal, onWait?: (reason: string | undefined) => void): Promise<void> {
  if (!guard) return;
  let announced = false;
  while (!signal?.aborted) {
    const rows = await query<Record<string, unknown>>(db, guard.probeSql);
    const value = Number(Object.values(rows[0] ?? {})[0]);
    if (!Number.isFinite(value) || value <= guard.threshold) {
      if (announced) {
        reporter.log?.('info', `database load ${Number.isFinite(value) ? value : '?'} is back under ${guard.threshold}; resuming`);
        onWait?.(undefined);
      }
      return;
    }
    if (!announced) reporter.log?.('warn', `database load ${value} is above ${guard.threshold}; pausing until it drops`);
    onWait?.(`--max-db-load: the probe says ${value}, above ${guard.threshold}`);
    announced = true;
    await sleep(guard.pollMs ?? 5000, signal);
  }
}
