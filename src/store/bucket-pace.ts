import { setTimeout as sleep } from 'node:timers/promises';

/**
 * R2 takes about 4,000 writes (PUT, POST, COPY, DELETE) and 20,000 reads per second per bucket and answers 429
 * beyond that (R2's "Optimizing performance"); S3 answers 503 SlowDown ("Best practices design patterns:
 * optimizing Amazon S3 performance"). Those are the bucket's budget, shared by every process that writes
 * to it, and no one process can know the others' share. Each process therefore paces itself the way TCP
 * shares a link (AIMD, Chiu and Jain): unpaced until the bucket throttles it; then a rate, cut by a factor
 * at most once per round of requests (a throttle answering a request sent before the last cut says nothing
 * new), and raised by a step per second while the rate is what holds the process back: back to where it
 * was cut within a few seconds, then, probing for budget another process left, by a step that grows each
 * second without a throttle (as CUBIC and the SDKs' adaptive mode grow). Processes that do this converge on
 * equal shares of the budget, together close to the whole of it.
 *
 * The SDK's adaptive retry mode (DefaultRateLimiter) is the same idea with a cubic increase, but it cuts the
 * rate again for every throttled answer: with 32 requests in flight one burst of refusals would cut it 0.7^32.
 */

export type PaceLane = 'write' | 'read';

/** The cut on a throttle: the new rate is this share of what the bucket accepted from this process. */
const DECREASE = 0.7;
/** After a cut, the rate climbs back to where it was cut from in about this long. */
const RECOVERY_SECONDS = 2;
/** Past that rate, each second's probe adds this share of the rate, doubling each half second without a throttle. */
const PROBE_SHARE = 0.1;
/** How often the probe's step doubles while no refusal comes. */
const PROBE_DOUBLING_MS = 500;
const MIN_RATE = 1;
/** Accepted requests are counted over this window to know what the bucket gives this process. */
const WINDOW_MS = 1000;
const SLOTS = 10;
/** The bucket counts as the limit while it throttled within this long. */
const LIMITED_FOR_MS = 60_000;

export interface LaneSnapshot {
  /** Requests per second this process allows itself now; null while the bucket has not throttled it. */
  ratePerSecond: number | null;
  sent: number;
  throttled: number;
  /** Of the requests sent, the share the bucket refused as over its budget. */
  throttledShare: number;
  /** The bucket refused one of this process's requests as over its budget within the last minute. */
  bucketLimited: boolean;
  lastThrottleAt: string | null;
  /** Time requests spent waiting for the pace, in all. */
  waitedMs: number;
}

export interface PaceSnapshot {
  write: LaneSnapshot;
  read: LaneSnapshot;
}

/** One lane's AIMD rate and token bucket. */
class Lane {
  rate: number | undefined;
  private tokens = 0;
  private refilledAt = Date.now();
  private lastCutAt = 0;
  /** The rate the last cut came down from, and the climb back to it per second. */
  private cutFrom = 0;
  private step = MIN_RATE;
  /** When the rate climbed back past `cutFrom`: from then on the lane probes for more, faster the longer no throttle comes. */
  private probingSince = 0;
  private constrainedAt = 0;
  private readonly firstAt = Date.now();
  private readonly accepted = new Array<number>(SLOTS).fill(0);
  private readonly let = new Array<number>(SLOTS).fill(0);
  private slotAt = Math.floor(Date.now() / (WINDOW_MS / SLOTS));
  sent = 0;
  throttled = 0;
  lastThrottleAt = 0;
  waitedMs = 0;
  private queue: Promise<void> = Promise.resolve();

  /** Waits for this lane's turn; the time the request was let go (a later throttle of it is judged by it). */
  take(): Promise<number> {
    this.sent++;
    this.roll(Date.now());
    this.let[this.slotAt % SLOTS]++;
    if (this.rate === undefined) return Promise.resolve(Date.now());
    const turn = this.queue.then(async () => {
      const asked = Date.now();
      for (;;) {
        const rate = this.rate;
        if (rate === undefined) break;
        this.refill(rate);
        if (this.tokens >= 1) {
          this.tokens -= 1;
          break;
        }
        this.constrainedAt = Date.now();
        await sleep(Math.max(1, Math.ceil(((1 - this.tokens) / rate) * 1000)));
      }
      this.waitedMs += Date.now() - asked;
      return Date.now();
    });
    this.queue = turn.then(() => undefined);
    return turn;
  }

  private refill(rate: number): void {
    const now = Date.now();
    // A tenth of a second's worth at most: the pace sends evenly, not in bursts the bucket would refuse.
    this.tokens = Math.min(Math.max(1, rate / 10), this.tokens + ((now - this.refilledAt) / 1000) * rate);
    this.refilledAt = now;
  }

  private roll(now: number): void {
    const slot = Math.floor(now / (WINDOW_MS / SLOTS));
    for (let s = this.slotAt + 1; s <= slot && s <= this.slotAt + SLOTS; s++) {
      this.accepted[s % SLOTS] = 0;
      this.let[s % SLOTS] = 0;
    }
    this.slotAt = Math.max(this.slotAt, slot);
  }

  /** Requests per second in a window of slots, over the time the lane has existed when that is shorter. */
  private perSecond(slots: number[], now: number): number {
    const seconds = Math.max(WINDOW_MS / SLOTS, Math.min(WINDOW_MS, now - this.firstAt)) / 1000;
    return slots.reduce((sum, n) => sum + n, 0) / seconds;
  }

  /** Requests per second over the last `slots` slots (the current one and those before it). */
  private recentPerSecond(slots: number[], count: number): number {
    let sum = 0;
    for (let back = 0; back < count; back++) sum += slots[(this.slotAt - back + SLOTS) % SLOTS];
    return sum / ((count * WINDOW_MS) / SLOTS / 1000);
  }

