import { sleep } from './pool.ts';

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
