import http from 'node:http';
import https from 'node:https';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  S3Client,
  PutObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  DeleteObjectsCommand,
  CopyObjectCommand,
  type PutObjectCommandInput,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { ObjectStoreConfig } from './config.ts';
import { ConfigError, IntegrityError, ObjectStoreError, errorMessage } from './errors.ts';
import { cleanEtag, hexToBase64, md5Hex, MultipartEtag, sha256Hex } from './hashing.ts';
import { redact } from './secrets.ts';

export interface ObjectStoreOptions {
  /** Sockets kept open to the endpoint; at least the upload concurrency. */
  maxSockets?: number;
  /** SDK attempts per request (standard retry mode: exponential backoff with jitter on throttling, 5xx, network errors). */
  maxAttempts?: number;
  /** Whole request+response limit; a black-holed request fails after this and is retried. */
  requestTimeoutMs?: number;
  connectionTimeoutMs?: number;
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

export interface PutResult {
  etag: string;
  size: number;
  /** True when the ETag could not prove the bytes and they were read back and hashed instead. */
  readBack: boolean;
}

export const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
const UPLOAD_VERIFY_ATTEMPTS = 3;
const READ_ATTEMPTS = 3;

/**
 * The one module that talks to the bucket. It owns the client (timeouts, retries, checksum settings),
 * and it verifies every byte it relies on: an upload counts only when the server's ETag equals our MD5
 * (or, for multipart, our composite MD5, else a read-back hash); a download counts only when its SHA-256
 * and length match what the caller expects.
 */
export class ObjectStore {
  readonly client: S3Client;
  readonly bucket: string;
  private readonly partSize: number;
  private readonly onRequest?: (command: string) => void;

  constructor(config: ObjectStoreConfig, options: ObjectStoreOptions = {}) {
    this.bucket = config.bucket;
    this.partSize = options.partSize ?? DEFAULT_PART_SIZE;
    this.onRequest = options.onRequest;
    const maxSockets = Math.max(8, options.maxSockets ?? 32);
    const agentOptions = { keepAlive: true, maxSockets, keepAliveMsecs: 1000 };
    this.client = new S3Client({
      endpoint: config.endpoint,
      region: config.region,
      forcePathStyle: true,
      credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
      // Checksums are ours to compute and send explicitly; the SDK's defaults would frame streamed
      // bodies as aws-chunked, which S3-compatible servers do not all understand.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: options.maxAttempts ?? 5,
      retryMode: 'standard',
      requestHandler: new NodeHttpHandler({
        httpAgent: new http.Agent(agentOptions),
        httpsAgent: new https.Agent(agentOptions),
        connectionTimeout: options.connectionTimeoutMs ?? 5_000,
        requestTimeout: options.requestTimeoutMs ?? 60_000,
        throwOnRequestTimeout: true,
      }),
    });
    if (this.onRequest) {
      const count = this.onRequest;
      this.client.middlewareStack.add(
        (next, context) => async (args) => {
          count(String(context.commandName ?? 'unknown'));
          return next(args);
        },
        { step: 'finalizeRequest', name: 'overskillRequestCounter', priority: 'low' },
      );
    }
  }

  destroy(): void {
    this.client.destroy();
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
      throw new ConfigError(`Cannot reach the object store: ${describeS3Error(error)}`);
    }
  }

