import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { Upload } from '@aws-sdk/lib-storage';
import { IntegrityError, ObjectConflictError, ObjectStoreError } from '../errors.ts';
import { cleanEtag, hexToBase64, md5Hex, MultipartEtag } from '../hashing.ts';
import { describeS3Error, isKeyWriteLimited, isNotFound, isPreconditionFailed, KEY_WRITE_INTERVAL_MS } from './client.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { ourMetadata, type ObjectHead } from './ownership.ts';
import { encodingMetadata, worthCompressing, type ContentEncoding } from './encoding.ts';
import { createGunzip, createGzip } from 'node:zlib';
import { partSizeFor } from './parts.ts';
import type { StoreCore } from './core.ts';

/**
 * What a write may do to the key it targets. Every write is conditional (R2 honours `If-None-Match: *` and
 * `If-Match` on PutObject and CompleteMultipartUpload), so an object someone else wrote in the meantime
 * makes the write fail instead of being replaced:
 * - `create`: the key should be free. If it holds exactly these bytes, written by us (an earlier attempt whose
 *   answer was lost, a run killed before its flip), that object is adopted. If it holds other bytes written by
 *   us, it is replaced under `If-Match` on its ETag, provided `mayReplaceOurs` agrees (no row names it);
 *   without it, such an object is left alone and the write refused.
 * - `replace-ours`: the key holds our object, which the row names and which is stale; it is replaced under
 *   `If-Match` on the ETag it had when we looked.
 * An object without our marker (the app's Phase 1 model writes the same keys) is never replaced: the write
 * fails with ObjectConflictError and the row keeps its database content.
 */
export type WriteIntent = { kind: 'create'; mayReplaceOurs?: (key: string) => Promise<boolean> } | { kind: 'replace-ours' };

export const CREATE: WriteIntent = { kind: 'create' };

export interface PutResult {
  etag: string;
  size: number;
  /** True when the ETag could not prove the bytes and they were read back and hashed instead. */
  readBack: boolean;
  /** The key already held exactly these bytes (proven); nothing was uploaded. */
  adopted: boolean;
  /** The adopted object was written by someone else (the app): the row may name it, but it never becomes ours to replace or delete. */
  foreign?: boolean;
}

type Condition = { IfNoneMatch: '*' } | { IfMatch: string };

const ATTEMPTS = 4;

interface Sent {
  etag: string;
  /** The server's ETag proves the stored bytes (our MD5, or the multipart composite of our part MD5s). */
  proven: boolean;
  /** Bytes stored, when only the upload itself could tell (a stream compressed on the way). */
  storedSize?: number;
}

interface Body {
  /** Bytes stored (compressed, for a compressed object). */
  size: number;
  /** The content's own length and SHA-256 (what a decoded read must give back). */
  contentSize: number;
  sha256: string;
  send(condition: Condition): Promise<Sent>;
  /** MD5 of the bytes when known (in-memory bodies), to prove an object already there without reading it. */
  md5?: string;
}

/** One object to write: its key, the content's SHA-256, its Content-Type, and what may already be there (CREATE if unsaid). */
interface PutRequest {
  key: string;
  sha256: string;
  contentType: string;
  intent?: WriteIntent;
}

/** An in-memory body; with `encoded`, the encoded (compressed) form of a content of `contentSize` bytes. */
export interface BufferPut extends PutRequest {
  body: Buffer;
  encoded?: { encoding: ContentEncoding; contentSize: number };
}

/** A body too large to hold: `open` gives its `size` bytes afresh for each attempt; `compress` may store it encoded. */
export interface StreamPut extends PutRequest {
  open: () => AsyncIterable<Buffer>;
  size: number;
  compress?: ContentEncoding;
}

/**
 * Uploads an in-memory body under `intent` and proves the server stored exactly these bytes. With
 * `encoding`, `body` is the encoded (compressed) form of a content of `contentSize` bytes hashing to `sha256`.
 */
