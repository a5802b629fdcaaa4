import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { createGunzip, gunzip, gzip } from 'node:zlib';
import { sha256Hex } from '../hashing.ts';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/**
 * Optional compression of stored objects (`migrate --compress gzip`). A compressed object's bytes are the
 * gzip stream, with no Content-Encoding header: nothing between R2 and a reader (Cloudflare may hand an object
 * stored with `Content-Encoding: gzip` back decompressed to a client that did not ask for gzip) can change
 * what a GET returns, so lengths and ETags stay those of the stored bytes. The metadata says what they are:
 * `encoding: gzip`, `content-size` (the decoded length) and, as on every object, `sha256` of the decoded
 * content. Readers decode by that metadata, and also accept bytes someone already decoded (see decodedBody).
 */
export type ContentEncoding = 'gzip';

export const ENCODING_KEY = 'encoding';
export const CONTENT_SIZE_KEY = 'content-size';

/** Compress only when it saves at least this share of the bytes (and the content is at least MIN_BYTES). */
export const MIN_SAVING = 0.1;
export const MIN_BYTES = 1024;

export interface EncodedBody {
  body: Buffer;
  encoding?: ContentEncoding;
}

/**
 * The bytes to store for `content`: gzip when asked and worth it, else the content as it is. zlib runs on
 * the thread pool, off the event loop. The compressed bytes are decoded again and must give back the
 * content's SHA-256, so what is stored is proven to decode to the content, not only to be what was sent.
 */
export async function encodeForStore(content: Buffer, mode: ContentEncoding | undefined, sha256 = sha256Hex(content)): Promise<EncodedBody> {
  if (mode !== 'gzip' || content.length < MIN_BYTES) return { body: content };
  const compressed = await gzipAsync(content, { level: 6 });
  if (compressed.length > content.length * (1 - MIN_SAVING)) return { body: content };
  if (sha256Hex(await gunzipAsync(compressed)) !== sha256) return { body: content };
  return { body: compressed, encoding: 'gzip' };
}

/** Whether a sample of a content is worth compressing (the same rule, for streams that decide on their start). */
export async function worthCompressing(sample: Buffer): Promise<boolean> {
  if (sample.length === 0) return false;
  const compressed = await gzipAsync(sample, { level: 6 });
  return compressed.length <= sample.length * (1 - MIN_SAVING);
}

export function encodingMetadata(encoding: ContentEncoding | undefined, contentSize: number): Record<string, string> {
  return encoding ? { [ENCODING_KEY]: encoding, [CONTENT_SIZE_KEY]: String(contentSize) } : {};
}

/** The encoding an object's response declares, by our metadata or by a Content-Encoding header. */
export function declaredEncoding(metadata: Record<string, string> | undefined, contentEncoding: string | undefined): ContentEncoding | undefined {
  if (metadata?.[ENCODING_KEY] === 'gzip' || /(^|,)\s*gzip\s*$/i.test(contentEncoding ?? '')) return 'gzip';
  return undefined;
}

const GZIP_MAGIC = [0x1f, 0x8b];

/**
 * The decoded bytes of a GET's body. A body declared gzip is gunzipped when it starts with the gzip magic
 * bytes; one that does not was decoded on the way already (a UTF-8 text cannot start with 0x1f 0x8b) and is
 * passed through. Either way the caller hashes what comes out and checks it against content_hash.
 * `raw` counts the bytes received, for the truncation check against Content-Length.
 */
export async function* decodedBody(body: AsyncIterable<Buffer>, encoding: ContentEncoding | undefined, raw: { bytes: number }): AsyncGenerator<Buffer> {
  const counted = (async function* () {
    for await (const chunk of body) {
      raw.bytes += chunk.length;
      yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    }
  })();
  if (!encoding) {
    yield* counted;
    return;
  }
  const first = await counted.next();
  if (first.done) return;
  const head = first.value;
  const rest = (async function* () {
    yield head;
    yield* counted;
  })();
  if (head.length >= 2 && head[0] === GZIP_MAGIC[0] && head[1] === GZIP_MAGIC[1]) {
    const gunzip = Readable.from(rest).pipe(createGunzip());
    for await (const chunk of gunzip) yield chunk as Buffer;
    return;
  }
  yield* rest;
}