  /** Uploads an in-memory body and proves the server stored exactly these bytes. */
  async putVerified(key: string, body: Buffer, sha256: string, contentType: string): Promise<PutResult> {
    const md5 = md5Hex(body);
    let lastProblem = '';
    for (let attempt = 1; attempt <= UPLOAD_VERIFY_ATTEMPTS; attempt++) {
      let etag: string;
      try {
        const input: PutObjectCommandInput = {
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentLength: body.length,
          ContentType: contentType,
          ContentMD5: hexToBase64(md5),
          Metadata: { sha256 },
        };
        const result = await this.client.send(new PutObjectCommand(input));
        etag = cleanEtag(result.ETag);
      } catch (error) {
        throw new ObjectStoreError(`upload of ${key} failed: ${describeS3Error(error)}`, key, { cause: error });
      }
      if (etag === md5) return { etag, size: body.length, readBack: false };
      // Not an MD5 ETag (some servers use other schemes): read the object back and hash it.
      if (!/^[0-9a-f]{32}$/.test(etag)) {
        const check = await this.readAndHash(key);
        if (check.sha256 === sha256 && check.size === body.length) return { etag, size: body.length, readBack: true };
        lastProblem = `read-back SHA-256 ${check.sha256.slice(0, 12)}… (${check.size} bytes) differs from ours`;
      } else {
        lastProblem = `server ETag ${etag} differs from our MD5 ${md5}`;
      }
    }
    throw new IntegrityError(`upload of ${key} could not be verified after ${UPLOAD_VERIFY_ATTEMPTS} attempts: ${lastProblem}`, key);
  }

