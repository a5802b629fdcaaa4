import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage } from 'node:http';
import { NodeHttpHandler, type NodeHttpHandlerOptions } from '@smithy/node-http-handler';
import type { HttpHandlerOptions } from '@smithy/types';
import type { HttpRequest, HttpResponse } from '@smithy/core/protocols';
import { Meter, deadlineError } from './meter.ts';
import { sdkAgents, type NetworkOptions } from './network.ts';

export type { TransportStats } from './meter.ts';

/** Times how long each request waits for a socket of the agent's pool (Node's own agents, or a proxy's tunnel). */
function metered<A extends http.Agent>(agent: A, meter: Meter): A {
  const addRequest = (agent as unknown as { addRequest(r: unknown, o: unknown): void }).addRequest.bind(agent);
  (agent as unknown as { addRequest(r: http.ClientRequest, o: unknown): void }).addRequest = (request: http.ClientRequest, requestOptions: unknown) => {
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
    addRequest(request, requestOptions);
  };
  return agent;
}

export interface TransportOptions {
  maxSockets: number;
  /** One deadline per attempt: socket wait, connect, send, headers and the whole body. */
  requestTimeoutMs: number;
  connectionTimeoutMs: number;
  /** Shared with the per-object requests, so one meter sees every request. */
  meter?: Meter;
  /** The endpoint and the network's proxy and certificate authority (store/network.ts). */
  endpoint?: string;
  network?: NetworkOptions;
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
    const meter = options.meter ?? new Meter();
    const agentOptions: http.AgentOptions = { keepAlive: true, maxSockets: options.maxSockets, keepAliveMsecs: 1000 };
    const agents = sdkAgents(options.endpoint ?? 'https://store.invalid', options.network ?? {}, agentOptions);
    const handlerOptions: NodeHttpHandlerOptions = {
      httpAgent: metered(agents.httpAgent, meter),
      httpsAgent: metered(agents.httpsAgent, meter),
      connectionTimeout: options.connectionTimeoutMs,
      // The handler's own timer (headers only) stays as a second line; ours is the one that ends attempts.
      requestTimeout: options.requestTimeoutMs + 1000,
      throwOnRequestTimeout: true,
    };
    super(handlerOptions);
    this.meter = meter;
    this.deadlineMs = options.requestTimeoutMs;
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
