/** What the socket pools and the requests through them did over a run: a slow store and a starved pool look different here. */
export interface TransportStats {
  /** Requests sent (every attempt counts). */
  requests: number;
  /** Requests in flight now, from the wait for a socket to the last byte of the answer. */
  inFlight: number;
  /** Requests that found no free socket and queued for one. */
  queued: number;
  /** Time requests spent waiting for a socket, in all and at most. */
  queueWaitMs: { total: number; max: number; mean: number };
  /** Attempts ended by their deadline. */
  timedOut: number;
  /** Whole-request time (socket wait to last body byte) of the most recent attempts, in milliseconds. */
  latencyMs: { count: number; mean: number; p50: number; p95: number; max: number };
}

/** Requests whose socket wait counts as queued: a free keep-alive socket is handed over within a tick. */
const QUEUED_AFTER_MS = 1;
/** Latency samples kept for the percentiles (the most recent ones, in a ring). */
const LATENCY_SAMPLES = 4096;

/**
 * One meter for every request the store sends, whichever client sends it (the SDK's handler for listings and
 * multipart, the per-object requests for the rest), so `status` and the metrics see the whole pool.
 */
export class Meter {
  requests = 0;
  inFlight = 0;
  queued = 0;
  waitTotal = 0;
  waitMax = 0;
  timedOut = 0;
  latencyCount = 0;
  latencyTotal = 0;
  latencyMax = 0;
  private readonly latencies = new Float64Array(LATENCY_SAMPLES);
  readonly listeners = new Set<(latencyMs: number) => void>();

  recordWait(ms: number): void {
    if (ms >= QUEUED_AFTER_MS) this.queued++;
    this.waitTotal += ms;
    if (ms > this.waitMax) this.waitMax = ms;
  }

  recordLatency(ms: number): void {
    this.latencies[this.latencyCount % LATENCY_SAMPLES] = ms;
    this.latencyCount++;
    this.latencyTotal += ms;
    if (ms > this.latencyMax) this.latencyMax = ms;
    for (const listener of this.listeners) listener(ms);
  }

  snapshot(): TransportStats {
    const kept = Math.min(this.latencyCount, LATENCY_SAMPLES);
    const sorted = this.latencies.slice(0, kept).sort();
    const at = (q: number) => (kept ? sorted[Math.min(kept - 1, Math.floor(q * kept))] : 0);
    const round = (ms: number) => Math.round(ms * 10) / 10;
    return {
      requests: this.requests,
      inFlight: this.inFlight,
      queued: this.queued,
      queueWaitMs: { total: round(this.waitTotal), max: round(this.waitMax), mean: round(this.requests ? this.waitTotal / this.requests : 0) },
      timedOut: this.timedOut,
      latencyMs: { count: this.latencyCount, mean: round(this.latencyCount ? this.latencyTotal / this.latencyCount : 0), p50: round(at(0.5)), p95: round(at(0.95)), max: round(this.latencyMax) },
    };
  }
}

export function deadlineError(ms: number, phase: string): Error {
  // Named as the SDK's own timeouts are, so its retry classification retries it.
  return Object.assign(new Error(`the S3 request passed its ${ms} ms deadline ${phase} (the deadline covers the wait for a socket, connecting, sending, the headers and the whole body)`), {
    name: 'TimeoutError',
    code: 'ETIMEDOUT',
  });
}