  /**
   * Streams a body too large to hold (multipart, part by part, so memory stays at about two parts).
   * `expectedSha256` is the content's hash as the database computed it; the streamed bytes must match it.
   */
  async putStreamVerified(
    key: string,
    chunks: AsyncIterable<Buffer>,
    expectedSha256: string,
    expectedSize: number,
    contentType: string,
  ): Promise<PutResult> {
    const sha = createHash('sha256');
    const md5 = createHash('md5');
    const multipartEtag = new MultipartEtag(this.partSize);
    let size = 0;
    const source = Readable.from(
      (async function* () {
        for await (const chunk of chunks) {
          sha.update(chunk);
          md5.update(chunk);
          multipartEtag.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      })(),
    );
    let etag: string;
    try {
      const upload = new Upload({
        client: this.client,
        queueSize: 1,
        partSize: this.partSize,
        leavePartsOnError: false,
        params: { Bucket: this.bucket, Key: key, Body: source, ContentType: contentType, Metadata: { sha256: expectedSha256 } },
      });
      const result = await upload.done();
      etag = cleanEtag(result.ETag);
    } catch (error) {
      throw new ObjectStoreError(`upload of ${key} failed: ${describeS3Error(error)}`, key, { cause: error });
    }
    const streamedSha = sha.digest('hex');
    if (size !== expectedSize || streamedSha !== expectedSha256) {
      throw new IntegrityError(`content of ${key} changed while it was streamed (${size} bytes, expected ${expectedSize}); it will be retried on the next run`, key);
    }
    if (etag === md5.digest('hex') || etag === multipartEtag.digest()) return { etag, size, readBack: false };
    const check = await this.readAndHash(key);
    if (check.sha256 === expectedSha256 && check.size === expectedSize) return { etag, size, readBack: true };
    throw new IntegrityError(`upload of ${key} stored different bytes (read-back SHA-256 ${check.sha256.slice(0, 12)}…)`, key);
  }

  /** Downloads and hashes an object without keeping it (deep verify, finalize's read-back). */
  async readAndHash(key: string): Promise<{ sha256: string; size: number; metadataSha256?: string }> {
    return this.withReadRetries(key, async () => {
      const result = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of result.Body as Readable) {
        hash.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      if (result.ContentLength !== undefined && size !== result.ContentLength) {
        throw new ObjectStoreError(`download of ${key} was truncated (${size} of ${result.ContentLength} bytes)`, key);
      }
      return { sha256: hash.digest('hex'), size, metadataSha256: result.Metadata?.sha256 };
    });
  }

  /** Downloads an object whole and checks it against the expected hash; for bodies the caller must hold. */
  async getVerified(key: string, expectedSha256: string | null): Promise<Buffer> {
    return this.withReadRetries(key, async () => {
      const result = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const parts: Buffer[] = [];
      for await (const chunk of result.Body as Readable) parts.push(chunk as Buffer);
      const body = Buffer.concat(parts);
      if (result.ContentLength !== undefined && body.length !== result.ContentLength) {
        throw new ObjectStoreError(`download of ${key} was truncated (${body.length} of ${result.ContentLength} bytes)`, key);
      }
      const expected = expectedSha256 ?? result.Metadata?.sha256;
      if (!expected) throw new IntegrityError(`object ${key} has no SHA-256 to check it against`, key);
      const actual = sha256Hex(body);
      if (actual !== expected) throw new IntegrityError(`object ${key} does not match its SHA-256 (stored bytes hash to ${actual.slice(0, 12)}…, expected ${expected.slice(0, 12)}…)`, key);
      return body;
    }, (error) => !(error instanceof IntegrityError));
  }

  /** Streams an object's bytes (chunk by chunk) for callers that hash as they go. */
  async getStream(key: string): Promise<{ body: AsyncIterable<Buffer>; size?: number; metadataSha256?: string }> {
    const result = await this.withReadRetries(key, () => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key })));
    return { body: result.Body as AsyncIterable<Buffer>, size: result.ContentLength, metadataSha256: result.Metadata?.sha256 };
  }

  async head(key: string): Promise<{ size: number; etag: string; sha256?: string; lastModified?: Date } | undefined> {
    try {
      const result = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: result.ContentLength ?? 0, etag: cleanEtag(result.ETag), sha256: result.Metadata?.sha256, lastModified: result.LastModified };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw new ObjectStoreError(`HEAD ${key} failed: ${describeS3Error(error)}`, key, { cause: error });
    }
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

  /** Deletes keys in DeleteObjects batches of up to 1000; returns the keys that could not be deleted. */
  async deleteMany(keys: string[]): Promise<{ deleted: string[]; failed: { key: string; reason: string }[] }> {
    const deleted: string[] = [];
    const failed: { key: string; reason: string }[] = [];
    for (let start = 0; start < keys.length; start += 1000) {
      const slice = keys.slice(start, start + 1000);
      try {
        const result = await this.client.send(
          new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: slice.map((Key) => ({ Key })), Quiet: false } }),
        );
        const errors = new Map((result.Errors ?? []).map((error) => [error.Key ?? '', error.Message ?? error.Code ?? 'error']));
        for (const key of slice) {
          if (errors.has(key)) failed.push({ key, reason: errors.get(key)! });
          else deleted.push(key);
        }
      } catch (error) {
        for (const key of slice) failed.push({ key, reason: describeS3Error(error) });
      }
    }
    return { deleted, failed };
  }

  async copy(sourceKey: string, targetKey: string): Promise<void> {
    try {
      await this.client.send(
        new CopyObjectCommand({ Bucket: this.bucket, Key: targetKey, CopySource: `${this.bucket}/${encodeURIComponent(sourceKey).replace(/%2F/g, '/')}`, MetadataDirective: 'COPY' }),
      );
    } catch (error) {
      throw new ObjectStoreError(`copy of ${sourceKey} to ${targetKey} failed: ${describeS3Error(error)}`, sourceKey, { cause: error });
    }
  }

  /** The SDK cannot replay a response body that broke mid-stream, so downloads get their own few attempts. */
  private async withReadRetries<T>(key: string, read: () => Promise<T>, retryable: (error: unknown) => boolean = () => true): Promise<T> {
    let lastError: unknown;
    for (let attempt = 1; attempt <= READ_ATTEMPTS; attempt++) {
      try {
        return await read();
      } catch (error) {
        lastError = error;
        if (isNotFound(error)) throw new ObjectStoreError(`object ${key} is missing`, key, { cause: error });
        if (!retryable(error) || attempt === READ_ATTEMPTS) break;
        await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt * (0.5 + Math.random())));
      }
    }
    if (lastError instanceof ObjectStoreError || lastError instanceof IntegrityError) throw lastError;
    throw new ObjectStoreError(`download of ${key} failed: ${describeS3Error(lastError)}`, key, { cause: lastError });
  }
}

export function isNotFound(error: unknown): boolean {
  const err = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return err?.name === 'NoSuchKey' || err?.name === 'NotFound' || err?.$metadata?.httpStatusCode === 404;
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