  succeeded(): void {
    const now = Date.now();
    this.roll(now);
    this.accepted[this.slotAt % SLOTS]++;
    const rate = this.rate;
    // Additive increase, only while the pace is what holds the process back (an idle allowance would grow
    // without bound and mean nothing when the process speeds up again).
    if (rate === undefined || now - this.constrainedAt >= WINDOW_MS) return;
    let step = this.step;
    if (rate >= this.cutFrom) {
      // Past the rate of the last cut: the budget may have grown (another process finished). Probe, a little
      // more each second without a throttle.
      this.probingSince ||= now;
      step = Math.max(this.step, rate * PROBE_SHARE * 2 ** Math.min(4, Math.floor((now - this.probingSince) / PROBE_DOUBLING_MS)));
    }
    this.rate = rate + step / rate;
  }

  /** A request let go at `sentAt` was refused as over the bucket's budget. */
  throttledAt(sentAt: number): void {
    const now = Date.now();
    this.throttled++;
    this.lastThrottleAt = now;
    if (sentAt < this.lastCutAt) return;
    this.roll(now);
    const acceptedRate = this.perSecond(this.accepted, now);
    // The first throttle of an unpaced process: what it sent over the last fifth of a second is the better
    // guess (a process refused at the start of its burst has accepted little yet, and a second's window would
    // also count the quiet before it); further cuts follow within a round each, as long as the bucket refuses.
    const from = this.rate === undefined ? Math.max(acceptedRate, this.recentPerSecond(this.let, 2) / 2, MIN_RATE) : this.rate;
    this.rate = Math.max(MIN_RATE, from * DECREASE);
    this.cutFrom = from;
    this.step = Math.max(MIN_RATE, (from - this.rate) / RECOVERY_SECONDS);
    this.probingSince = 0;
    this.tokens = Math.min(this.tokens, 1);
    this.lastCutAt = now;
  }

  snapshot(now: number): LaneSnapshot {
    return {
      ratePerSecond: this.rate === undefined ? null : Math.round(this.rate * 10) / 10,
      sent: this.sent,
      throttled: this.throttled,
      throttledShare: this.sent ? Math.round((this.throttled / this.sent) * 10_000) / 10_000 : 0,
      bucketLimited: this.lastThrottleAt > 0 && now - this.lastThrottleAt < LIMITED_FOR_MS,
      lastThrottleAt: this.lastThrottleAt ? new Date(this.lastThrottleAt).toISOString() : null,
      waitedMs: this.waitedMs,
    };
  }
}

/** The longest one throttled request waits between its attempts (the lane's own pace comes first). */
const MAX_BACKOFF_MS = 1100;

/**
 * The process's pace towards one bucket: a lane for writes and one for reads, each request taking its turn
 * in its lane before it is sent (both request paths: store/object-requests.ts and the SDK client).
 */
export class BucketPace {
  private readonly lanes = { write: new Lane(), read: new Lane() };
  /** Keys this process wrote within R2's one-write-per-key-per-second window: a 429 there is that rule, not the budget. */
  private readonly recentWrites = new Map<string, number>();

  take(lane: PaceLane): Promise<number> {
    return this.lanes[lane].take();
  }

  succeeded(lane: PaceLane, key?: string): void {
    this.lanes[lane].succeeded();
    if (lane === 'write' && key !== undefined) {
      const now = Date.now();
      this.recentWrites.set(key, now);
      if (this.recentWrites.size > 4096) for (const [k, at] of this.recentWrites) if (now - at > 1100) this.recentWrites.delete(k);
    }
  }

  throttled(lane: PaceLane, sentAt: number): void {
    this.lanes[lane].throttledAt(sentAt);
  }

  /** Whether this process wrote `key` within the last second (R2 refuses a second write there with 429). */
  wroteRecently(key: string): boolean {
    const at = this.recentWrites.get(key);
    return at !== undefined && Date.now() - at < 1100;
  }

  /** The wait before a throttled request's next try: growing, short, on top of the lane's own pace. */
  backoffMs(throttles: number): number {
    return Math.min(MAX_BACKOFF_MS, 50 * 2 ** Math.min(10, throttles - 1)) * (0.5 + Math.random() / 2);
  }

  snapshot(): PaceSnapshot {
    const now = Date.now();
    return { write: this.lanes.write.snapshot(now), read: this.lanes.read.snapshot(now) };
  }
}

/** The bucket refused a request as over its budget: 503 SlowDown (S3), 503 ServiceUnavailable, or a 429. */
export function isBucketThrottle(error: unknown): boolean {
  const status = (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  const name = (error as { name?: string })?.name;
  return status === 429 || name === 'SlowDown' || name === 'TooManyRequests' || (status === 503 && (name === 'ServiceUnavailable' || name === 'SlowDown' || name === 'HTTP503'));
}

/** A one-line account of a pace for logs and status, or undefined while the bucket has not throttled. */
export function describePace(pace: PaceSnapshot | undefined): string | undefined {
  if (!pace) return undefined;
  const parts: string[] = [];
  for (const lane of ['write', 'read'] as const) {
    const l = pace[lane];
    if (!l.throttled) continue;
    parts.push(
      `${lane}s ${l.ratePerSecond === null ? 'unpaced' : `paced at ${l.ratePerSecond}/s`}, ${l.throttled} of ${l.sent} refused as over the bucket's budget (${(l.throttledShare * 100).toFixed(1)}%)${l.bucketLimited ? ': the bucket is the limit' : ''}`,
    );
  }
  return parts.length ? parts.join('; ') : undefined;
}
