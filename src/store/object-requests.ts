import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { objectDispatcher } from './network.ts';
import { SignatureV4 } from '@smithy/signature-v4';
import { HttpRequest } from '@smithy/core/protocols';
import type { StandardRetryStrategy } from '@smithy/core/retry';
import type { RetryErrorInfo, SourceData, StandardRetryToken } from '@smithy/types';
import { retryErrorType } from './client.ts';
import type { ObjectStoreConfig } from '../config.ts';
import { deadlineError, type Meter } from './meter.ts';
import { isBucketThrottle, type BucketPace, type PaceLane } from './bucket-pace.ts';

/**
 * The per-object requests (PutObject, HeadObject, GetObject, DeleteObject) on undici's pool, signed by the
 * AWS signer, retried by the same SDK retry strategy as every other request. These are the requests a
 * migration sends once per row; the SDK's whole command pipeline (endpoint rules, schema serde, middleware)
 * cost more CPU than the request itself, and here each is one signed HTTP exchange. Listings, copies and
 * multipart uploads stay on the SDK client.
 *
 * What the SDK path gave and this keeps: one deadline per attempt over the wait for a socket, connecting,
 * sending, the headers and the whole body; errors shaped as the SDK's (`name` is the S3 error code,
 * `$metadata.httpStatusCode` the status), so every caller's 404, 412 and 429 handling is unchanged; the SDK's
 * own retry classification and strategy (jittered backoff, retry quota, no retry once stopping); and the
 * SDK's clock-skew correction: every answer's Date header sets the clock requests are signed by, and a
 * request refused because it was signed by a clock minutes off the server's is signed again and resent.
 */

export interface ObjectRequestOptions {
  maxSockets: number;
  requestTimeoutMs: number;
  connectionTimeoutMs: number;
  meter: Meter;
  retryStrategy: StandardRetryStrategy;
  /** Counts every attempt sent, by the SDK command name it stands for (benchmarks and tests read it). */
  onRequest?: (command: string) => void;
  /** The process's pace towards the bucket (bucket-pace.ts): every attempt takes its turn there. */
  pace: BucketPace;
  /** How long one request may go on being refused as over the bucket's budget before it fails. */
  throttleBoundMs: number;
  /** Once this aborts (the operator asked to stop), a throttled request is not sent again. */
  stopping?: AbortSignal;
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
}

/** What `put` sends beside the body. */
export interface PutHeaders {
  contentType?: string;
  /** Base64 MD5 of the body: the server refuses bytes that arrive otherwise. */
  contentMd5?: string;
  /** SHA-256 (hex) of the body when the caller knows it already; else it is computed for the signature. */
  bodySha256?: string;
  metadata?: Record<string, string>;
  ifNoneMatch?: '*';
  /** Quoted or bare ETag. */
  ifMatch?: string;
  contentEncoding?: string;
}

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const COMMANDS = { PUT: 'PutObjectCommand', HEAD: 'HeadObjectCommand', GET: 'GetObjectCommand', DELETE: 'DeleteObjectCommand' } as const;
type Method = keyof typeof COMMANDS;
const LANES: Record<Method, PaceLane> = { PUT: 'write', DELETE: 'write', HEAD: 'read', GET: 'read' };
interface Signed {
  path: string;
  headers: Record<string, string>;
  /** The offset from this machine's clock that the signing date carried. */
  clockOffsetMs: number;
}

/** The SDK's threshold: a signing clock this far from the server's is corrected and the request resent. */
const CLOCK_SKEW_MS = 240_000;

/**
 * The server's clock minus ours, from an answer's Date header, as the SDK's signer takes it (its helper is
 * not exported): not from a cached answer (Age), nor from one that took longer than a signature lives.
 */
function serverClockOffset(date: string, current: number, sentAt: number, age: string | undefined): number {
  if (age !== undefined) return current;
  const serverTime = Date.parse(date);
  if (Number.isNaN(serverTime)) return current;
  const received = Date.now();
  if (received - sentAt > 900_000) return current;
  return serverTime - received;
}