export function putBuffer(core: StoreCore, { key, body, sha256, contentType, intent = CREATE, encoded }: BufferPut): Promise<PutResult> {
  const md5 = md5Hex(body);
  return writeGuarded(core, key, intent, {
    size: body.length,
    contentSize: encoded?.contentSize ?? body.length,
    sha256,
    md5,
    send: async (condition) => {
      const sent = await core.objects.put(key, body, {
        contentType,
        contentMd5: hexToBase64(md5),
        // The content's SHA-256 is the body's own unless the body is its compressed form.
        bodySha256: encoded ? undefined : sha256,
        metadata: { ...ourMetadata(sha256), ...encodingMetadata(encoded?.encoding, encoded?.contentSize ?? body.length) },
        ...('IfNoneMatch' in condition ? { ifNoneMatch: condition.IfNoneMatch } : { ifMatch: condition.IfMatch }),
      });
      const etag = cleanEtag(sent.etag);
      return { etag, proven: etag === md5 };
    },
  });
}

/**
 * Streams a body too large to hold (multipart through lib-storage, part by part, so memory stays at about two
 * parts). `open` is called once per attempt; the streamed bytes must hash to `expectedSha256`. With
 * `compress`, the first 64 KiB decide (by the rule encodeForStore applies to a whole body) whether the stream is stored
 * gzip-compressed; the SHA-256 is always the content's, the MD5 and part digests those of the bytes stored.
 */
export function putStream(core: StoreCore, { key, open, sha256: expectedSha256, size: expectedSize, contentType, intent = CREATE, compress }: StreamPut): Promise<PutResult> {
  return writeGuarded(core, key, intent, {
    size: expectedSize,
    contentSize: expectedSize,
    sha256: expectedSha256,
    send: async (condition) => {
      const sha = createHash('sha256');
      const md5 = createHash('md5');
      const partSize = partSizeFor(expectedSize, core.partSize);
      const multipartEtag = new MultipartEtag(partSize);
      let size = 0;
      let stored = 0;
      const content = (async function* () {
        for await (const chunk of open()) {
          sha.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      })();
      // Look at the start of the content to decide, then put it back in front of the rest.
      const head: Buffer[] = [];
      let headBytes = 0;
      while (compress && headBytes < SAMPLE_BYTES) {
        const next = await content.next();
        if (next.done) break;
        head.push(next.value);
        headBytes += next.value.length;
      }
      const encoding = compress && (await worthCompressing(Buffer.concat(head))) ? compress : undefined;
      // The compressed stream is decoded again as it goes out: its decoded SHA-256 must be the content's.
      const decodedSha = encoding ? createHash('sha256') : undefined;
      const check = decodedSha ? createGunzip() : undefined;
      check?.on('data', (chunk: Buffer) => decodedSha!.update(chunk));
      const checked = check ? new Promise<void>((resolve, reject) => check.on('end', resolve).on('error', reject)) : Promise.resolve();
      // Awaited once the upload is done; until then a failure must not count as unhandled.
      checked.catch(() => undefined);
      const whole = Readable.from(
        (async function* () {
          yield* head;
          yield* content;
        })(),
      );
      const encoded = encoding ? whole.pipe(createGzip({ level: 6 })) : whole;
      const source = Readable.from(
        (async function* () {
          try {
            for await (const chunk of encoded as AsyncIterable<Buffer>) {
              md5.update(chunk);
              multipartEtag.update(chunk);
              check?.write(chunk);
              stored += chunk.length;
              yield chunk;
            }
            check?.end();
          } finally {
            // An abandoned upload must end the content's read too (its cursor holds a pooled connection).
            whole.destroy();
          }
        })(),
      );
      const upload = new Upload({
        client: core.client,
        queueSize: 1,
        partSize,
        leavePartsOnError: false,
        // lib-storage passes these to PutObject (one part) or CompleteMultipartUpload (several).
        params: {
          Bucket: core.bucket,
          Key: key,
          Body: source,
          ContentType: contentType,
          Metadata: { ...ourMetadata(expectedSha256), ...encodingMetadata(encoding, expectedSize) },
          ...condition,
        },
      });
      const etag = cleanEtag((await upload.done()).ETag);
      if (size !== expectedSize || sha.digest('hex') !== expectedSha256) {
        throw new IntegrityError(`content of ${key} changed while it was streamed (${size} bytes, expected ${expectedSize}); it will be retried on the next run`, key);
      }
      await checked;
      if (decodedSha && decodedSha.digest('hex') !== expectedSha256) {
        throw new IntegrityError(`the compressed stream of ${key} does not decode to its content; it is not used`, key);
      }
      return { etag, proven: etag === md5.digest('hex') || etag === multipartEtag.digest(), storedSize: stored };
    },
  });
}

/** How much of a streamed content decides whether it is worth compressing. */
const SAMPLE_BYTES = 64 * 1024;

async function writeGuarded(core: StoreCore, key: string, intent: WriteIntent, body: Body): Promise<PutResult> {
  let condition: Condition | undefined = intent.kind === 'create' ? { IfNoneMatch: '*' } : undefined;
  let lastProblem = '';
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    if (!condition) {
      const decision = await decide(core, key, intent, body, await core.head(key));
      if ('adopted' in decision) return decision.adopted;
      condition = decision.condition;
    }
    let sent: Sent;
    try {
      sent = await body.send(condition);
    } catch (error) {
      if (error instanceof IntegrityError) throw error;
      // The condition failed: someone wrote (or removed) the key since we looked. Look again.
      if (isPreconditionFailed(error) || ('IfMatch' in condition && isNotFound(error))) {
        condition = undefined;
        lastProblem = 'the key kept changing under our conditional writes';
        continue;
      }
      // Still refused as a second write within a second after the retries (R2's per-key limit): someone wrote
      // the key just now, perhaps our own attempt whose answer was lost. Once the second is over, look again.
      if (isKeyWriteLimited(error)) {
        await sleep(KEY_WRITE_INTERVAL_MS);
        condition = undefined;
        lastProblem = 'the key was written again and again within a second';
        continue;
      }
      throw new ObjectStoreError(`upload of ${key} failed: ${describeS3Error(error)}`, key, { cause: error });
    }
    if (sent.proven) return { etag: sent.etag, size: sent.storedSize ?? body.size, readBack: false, adopted: false };
    // Not an MD5 ETag (some servers use other schemes): read the object back and hash it.
    if (!/^[0-9a-f]{32}(-[0-9]+)?$/.test(sent.etag)) {
      const check = await core.readAndHash(key);
      if (check.sha256 === body.sha256 && check.size === body.contentSize) return { etag: sent.etag, size: sent.storedSize ?? body.size, readBack: true, adopted: false };
      lastProblem = `read-back SHA-256 ${check.sha256.slice(0, 12)}… (${check.size} bytes) differs from ours`;
    } else {
      lastProblem = `server ETag ${sent.etag} differs from our MD5`;
    }
    // What we just stored is ours and wrong: replace it, but only while it is still what we stored.
    condition = { IfMatch: sent.etag };
  }
  throw new IntegrityError(`upload of ${key} could not be completed and verified after ${ATTEMPTS} attempts: ${lastProblem}`, key);
}

