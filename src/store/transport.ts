import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { NodeHttpHandler, type NodeHttpHandlerOptions } from '@smithy/node-http-handler';
import type { HttpHandlerOptions } from '@smithy/types';
import type { HttpRequest, HttpResponse } from '@smithy/core/protocols';

/** What the socket pool and the requests through it did over a run: a slow store and a starved pool look different here. */
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
  /** Whole-request time (socket wait to last body byte) of every finished attempt, in milliseconds: sorted on read. */
  latencyMs: { count: number; mean: number; p50: number; p95: number; max: number };
}

/** Requests whose socket wait counts as queued: a free keep-alive socket is handed over within a tick. */
const QUEUED_AFTER_MS = 1;
/** Latency samples kept for the percentiles (the most recent ones). */
const LATENCY_SAMPLES = 4096;

class Meter {
  requests = 0;
  inFlight = 0;
  queued = 0;
  waitTotal = 0;
  waitMax = 0;
  timedOut = 0;
  latencyCount = 0;
  latencyTotal = 0;
  latencyMax = 0;
  private readonly latencies: number[] = [];
  listeners = new Set<(latencyMs: number) => void>();

  recordWait(ms: number): void {
    if (ms >= QUEUED_AFTER_MS) this.queued++;
    this.waitTotal += ms;
    this.waitMax = Math.max(this.waitMax, ms);
  }

  recordLatency(ms: number): void {
    this.latencyCount++;
    this.latencyTotal += ms;
    this.latencyMax = Math.max(this.latencyMax, ms);
    if (this.latencies.length >= LATENCY_SAMPLES) this.latencies.shift();
    this.latencies.push(ms);
    for (const listener of this.listeners) listener(ms);
  }

  snapshot(): TransportStats {
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const at = (q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : 0);
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

/** Node's own agents, which also time how long each request waits for a socket of the pool. */
function meteredAgent<A extends typeof http.Agent | typeof https.Agent>(Base: A, meter: Meter, options: http.AgentOptions): InstanceType<A> {
  const Metered = class extends (Base as typeof http.Agent) {
    addRequest(request: http.ClientRequest, requestOptions: unknown): void {
      const asked = performance.now();
      let counted = false;
      const count = () => {
        if (counted) return;
        counted = true;
        meter.recordWait(performance.now() - asked);
      };
      // A request whose deadline passed while it queued never gets a socket: its wait counts all the same.
      request.once('socket', count);
      request.once('close', count);
      (http.Agent.prototype as unknown as { addRequest(r: unknown, o: unknown): void }).addRequest.call(this, request, requestOptions);
    }
  };
  return new Metered(options) as InstanceType<A>;
}

export function deadlineError(ms: number, phase: string): Error {
  // Named as the SDK's own timeouts are, so its retry strategy (and ours for downloads) retries it.
  return Object.assign(new Error(`the S3 request passed its ${ms} ms deadline ${phase} (the deadline covers the wait for a socket, connecting, sending, the headers and the whole body)`), {
    name: 'TimeoutError',
    code: 'ETIMEDOUT',
  });
}

export interface TransportOptions {
  maxSockets: number;
  /** One deadline per attempt: socket wait, connect, send, headers and the whole body. */
  requestTimeoutMs: number;
  connectionTimeoutMs: number;
}

/**
 * The SDK's Node handler with one deadline per attempt over the whole exchange. The handler's own
 * `requestTimeout` ends when the headers arrive, so a body that stalls after them would hang its reader for
 * ever: here the same timer keeps running until the body's last byte and then destroys the body with a
 * retryable TimeoutError. The pool's socket wait is inside the deadline too.
 */
export class DeadlineHttpHandler extends NodeHttpHandler {
  readonly meter: Meter;
  private readonly deadlineMs: number;

  constructor(options: TransportOptions) {
    const meter = new Meter();
    const agentOptions: http.AgentOptions = { keepAlive: true, maxSockets: options.maxSockets, keepAliveMsecs: 1000 };
    const handlerOptions: NodeHttpHandlerOptions = {
      httpAgent: meteredAgent(http.Agent, meter, agentOptions),
      httpsAgent: meteredAgent(https.Agent, meter, agentOptions),
      connectionTimeout: options.connectionTimeoutMs,
      // The handler's own timer (headers only) stays as a second line; ours is the one that ends attempts.
      requestTimeout: options.requestTimeoutMs + 1000,
      throwOnRequestTimeout: true,
    };
    super(handlerOptions);
    this.meter = meter;
    this.deadlineMs = options.requestTimeoutMs;
  }

  stats(): TransportStats {
    return this.meter.snapshot();
  }

  override async handle(request: HttpRequest, options: HttpHandlerOptions = {}): Promise<{ response: HttpResponse }> {
    const meter = this.meter;
    const ms = this.deadlineMs;
    const started = performance.now();
    meter.requests++;
    meter.inFlight++;
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      meter.inFlight--;
      meter.recordLatency(performance.now() - started);
    };
    const inner = new AbortController();
    const outer = options.abortSignal as AbortSignal | undefined;
    const forward = () => inner.abort(outer?.reason);
    if (outer?.aborted) inner.abort(outer.reason);
    else outer?.addEventListener?.('abort', forward, { once: true });
    let body: IncomingMessage | undefined;
    let expire: (error: Error) => void = () => undefined;
    const expired = new Promise<never>((_, reject) => (expire = reject));
    expired.catch(() => undefined);
    const timer = setTimeout(() => {
      meter.timedOut++;
      if (body) {
        body.destroy(deadlineError(ms, 'while the body was arriving'));
        finish();
      } else {
        inner.abort();
        expire(deadlineError(ms, 'before the answer'));
      }
    }, ms);
    try {
      const result = await Promise.race([super.handle(request, { ...options, abortSignal: inner.signal as HttpHandlerOptions['abortSignal'] }), expired]);
      const stream = result.response.body as IncomingMessage | undefined;
      if (stream && typeof stream.once === 'function' && !stream.readableEnded && !stream.destroyed) {
        body = stream;
        stream.once('end', finish);
        stream.once('close', finish);
        stream.once('error', finish);
      } else finish();
      return result;
    } catch (error) {
      finish();
      throw error;
    } finally {
      outer?.removeEventListener?.('abort', forward);
    }
  }
}
