import { S3Client } from '@aws-sdk/client-s3';
import { ConfiguredRetryStrategy, isServerError, isThrottlingError, isTransientError } from '@smithy/core/retry';
import type { RetryErrorInfo, RetryErrorType, StandardRetryToken } from '@smithy/types';
import type { ObjectStoreConfig } from '../config.ts';
import { errorMessage } from '../errors.ts';
import { redact } from '../secrets.ts';
import { DeadlineHttpHandler } from './transport.ts';
import type { Meter } from './meter.ts';
import { isBucketThrottle, type BucketPace, type PaceLane } from './bucket-pace.ts';

export interface ClientOptions {
  /** Sockets kept open to the endpoint; at least the upload concurrency. */
  maxSockets?: number;
  /** SDK attempts per request (throttling, 5xx and network errors are retried with growing, jittered delays). */
  maxAttempts?: number;
  /**
   * One deadline per attempt over the whole exchange: the wait for a socket, connecting, sending, the headers
   * and the whole body. An attempt past it fails with a retryable timeout.
   */
  requestTimeoutMs?: number;
  connectionTimeoutMs?: number;
  /** Once this aborts (the operator asked to stop), a failed attempt is not retried: requests in flight end within one deadline. */
  stopping?: AbortSignal;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_ATTEMPTS = 5;
export const DEFAULT_CONNECTION_TIMEOUT_MS = 5_000;
/** The longest delay between two attempts (retryDelayMs's cap). */
const MAX_RETRY_DELAY_MS = 20_000;

/**
 * The longest one request can take with every attempt used: each attempt's deadline plus the longest
 * delays between them. A worker whose item has made no progress for longer than a few of these is stalled.
 */
export function requestBoundMs(requestTimeoutMs = DEFAULT_REQUEST_TIMEOUT_MS, maxAttempts = DEFAULT_MAX_ATTEMPTS): number {
  let total = requestTimeoutMs * maxAttempts;
  for (let attempt = 1; attempt < maxAttempts; attempt++) total += Math.min(MAX_RETRY_DELAY_MS, 300 * 2 ** (attempt - 1) * 1.5);
  return Math.ceil(total);
}

type ClassifiedError = Parameters<typeof isThrottlingError>[0] & { $metadata?: { httpStatusCode?: number; clockSkewCorrected?: boolean } };

/**
 * Refusals of a body that did not arrive as sent (R2 checks Content-MD5 and the signed payload hash before
 * storing anything): the bytes were damaged on the way, so sending them again is safe and likely to work.
 */
const DAMAGED_IN_TRANSIT = new Set(['BadDigest', 'XAmzContentSHA256Mismatch']);

/**
 * The SDK's own classification of an error, in the order its retry middleware applies it (its function is
 * not exported), with one addition: a damaged body is transient. Both request paths are classified by it.
 */
export function retryErrorType(error: unknown): RetryErrorType {
  const e = error as ClassifiedError;
  if (isThrottlingError(e)) return 'THROTTLING';
  if (isTransientError(e) || DAMAGED_IN_TRANSIT.has(e?.name)) return 'TRANSIENT';
  if (isServerError(e)) return 'SERVER_ERROR';
  return 'CLIENT_ERROR';
}

/** A refusal for the request's signing time: the only answer a corrected clock can change. */
function refusedForSigningTime(error: ClassifiedError): boolean {
  return error.$metadata?.httpStatusCode === 403 || error.name === 'RequestTimeTooSkewed';
}

/**
 * The SDK's configured strategy, which stops retrying once the operator asked the run to stop. Its signer
 * marks an error "clock skew corrected" whenever the server's clock is minutes off ours and the offset moved
 * at all, which it does on every answer (Date has whole seconds): on such a store every error, a 404 or a
 * 412 included, would be retried to the last attempt. Here only a refusal the clock can explain is. A body
 * refused as damaged on the way is retried too (the SDK takes it for the caller's mistake, a 400).
 */
export class StoppableRetryStrategy extends ConfiguredRetryStrategy {
  /** When each request's throttling began: it is sent again outside the retry quota until `throttleBoundMs` passes. */
  private readonly throttledSince = new WeakMap<StandardRetryToken, { at: number; times: number }>();

  constructor(
    maxAttempts: number,
    delay: (attempt: number) => number,
    private readonly stopping?: AbortSignal,
    private readonly throttling?: { pace: BucketPace; boundMs: number },
  ) {
    super(maxAttempts, delay);
  }