async function decide(core: StoreCore, key: string, intent: WriteIntent, body: Body, head: ObjectHead | undefined): Promise<{ adopted: PutResult } | { condition: Condition }> {
  if (!head) return { condition: { IfNoneMatch: '*' } };
  if (!head.ours) {
    // The app's Phase 1 model writes these keys too. Its object is never replaced; if it holds exactly this
    // content (proven by its MD5 ETag, else by reading it back), the row may name it as it is.
    if (!head.encoding && head.size === body.contentSize) {
      if (body.md5 !== undefined && body.size === body.contentSize && head.etag === body.md5) {
        return { adopted: { etag: head.etag, size: head.size, readBack: false, adopted: true, foreign: true } };
      }
      const check = await core.readAndHash(key);
      if (check.sha256 === body.sha256 && check.size === body.contentSize) return { adopted: { etag: head.etag, size: head.size, readBack: true, adopted: true, foreign: true } };
    }
    throw new ObjectConflictError(
      `the object at ${key} was written by someone else (no overskill-storage marker), most likely the app itself, and holds other bytes than this row; it is not replaced, and the row keeps its database content`,
      key,
    );
  }
  // Our object with this content, stored compressed or not (a rerun with or without --compress): adopted.
  if (!head.tombstone && head.contentSize === body.contentSize && head.sha256 === body.sha256) {
    if (body.md5 !== undefined && head.etag === body.md5) return { adopted: { etag: head.etag, size: head.size, readBack: false, adopted: true } };
    const check = await core.readAndHash(key);
    if (check.sha256 === body.sha256 && check.size === body.contentSize) return { adopted: { etag: head.etag, size: head.size, readBack: true, adopted: true } };
  }
  if (intent.kind === 'create' && !(await intent.mayReplaceOurs?.(key))) {
    throw new ObjectConflictError(`an older object of ours with other content is at ${key}, and it may not be replaced here; it is left as it is`, key);
  }
  return { condition: { IfMatch: head.etag } };
}
