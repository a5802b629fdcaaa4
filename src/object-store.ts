import { createHash, randomBytes } from 'node:crypto';
import {
  S3Client,
  HeadBucketCommand,
  ListObjectsV2Command,
  ListMultipartUploadsCommand,
  AbortMultipartUploadCommand,
  CopyObjectCommand,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3';
import type { ObjectStoreConfig } from './config.ts';
import { ConfigError, IntegrityError, ObjectStoreError } from './errors.ts';
import { cleanEtag, sha256Hex } from './hashing.ts';
import { BucketPace, type PaceSnapshot } from './store/bucket-pace.ts';
import { certificateErrorCode, certificateSentence } from './store/network.ts';
import { createS3Client, paceClient, describeS3Error, isNotFound, retryDelayMs, requestBoundMs, StoppableRetryStrategy, DEFAULT_CONNECTION_TIMEOUT_MS, DEFAULT_MAX_ATTEMPTS, DEFAULT_REQUEST_TIMEOUT_MS, type ClientOptions } from './store/client.ts';
import { Meter, type TransportStats } from './store/meter.ts';
import { ObjectRequests, headerText, metadataOf } from './store/object-requests.ts';
import { headFromMetadata, type ObjectHead } from './store/ownership.ts';
import { putBuffer, putStream, type BufferPut, type PutResult, type StreamPut } from './store/writes.ts';
import { deleteIfOurs, type DeleteExpectation, type GuardedDelete } from './store/deletes.ts';
import type { StoreCore } from './store/core.ts';
import { CONTENT_SIZE_KEY, declaredEncoding, decodedBody, type ContentEncoding } from './store/encoding.ts';
import { DEFAULT_PART_SIZE } from './store/parts.ts';

export { DEFAULT_PART_SIZE, partSizeFor } from './store/parts.ts';

export { describeS3Error, isNotFound } from './store/client.ts';
export type { TransportStats } from './store/meter.ts';
export type { BufferPut, PutResult, StreamPut, WriteIntent } from './store/writes.ts';
export type { ObjectHead } from './store/ownership.ts';
export type { GuardedDelete, DeleteExpectation } from './store/deletes.ts';

export interface ObjectStoreOptions extends ClientOptions {
  /** Multipart part size for streamed bodies. */
  partSize?: number;
  /** Counts every request sent, by command name (benchmarks and tests read it). */
  onRequest?: (command: string) => void;
}

export interface StoredObject {
  key: string;
  size: number;
  etag: string;
  lastModified?: Date;
}

/**
 * The key as x-amz-copy-source names it: percent-encoded, except the characters a URL path may carry as
 * they are (`/`, and `@ : , ; $ = &`). S3 and R2 decode the header fully; some servers decode it as a URI
 * (reserved characters stay encoded), and both read these the same way.
 */
function copySourcePath(key: string): string {
  return encodeURIComponent(key).replace(/%(2F|40|3A|2C|3B|24|3D|26)/g, (escape) => decodeURIComponent(escape));
}

/** A download shorter than the stored object was cut off: never taken for the whole. */
function assertWhole(key: string, received: number, expected: number | undefined): void {
  if (expected !== undefined && received !== expected) throw new ObjectStoreError(`download of ${key} was truncated (${received} of ${expected} bytes)`, key);
}

/**
 * The one door to the bucket. It owns the clients (timeouts, retries, checksum settings) and verifies every
 * byte it relies on. Writes and deletes are guarded by conditions and by our writer marker
 * (store/writes.ts, store/deletes.ts): nothing this tool cannot tell it wrote is replaced or deleted.
 * Downloads count only when their SHA-256 and length match what the caller expects.
 */
export class ObjectStore implements StoreCore {
  /** Listings, copies, multipart uploads and the preflight's multipart probes. */
  readonly client: S3Client;
  /** The per-object requests: PUT, HEAD, GET and DELETE of one key (store/object-requests.ts). */
  readonly objects: ObjectRequests;
  readonly bucket: string;
  readonly partSize: number;
  /** Proven by the store gate's probe (store/preflight.ts); see StoreCore. */
  conditionalDeletes?: boolean;
  lastModifiedDeletes?: boolean;
  /** Attempts per request, and the longest one request can take with all of them (stall bounds derive from it). */
  readonly maxAttempts: number;
  readonly requestBoundMs: number;
  private readonly meter = new Meter();
  private readonly stopping?: AbortSignal;
  private readonly config: ObjectStoreConfig;
  /** The process's share of the bucket's request budget (store/bucket-pace.ts), over both request paths. */
  readonly pace = new BucketPace();

  constructor(config: ObjectStoreConfig, options: ObjectStoreOptions = {}) {
    this.config = config;
    this.bucket = config.bucket;
    this.partSize = options.partSize ?? DEFAULT_PART_SIZE;
    this.maxAttempts = Math.max(1, options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS);
    this.requestBoundMs = requestBoundMs(options.requestTimeoutMs, this.maxAttempts);
    this.stopping = options.stopping;
    // One retry strategy (one retry quota) and one meter for both ways requests go out.
    // A store told to send each request once (maxAttempts 1) does not resend a throttled one either.
    const throttleBoundMs = this.maxAttempts > 1 ? this.requestBoundMs : 0;
    const retryStrategy = new StoppableRetryStrategy(this.maxAttempts, retryDelayMs, this.stopping, throttleBoundMs ? { pace: this.pace, boundMs: throttleBoundMs } : undefined);
    const maxSockets = Math.max(8, options.maxSockets ?? 32);
    this.client = createS3Client(config, { ...options, maxSockets }, { meter: this.meter, retryStrategy }).client;
    paceClient(this.client, this.pace);
    this.objects = new ObjectRequests(config, {
      maxSockets,
      requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      connectionTimeoutMs: options.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
      meter: this.meter,
      retryStrategy,
      onRequest: options.onRequest,
      pace: this.pace,
      throttleBoundMs,
      stopping: this.stopping,
    });
    if (options.onRequest) {
      const count = options.onRequest;
      this.client.middlewareStack.add(
        (next, context) => async (args) => {
          count(String(context.commandName ?? 'unknown'));
          return next(args);
        },
        { step: 'finalizeRequest', name: 'overskillRequestCounter', priority: 'low' },
      );
    }
  }

  /** Requests, socket-pool queue wait, deadlines hit and latency so far. */
  transportStats(): TransportStats {
    return this.meter.snapshot();
  }

  /** The pace the bucket's budget holds this process to, and how often the bucket refused it. */
  paceSnapshot(): PaceSnapshot {
    return this.pace.snapshot();
  }

  /** Told each finished request's latency (metrics). */
  onLatency(listener: (ms: number) => void): () => void {
    this.meter.listeners.add(listener);
    return () => this.meter.listeners.delete(listener);
  }

  destroy(): void {
    this.client.destroy();
    void this.objects.destroy();
  }

  /** Fails with a ConfigError naming the problem when the bucket is missing or the credentials are refused. */
  async checkBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (error) {
      const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      const name = (error as { name?: string }).name;
      if (status === 404 || name === 'NotFound' || name === 'NoSuchBucket') throw new ConfigError(`Bucket "${this.bucket}" does not exist at the configured endpoint.`);
      if (status === 403 || status === 401) throw new ConfigError(`The object store refused the credentials for bucket "${this.bucket}": check R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY.`);
      const certificate = certificateErrorCode(error);
      if (certificate) throw new ConfigError(certificateSentence(this.config.endpoint, certificate, this.config.network ?? {}));
      throw new ConfigError(`Cannot reach the object store: ${describeS3Error(error)}`);
    }
    await this.checkSpeaksS3();
  }

  /**
   * A web server that answers 200 to everything passes HeadBucket, and would make every object look present
   * (HEAD 200) or every listing look empty (a page that is no listing): then "missing" and "lost" would be
   * said of objects the tool never saw. Two questions only S3 answers right settle it before any work: a
   * listing that names the bucket, and a 404 for a key that cannot exist.
   */
  private async checkSpeaksS3(): Promise<void> {
    const absent = `_overskill-storage/absent/${randomBytes(8).toString('hex')}`;
    const notS3 = (what: string) =>
      new ConfigError(`The endpoint for bucket "${this.bucket}" does not answer as S3 does (${what}): check R2_ENDPOINT / R2_ACCOUNT_ID. No object was judged by its answers.`);
    let listing: ListObjectsV2CommandOutput;
    try {
      listing = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: absent, MaxKeys: 1 }));
    } catch (error) {
      throw notS3(`a listing was answered ${describeS3Error(error)}`);
    }
    if (listing.Name !== this.bucket) throw notS3(`a listing of the bucket came back without the bucket's name, so it is no S3 listing`);
    let head: Awaited<ReturnType<ObjectRequests['head']>>;
    try {
      head = await this.objects.head(absent);
    } catch (error) {
      throw notS3(`a HEAD of a key that cannot exist was answered ${describeS3Error(error)}`);
    }
    if (head) throw notS3(`a HEAD of a key that cannot exist was answered ${head.status}, not 404`);
  }

  /** Uploads an in-memory body (conditionally, see WriteIntent) and proves the server stored exactly these bytes. */
  putVerified(request: BufferPut): Promise<PutResult> {
    return putBuffer(this, request);
  }

  /** Streams a body too large to hold; `open` gives the bytes afresh for each attempt. */
  putStreamVerified(request: StreamPut): Promise<PutResult> {
    return putStream(this, request);
  }

  /** Deletes the object only if we wrote it and it is still what the caller checked (store/deletes.ts). */
  deleteIfOurs(key: string, expect: DeleteExpectation = {}): Promise<GuardedDelete> {
    return deleteIfOurs(this, key, expect);
  }

  /**
   * Downloads and hashes an object without keeping it (deep verify, finalize's read-back). Compressed
   * objects are decoded: `sha256` and `size` are the content's.
   */
  async readAndHash(key: string): Promise<{ sha256: string; size: number; metadataSha256?: string }> {
    return this.withReadRetries(key, async () => {
      const result = await this.download(key);
      const hash = createHash('sha256');
      let size = 0;
      const raw = { bytes: 0 };
      for await (const chunk of decodedBody(result.body, result.encoding, raw)) {
        hash.update(chunk);
        size += chunk.length;
      }
      assertWhole(key, raw.bytes, result.contentLength);
      return { sha256: hash.digest('hex'), size, metadataSha256: result.metadata.sha256 };
    });
  }

  /** Downloads an object whole (decoded) and checks it against the expected hash; for bodies the caller must hold. */
  async getVerified(key: string, expectedSha256: string | null): Promise<Buffer> {
    return this.withReadRetries(key, async () => {
      const result = await this.download(key);
      const parts: Buffer[] = [];
      const raw = { bytes: 0 };
      for await (const chunk of decodedBody(result.body, result.encoding, raw)) parts.push(chunk);
      const body = Buffer.concat(parts);
      assertWhole(key, raw.bytes, result.contentLength);
      const expected = expectedSha256 ?? result.metadata.sha256;
      if (!expected) throw new IntegrityError(`object ${key} has no SHA-256 to check it against`, key);
      const actual = sha256Hex(body);
      if (actual !== expected) throw new IntegrityError(`object ${key} does not match its SHA-256 (stored bytes hash to ${actual.slice(0, 12)}…, expected ${expected.slice(0, 12)}…)`, key);
      return body;
    }, (error) => !(error instanceof IntegrityError));
  }

  /**
   * Streams an object's content (decoded, chunk by chunk) for callers that hash as they go. A body cut short
   * fails the stream at its end, before the caller could take it for whole.
   */
  async getStream(key: string): Promise<{ body: AsyncIterable<Buffer>; size?: number; metadataSha256?: string }> {
    const result = await this.withReadRetries(key, () => this.download(key));
    const raw = { bytes: 0 };
    const body = (async function* () {
      yield* decodedBody(result.body, result.encoding, raw);
      assertWhole(key, raw.bytes, result.contentLength);
    })();
    const declared = Number(result.metadata[CONTENT_SIZE_KEY]);
    return { body, size: result.encoding ? (Number.isSafeInteger(declared) ? declared : undefined) : result.contentLength, metadataSha256: result.metadata.sha256 };
  }

  async head(key: string): Promise<ObjectHead | undefined> {
    try {
      const answer = await this.objects.head(key);
      if (!answer) return undefined;
      const lastModified = headerText(answer.headers['last-modified']);
      return headFromMetadata(Number(headerText(answer.headers['content-length']) ?? 0), cleanEtag(headerText(answer.headers['etag'])), metadataOf(answer.headers), lastModified ? new Date(lastModified) : undefined, headerText(answer.headers['content-encoding']));
    } catch (error) {
      throw new ObjectStoreError(`HEAD ${key} failed: ${describeS3Error(error)}`, key, { cause: error });
    }
  }

  /** One GET attempt: the body as it arrives, with what its headers say about it. */
  private async download(key: string): Promise<{ body: AsyncIterable<Buffer>; contentLength?: number; metadata: Record<string, string>; encoding?: ContentEncoding }> {
    const answer = await this.objects.get(key);
    const metadata = metadataOf(answer.headers);
    const length = headerText(answer.headers['content-length']);
    return { body: answer.body, contentLength: length === undefined ? undefined : Number(length), metadata, encoding: declaredEncoding(metadata, headerText(answer.headers['content-encoding'])) };
  }

  /**
   * Lists keys under a prefix, one ListObjectsV2 page per 1000 keys. The next page is requested as soon as
   * the current one arrives, so the caller's work on a page overlaps the round trip for the next.
   */
  async *list(prefix: string, startAfter?: string): AsyncGenerator<StoredObject> {
    const fetchPage = async (continuationToken?: string, first = false): Promise<ListObjectsV2CommandOutput> => {
      try {
        return await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: continuationToken, StartAfter: first ? startAfter : undefined, MaxKeys: 1000 }),
        );
      } catch (error) {
        throw new ObjectStoreError(`listing ${prefix} failed: ${describeS3Error(error)}`, prefix, { cause: error });
      }
    };
    let pending: Promise<ListObjectsV2CommandOutput> | undefined = fetchPage(undefined, true);
    while (pending) {
      const page: ListObjectsV2CommandOutput = await pending;
      pending = page.IsTruncated && page.NextContinuationToken ? fetchPage(page.NextContinuationToken) : undefined;
      // An abandoned prefetch must not surface as an unhandled rejection.
      pending?.catch(() => undefined);
      for (const item of page.Contents ?? []) {
        if (!item.Key) continue;
        yield { key: item.Key, size: item.Size ?? 0, etag: cleanEtag(item.ETag), lastModified: item.LastModified };
      }
    }
  }

  /**
   * Incomplete multipart uploads under a prefix (ListMultipartUploads, 1,000 a page). They are billed until
   * completed or aborted; R2 aborts them itself only seven days after they began ("Object lifecycles").
   */
  async *listUploads(prefix: string): AsyncGenerator<{ key: string; uploadId: string; initiated?: Date }> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker, MaxUploads: 1000 }));
      } catch (error) {
        throw new ObjectStoreError(`listing the incomplete uploads under ${prefix} failed: ${describeS3Error(error)}`, prefix, { cause: error });
      }
      for (const upload of page.Uploads ?? []) if (upload.Key && upload.UploadId) yield { key: upload.Key, uploadId: upload.UploadId, initiated: upload.Initiated };
      if (!page.IsTruncated || (!page.NextKeyMarker && !page.NextUploadIdMarker)) return;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  /** Aborts an incomplete multipart upload; one already gone (404 NoSuchUpload) counts as aborted. */
  async abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }));
    } catch (error) {
      if (isNotFound(error) || (error as { name?: string }).name === 'NoSuchUpload') return;
      throw new ObjectStoreError(`aborting the upload of ${key} failed: ${describeS3Error(error)}`, key, { cause: error });
    }
  }

  /** Server-side copy, only while the source still has the ETag the caller saw. */
  async copy(sourceKey: string, targetKey: string, sourceEtag?: string): Promise<void> {
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: targetKey,
          CopySource: `${this.bucket}/${copySourcePath(sourceKey)}`,
          CopySourceIfMatch: sourceEtag ? `"${sourceEtag}"` : undefined,
          MetadataDirective: 'COPY',
        }),
      );
    } catch (error) {
      throw new ObjectStoreError(`copy of ${sourceKey} to ${targetKey} failed: ${describeS3Error(error)}`, sourceKey, { cause: error });
    }
  }

  /**
   * The SDK cannot replay a response body that broke (or stalled past its deadline) mid-stream, so a download
   * is one SDK attempt at a time, and its attempts, as many as any request's, are counted here.
   */
  private async withReadRetries<T>(key: string, read: () => Promise<T>, retryable: (error: unknown) => boolean = () => true): Promise<T> {
    let lastError: unknown;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      try {
        return await read();
      } catch (error) {
        lastError = error;
        if (isNotFound(error)) throw new ObjectStoreError(`object ${key} is missing`, key, { cause: error });
        // A read made without the bucket check first (`cat`) meets an untrusted certificate here: said as the check says it.
        const certificate = certificateErrorCode(error);
        if (certificate) throw new ConfigError(certificateSentence(this.config.endpoint, certificate, this.config.network ?? {}));
        if (!retryable(error) || attempt === this.maxAttempts || this.stopping?.aborted) break;
        await new Promise((resolve) => setTimeout(resolve, retryDelayMs(attempt)));
      }
    }
    if (lastError instanceof ObjectStoreError || lastError instanceof IntegrityError) throw lastError;
    throw new ObjectStoreError(`download of ${key} failed: ${describeS3Error(lastError)}`, key, { cause: lastError });
  }
}