  override async refreshRetryTokenForRetry(token: StandardRetryToken, errorInfo: RetryErrorInfo): Promise<StandardRetryToken> {
    if (this.stopping?.aborted) throw new Error('stopping: no further attempts');
    const error = errorInfo.error as ClassifiedError | undefined;
    if (error && this.throttling && isBucketThrottle(error)) {
      // Refused as over the bucket's budget (the pacing middleware slowed the process down already): the same
      // request goes again after a short wait, at no cost to the retry quota meant for errors. At least a
      // second after a 429, which may also be R2's per-key rule.
      const since = this.throttledSince.get(token) ?? { at: Date.now(), times: 0 };
      since.times++;
      this.throttledSince.set(token, since);
      if (Date.now() - since.at <= this.throttling.boundMs) {
        const wait = Math.max(this.throttling.pace.backoffMs(since.times), httpStatusOf(error) === 429 ? KEY_WRITE_INTERVAL_MS : 0);
        await new Promise((resolve) => setTimeout(resolve, wait));
        return token;
      }
    }
    if (error) {
      if (error.$metadata?.clockSkewCorrected && !refusedForSigningTime(error)) delete error.$metadata.clockSkewCorrected;
      errorInfo = { ...errorInfo, errorType: retryErrorType(error) };
      // R2 answers 429 to a write within a second of another write to the same key ("Limits"): the next
      // attempt goes after that second, through the SDK's own retry-after hint, not on a shorter backoff.
      if (isKeyWriteLimited(error) && !errorInfo.retryAfterHint) errorInfo = { ...errorInfo, retryAfterHint: new Date(Date.now() + KEY_WRITE_INTERVAL_MS) };
    }
    return super.refreshRetryTokenForRetry(token, errorInfo);
  }
}

/** R2 takes one write per key per second; a write refused for it is retried once this has passed. */
export const KEY_WRITE_INTERVAL_MS = 1100;

/** Delay before retry `attempt` (1-based): 300 ms, 600 ms, 1.2 s, … with ±50% jitter (at least a second after a 429, above). */
export function retryDelayMs(attempt: number): number {
  return Math.min(MAX_RETRY_DELAY_MS, 300 * 2 ** (attempt - 1) * (0.5 + Math.random()));
}

/** The pace lane of an SDK command: R2 counts PUT, POST, COPY and DELETE against a bucket's writes, the rest as reads. */
export function laneOfCommand(command: string): PaceLane {
  return /^(Put|Delete|Copy|Create|Complete|Abort|Upload)/.test(command) ? 'write' : 'read';
}

/**
 * Every attempt of an SDK command takes its turn in the bucket's pace, and tells it how the bucket answered.
 * Added inside the retry middleware, as the request counter is: each attempt is paced.
 */
export function paceClient(client: S3Client, pace: BucketPace): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const lane = laneOfCommand(String(context.commandName ?? ''));
      const sentAt = await pace.take(lane);
      try {
        const result = await next(args);
        pace.succeeded(lane);
        return result;
      } catch (error) {
        if (isBucketThrottle(error)) pace.throttled(lane, sentAt);
        throw error;
      }
    },
    { step: 'finalizeRequest', name: 'overskillBucketPace', priority: 'low' },
  );
}

/** The one S3 client configuration: path-style, our own checksums, the SDK's retry strategy, pooled sockets, one deadline per attempt. */
export function createS3Client(
  config: ObjectStoreConfig,
  options: ClientOptions = {},
  shared: { handler?: DeadlineHttpHandler; meter?: Meter; retryStrategy?: StoppableRetryStrategy } = {},
): { client: S3Client; handler: DeadlineHttpHandler } {
  const requestHandler =
    shared.handler ??
    new DeadlineHttpHandler({
      maxSockets: Math.max(8, options.maxSockets ?? 32),
      connectionTimeoutMs: options.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
      requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      meter: shared.meter,
      endpoint: config.endpoint,
      network: config.network,
    });
  const client = new S3Client({
    endpoint: config.endpoint,
    region: config.region,
    forcePathStyle: true,
    credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
    // Checksums are ours to compute and send explicitly; the SDK's defaults would frame streamed
    // bodies as aws-chunked, which S3-compatible servers do not all understand.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    retryStrategy: shared.retryStrategy ?? new StoppableRetryStrategy(Math.max(1, options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS), retryDelayMs, options.stopping),
    requestHandler,
  });
  return { client, handler: requestHandler };
}

export function httpStatusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

export function isNotFound(error: unknown): boolean {
  const name = (error as { name?: string })?.name;
  return name === 'NoSuchKey' || name === 'NotFound' || httpStatusOf(error) === 404;
}

/** A conditional write whose condition did not hold (412), or an If-Match on a key that is gone (404 on S3). */
export function isPreconditionFailed(error: unknown): boolean {
  const name = (error as { name?: string })?.name;
  return name === 'PreconditionFailed' || httpStatusOf(error) === 412;
}

/**
 * R2's one-write-per-key-per-second rule (429). Not a general slow-down (503 SlowDown): only this answer says
 * the key itself was written a moment ago, which is what the guarded delete reasons about.
 */
export function isKeyWriteLimited(error: unknown): boolean {
  const name = (error as { name?: string })?.name;
  return httpStatusOf(error) === 429 || name === 'TooManyRequests';
}

export function describeS3Error(error: unknown): string {
  const err = error as { name?: string; message?: string; $metadata?: { httpStatusCode?: number; attempts?: number }; code?: string };
  const status = err?.$metadata?.httpStatusCode;
  const attempts = err?.$metadata?.attempts;
  const parts = [err?.name && err.name !== 'Error' ? err.name : undefined, err?.code, errorMessage(error)].filter(Boolean);
  let text = [...new Set(parts)].join(': ');
  if (status) text += ` (HTTP ${status})`;
  if (attempts && attempts > 1) text += ` after ${attempts} attempts`;
  return redact(text);
}