/** An error answer, shaped as the SDK's service exceptions are. */
export class S3ResponseError extends Error {
  /** `clockSkewCorrected`: refused for a signing clock the server's Date shows was off; the next attempt is signed by the corrected one (the SDK's retry classification retries it). */
  readonly $metadata: { httpStatusCode: number; attempts: number; requestId?: string; clockSkewCorrected?: boolean };
  readonly $fault: 'client' | 'server';
  readonly Code: string;

  constructor(status: number, code: string, message: string, requestId: string | undefined, readonly retryAfter?: Date) {
    super(message || `${code} (HTTP ${status})`);
    this.name = code;
    this.Code = code;
    this.$fault = status >= 500 ? 'server' : 'client';
    this.$metadata = { httpStatusCode: status, attempts: 1, requestId };
  }
}

function bytesOf(data: SourceData): Uint8Array | string {
  if (typeof data === 'string' || data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return new Uint8Array(data);
}

/** The SDK's Node hash interface over node:crypto, for the signer. */
class NodeSha256 {
  private hash: Hash | Hmac;
  private readonly secret?: Uint8Array | string;
  constructor(secret?: SourceData) {
    this.secret = secret === undefined ? undefined : bytesOf(secret);
    this.hash = this.secret === undefined ? createHash('sha256') : createHmac('sha256', this.secret);
  }
  update(data: SourceData): void {
    this.hash.update(bytesOf(data));
  }
  async digest(): Promise<Uint8Array> {
    return this.hash.digest();
  }
  reset(): void {
    this.hash = this.secret === undefined ? createHash('sha256') : createHmac('sha256', this.secret);
  }
}

/** Each key segment encoded as the SDK encodes S3 paths (RFC 3986, so `!'()*` too); the slashes stay. */
export function encodeKeyPath(key: string): string {
  return key
    .split('/')
    .map((segment) => encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
}

/** A header's value as one string (repeated headers joined, as Node joins them). */
export function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** The user metadata of an answer (`x-amz-meta-*`), keys lower-cased as the SDK gives them. */
export function metadataOf(headers: Answer['headers']): Record<string, string> {
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) if (name.startsWith('x-amz-meta-') && value !== undefined) metadata[name.slice(11)] = headerText(value)!;
  return metadata;
}

const UNDICI_TIMEOUTS = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
const UNDICI_RESETS = new Set(['UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_DESTROYED', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH']);

/** undici's own error codes, named as Node's, so the SDK's classification sees a timeout or a reset it retries. */
function asNetworkError(error: unknown): unknown {
  const code = (error as { code?: string })?.code;
  if (code && UNDICI_TIMEOUTS.has(code)) return Object.assign(new Error((error as Error).message, { cause: error }), { name: 'TimeoutError', code: 'ETIMEDOUT' });
  if (code && UNDICI_RESETS.has(code)) return Object.assign(new Error((error as Error).message, { cause: error }), { name: 'NetworkError', code: 'ECONNRESET' });
  return error;
}

function errorFrom(answer: Answer, body: Buffer, method: Method): S3ResponseError {
  const text = body.toString('utf8');
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? (answer.status === 404 ? (method === 'HEAD' ? 'NotFound' : 'NoSuchKey') : answer.status === 412 ? 'PreconditionFailed' : answer.status === 429 ? 'TooManyRequests' : `HTTP${answer.status}`);
  const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? '';
  const retryAfter = headerText(answer.headers['retry-after']);
  const seconds = retryAfter !== undefined ? Number(retryAfter) : Number.NaN;
  return new S3ResponseError(answer.status, code, message, headerText(answer.headers['x-amz-request-id']), Number.isFinite(seconds) ? new Date(Date.now() + seconds * 1000) : undefined);
}

export class ObjectRequests {
  private readonly pool: Dispatcher;
  private readonly origin: string;
  private readonly signer: SignatureV4;
  private readonly host: string;
  private readonly basePath: string;
  /** Server time minus this machine's, from the last answer's Date header (0 until one arrives). */
  clockOffsetMs = 0;
  /**
   * How an ETag goes in If-Match. HTTP and S3 quote it; Ceph RGW 16 compares the header to the bare ETag, so a
   * quoted one never matches there and an unquoted one does. The store check finds which this store takes.
   */
  ifMatchQuoted = true;

  private ifMatchValue(etag: string): string {
    const bare = etag.replace(/^"|"$/g, '');
    return this.ifMatchQuoted ? `"${bare}"` : bare;
  }

  constructor(
    config: ObjectStoreConfig,
    private readonly options: ObjectRequestOptions,
  ) {
    const url = new URL(config.endpoint);
    this.host = url.host;
    this.basePath = `${url.pathname.replace(/\/+$/, '')}/${encodeKeyPath(config.bucket)}/`;
    this.origin = url.origin;
    // A pool to the endpoint, or the egress proxy's tunnel to it; the private CA trusted either way.
    this.pool = objectDispatcher(config.endpoint, config.network ?? {}, {
      connections: options.maxSockets,
      connectTimeoutMs: options.connectionTimeoutMs,
      // Our deadline ends every attempt; undici's own timers are a second line behind it.
      headersTimeoutMs: options.requestTimeoutMs + 1000,
      bodyTimeoutMs: options.requestTimeoutMs + 1000,
    });
    this.signer = new SignatureV4({
      service: 's3',
      region: config.region,
      credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
      sha256: NodeSha256,
      uriEscapePath: false,
      applyChecksum: true,
    });
  }

  async destroy(): Promise<void> {
    await this.pool.destroy().catch(() => undefined);
  }

  /** PutObject of an in-memory body; resolves with the stored object's ETag as sent (quoted). */
  async put(key: string, body: Buffer, put: PutHeaders, retries = true): Promise<{ etag: string }> {
    const headers: Record<string, string> = { 'content-length': String(body.length), 'x-amz-content-sha256': put.bodySha256 ?? createHash('sha256').update(body).digest('hex') };
    if (put.contentType) headers['content-type'] = put.contentType;
    if (put.contentMd5) headers['content-md5'] = put.contentMd5;
    if (put.contentEncoding) headers['content-encoding'] = put.contentEncoding;
    if (put.ifNoneMatch) headers['if-none-match'] = put.ifNoneMatch;
    if (put.ifMatch) headers['if-match'] = this.ifMatchValue(put.ifMatch);
    for (const [name, value] of Object.entries(put.metadata ?? {})) headers[`x-amz-meta-${name}`] = value;
    const answer = await this.send('PUT', key, headers, body, retries);
    return { etag: headerText(answer.headers.etag) ?? '' };
  }

  /** HeadObject; undefined when there is no such key. */
  async head(key: string): Promise<Answer | undefined> {
    try {
      return await this.send('HEAD', key, {}, undefined, true);
    } catch (error) {
      if ((error as S3ResponseError).$metadata?.httpStatusCode === 404) return undefined;
      throw error;
    }
  }

  /**
   * DeleteObject. With `ifMatch`, only while the object still has that ETag: S3 answers 412 otherwise and keeps
   * it (conditional deletes, S3 since 2025-09); with `ifLastModified`, only while its Last-Modified is that
   * time (R2's conditional delete). A store that ignores a header deletes regardless, which is why the guarded
   * delete relies on one only where the store was proven to honour it (store/deletes.ts).
   */
  async delete(key: string, retries = true, ifMatch?: string, ifLastModified?: Date): Promise<void> {
    const headers: Record<string, string> = ifMatch ? { 'if-match': this.ifMatchValue(ifMatch) } : {};
    // R2's conditional delete (and S3's, in directory buckets): only while the object's Last-Modified is this
    // time. An HTTP date, as headers carry S3's timestamps (S3's DeleteObject reference).
    if (ifLastModified) headers['x-amz-if-match-last-modified-time'] = ifLastModified.toUTCString();
    await this.send('DELETE', key, headers, undefined, retries);
  }

  /**
   * GetObject, one attempt: a body that breaks mid-stream cannot be replayed here, so the caller retries the
   * whole download. The attempt's deadline runs until the body's last byte; past it the body fails.
   */
  async get(key: string): Promise<Answer & { body: Readable }> {
    // A GET refused as over the bucket's budget has no body yet: it is asked again at the pace, here.
    const answer = await this.paced('GET', key, true, () => this.resignedOnClockSkew(() => this.attempt('GET', key, this.sign('GET', key, {}), undefined, true)));
    return answer as Answer & { body: Readable };
  }

  /**
   * One exchange in its turn of the bucket's pace. An answer refusing it as over the bucket's budget (not R2's
   * per-key rule: a 429 on a key this process wrote within the second) slows the whole process, and, where
   * `resend`, the request waits its turn again and is sent again: R2 and S3 refuse such a request before
   * acting on it. That is outside the retry quota meant for errors, for as long as `throttleBoundMs` allows.
   */
  private async paced<T>(method: Method, key: string, resend: boolean, exchange: () => Promise<T>): Promise<T> {
    const { pace, throttleBoundMs } = this.options;
    const lane = LANES[method];
    const first = Date.now();
    for (let throttles = 0; ; ) {
      const sentAt = await pace.take(lane);
      try {
        const answer = await exchange();
        pace.succeeded(lane, lane === 'write' ? key : undefined);
        return answer;
      } catch (error) {
        const status = (error as S3ResponseError).$metadata?.httpStatusCode;
        const keyRule = status === 429 && lane === 'write' && pace.wroteRecently(key);
        if (!isBucketThrottle(error) || keyRule) throw error;
        pace.throttled(lane, sentAt);
        throttles++;
        if (!resend || Date.now() - first >= throttleBoundMs || this.options.stopping?.aborted) throw error;
        await new Promise((resolve) => setTimeout(resolve, pace.backoffMs(throttles)));
      }
    }
  }

  private async send(method: Method, key: string, headers: Record<string, string>, body: Buffer | undefined, retries: boolean): Promise<Answer> {
    const strategy = this.options.retryStrategy;
    let token: StandardRetryToken | undefined = retries ? await strategy.acquireInitialRetryToken('s3') : undefined;
    for (let attempts = 1; ; attempts++) {
      try {
        // A request sent once (its replay could undo another writer's) is still signed again after a clock-skew
        // refusal: the server refused it before acting on it.
        const exchange = () => this.attempt(method, key, this.sign(method, key, headers), body, false);
        // A request sent once (retries off) is told of a throttle, not sent again: its caller decides.
        const answer = await this.paced(method, key, token !== undefined, () => (token ? exchange() : this.resignedOnClockSkew(exchange)));
        if (token) strategy.recordSuccess(token);
        return answer;
      } catch (failure) {
        const error = asNetworkError(failure);
        const metadata = (error as S3ResponseError).$metadata;
        if (metadata) metadata.attempts = attempts;
        // A 404 on HEAD is an answer, not a failure to retry.
        if (!token || metadata?.httpStatusCode === 404) throw error;
        const info: RetryErrorInfo = { errorType: retryErrorType(error), error: error as RetryErrorInfo['error'], retryAfterHint: (error as S3ResponseError).retryAfter };
        try {
          token = await strategy.refreshRetryTokenForRetry(token, info);
        } catch {
          throw error;
        }
      }
    }
  }

  private async resignedOnClockSkew<T>(exchange: () => Promise<T>): Promise<T> {
    try {
      return await exchange();
    } catch (error) {
      if (!(error as S3ResponseError).$metadata?.clockSkewCorrected) throw error;
      return exchange();
    }
  }

  private async sign(method: Method, key: string, headers: Record<string, string>): Promise<Signed> {
    const path = this.basePath + encodeKeyPath(key);
    const clockOffsetMs = this.clockOffsetMs;
    const request = new HttpRequest({ method, protocol: 'https:', hostname: this.host, path, headers: { host: this.host, 'x-amz-content-sha256': EMPTY_SHA256, ...headers } });
    const signed = await this.signer.sign(request, { signingDate: new Date(Date.now() + clockOffsetMs) });
    return { path, headers: signed.headers, clockOffsetMs };
  }

  /** Takes the server's clock from an answer (as the SDK does); true when the request was signed minutes off it. */
  private noteServerClock(headers: Answer['headers'], sentAt: number, signedWith: number): boolean {
    const date = headerText(headers.date);
    if (!date) return false;
    this.clockOffsetMs = serverClockOffset(date, this.clockOffsetMs, sentAt, headerText(headers.age));
    return Math.abs(this.clockOffsetMs - signedWith) >= CLOCK_SKEW_MS;
  }

  /**
   * One exchange under one deadline. Buffered answers (everything but GET's body) resolve once the last byte
   * arrived; an error status rejects with the S3 error it carries. A streamed answer resolves at the headers,
   * and its body carries the rest of the deadline.
   */
  private async attempt(method: Method, key: string, signing: Promise<Signed>, body: Buffer | undefined, stream: boolean): Promise<Answer & { body?: Readable }> {
    const { path, headers, clockOffsetMs } = await signing;
    const { meter, requestTimeoutMs: ms } = this.options;
    const sentAt = Date.now();
    this.options.onRequest?.(COMMANDS[method]);
    meter.requests++;
    meter.inFlight++;
    const started = performance.now();
    return new Promise((resolve, reject) => {
      let controller: Dispatcher.DispatchController | undefined;
      let cancelled: Error | undefined;
      let answer: Answer | undefined;
      let streamed: Readable | undefined;
      let skewed = false;
      const chunks: Buffer[] = [];
      let waited = false;
      let finished = false;
      const noteWait = () => {
        if (waited) return;
        waited = true;
        meter.recordWait(performance.now() - started);
      };
      const finish = () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        noteWait();
        meter.inFlight--;
        meter.recordLatency(performance.now() - started);
      };
      const fail = (error: Error) => {
        finish();
        if (streamed) streamed.destroy(error);
        else reject(error);
      };
      const timer = setTimeout(() => {
        meter.timedOut++;
        const error = deadlineError(ms, answer ? 'while the body was arriving' : 'before the answer');
        // Not yet on a socket: it is dropped as soon as one is handed to it.
        if (controller) controller.abort(error);
        else cancelled = error;
        fail(error);
      }, ms);
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart: (control) => {
          controller = control;
          noteWait();
          if (cancelled) control.abort(cancelled);
        },
        onResponseStart: (control, status, responseHeaders) => {
          if (status < 200) return;
          answer = { status, headers: responseHeaders as Answer['headers'] };
          skewed = this.noteServerClock(answer.headers, sentAt, clockOffsetMs);
          if (stream && status < 300) {
            streamed = new Readable({
              read: () => control.resume(),
              destroy: (error, callback) => {
                // A reader that stops early (or a failure) frees the socket instead of draining it.
                if (!finished) {
                  control.abort(error ?? new Error('download abandoned'));
                  finish();
                }
                callback(error);
              },
            });
            resolve({ ...answer, body: streamed });
          }
        },
        onResponseData: (control, chunk) => {
          if (streamed) {
            if (!streamed.push(chunk)) control.pause();
          } else chunks.push(chunk);
        },
        onResponseEnd: () => {
          finish();
          if (streamed) {
            streamed.push(null);
            return;
          }
          if (!answer) return reject(new Error(`${method} ${key}: the answer ended without a status`));
          if (answer.status >= 300) {
            const error = errorFrom(answer, Buffer.concat(chunks), method);
            // Refused for its signing time (RequestTimeTooSkewed, or a signature refused by a server that says
            // only that): it was not acted on, and the corrected clock signs the next attempt.
            if (skewed && (answer.status === 403 || error.name === 'RequestTimeTooSkewed')) error.$metadata.clockSkewCorrected = true;
            reject(error);
          }
          else resolve(answer);
        },
        onResponseError: (_control, error) => {
          if (finished && !streamed) return;
          fail(error);
        },
      };
      try {
        this.pool.dispatch({ origin: this.origin, path, method, headers, body }, handler);
      } catch (error) {
        fail(error as Error);
      }
    });
  }
}
