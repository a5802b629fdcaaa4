import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { cleanEtag, hexToBase64, md5Hex, sha256Hex } from '../hashing.ts';
import { headerText, metadataOf, type PutHeaders } from './object-requests.ts';
import type { StoreCore } from './core.ts';
import { describeS3Error, httpStatusOf } from './client.ts';

/**
 * Where the store probes write: outside apps/, so no walk of the tool's (verify, --orphans, cleanup) lists
 * them, and every probe object is deleted again before the check returns.
 */
export const PROBE_PREFIX = '_overskill-storage/probes/';

export interface StoreProperty {
  id: string;
  /** What the tool relies on, in one line. */
  property: string;
  /** Required properties gate every command that writes or deletes objects; the others only inform. */
  required: boolean;
  holds: boolean;
  /** What the store answered. */
  seen: string;
  /** What a store without the property risks (required ones). */
  risk?: string;
}

export interface StoreCheck {
  bucket: string;
  ok: boolean;
  properties: StoreProperty[];
  /** Requests the probes sent: writes (class A), reads (class B) and deletes (free). */
  requests: { classA: number; classB: number; free: number };
  /** Probe objects left behind because their delete failed (none when the store behaved). */
  leftBehind: string[];
  /** The storage class a new object lands in (x-amz-storage-class; S3 omits it for STANDARD), when a probe object was stored. */
  storageClass?: string;
  durationMs: number;
  checkedAt: string;
}

/** What a store must hold for invariant 3, and what is lost without it. */
const REQUIRED = {
  createIfNoneMatch: {
    property: 'PutObject with If-None-Match: * is refused (412) when the key exists',
    risk: "an upload of the tool's could replace an object the app just wrote: the app's newer content lost",
  },
  replaceIfMatch: {
    property: 'PutObject with If-Match is refused (412) on a different ETag',
    risk: "the tool's replacements and delete tombstones could land on an object the app rewrote",
  },
  replaceIfMatchSame: {
    property: 'PutObject with If-Match is accepted on the current ETag',
    risk: 'guarded replacements and deletes would always fail',
  },
  completeIfNoneMatch: {
    property: 'CompleteMultipartUpload with If-None-Match: * is refused (412) when the key exists',
    risk: "a large upload of the tool's could replace an object the app just wrote",
  },
  completeIfMatch: {
    property: 'CompleteMultipartUpload with If-Match is refused (412) on a different ETag',
    risk: "a large replacement could land on an object the app rewrote",
  },
  etagIsMd5: {
    property: 'the ETag of a single-part PutObject is the MD5 of its bytes',
    risk: 'the tool could not prove from the answer that the store kept the bytes it sent',
  },
  metadataRoundTrip: {
    property: 'user metadata (x-amz-meta-*) comes back as written',
    risk: "the tool could not tell its own objects from the app's, nor check a content's SHA-256",
  },
} as const;

/** What the store does that the tool adapts to, without refusing a store that does otherwise. */
const INFORMATIONAL = {
  sameKeyWriteLimited: 'a second write to a key within a second is refused (429), as R2 does',
  getDecompresses: 'GetObject returns gzip-encoded objects decompressed',
  deleteIfMatch: 'DeleteObject with If-Match is refused (412) on a different ETag, and the object kept',
  keysNormalized: 'Unicode-equivalent keys are one object (NFC), as on R2',
  storageClass: 'new objects land in the Standard storage class',
} as const;

type ProbeId = keyof typeof REQUIRED | keyof typeof INFORMATIONAL;

/** How a store answered one request: its status, or the error it raised. */
async function answer(action: () => Promise<unknown>): Promise<{ status: number; error?: unknown }> {
  try {
    await action();
    return { status: 200 };
  } catch (error) {
    return { status: httpStatusOf(error) ?? 0, error };
  }
}

function described(result: { status: number; error?: unknown }): string {
  if (!result.error) return `accepted (HTTP ${result.status})`;
  return result.status === 412 ? 'refused: 412 PreconditionFailed' : `answered ${describeS3Error(result.error)}`;
}

/**
 * Proves, with a few probe objects under PROBE_PREFIX, what this tool relies on the store for (rclone's
 * `test info` for S3 semantics): conditional creates and replaces on PutObject and on
 * CompleteMultipartUpload, ETags that are MD5s, metadata that round-trips; and, for information, whether a
 * second write to a key within a second is refused (R2's 429) and whether GETs come back decompressed.
 * The single-object probes go the way the tool's own writes and reads go (`store.objects`), the multipart
 * ones through the SDK client that uploads large rows: a property is proven on the path that relies on it.
 * Writes retry (R2 may answer 429 to the probes' own writes to one key), except the two of the same-key
 * rule, which are sent once. Never throws for what the store answers: every answer is a result.
 */
export async function probeStore(store: Pick<StoreCore, 'client' | 'objects' | 'bucket'>): Promise<StoreCheck> {
  const { client, objects, bucket } = store;
  const started = Date.now();
  const requests = { classA: 0, classB: 0, free: 0 };
  const run = `${PROBE_PREFIX}${new Date().toISOString().replace(/[:.]/g, '-')}-${randomBytes(4).toString('hex')}/`;
  const written = new Set<string>();
  const properties: StoreProperty[] = [];
  const record = (id: ProbeId, holds: boolean, seen: string) => {
    const required = id in REQUIRED ? REQUIRED[id as keyof typeof REQUIRED] : undefined;
    const property = required?.property ?? INFORMATIONAL[id as keyof typeof INFORMATIONAL];
    properties.push({ id, property, required: required !== undefined, holds, seen, ...(required ? { risk: required.risk } : {}) });
  };
  const lastWritten = new Map<string, number>();
  const put = async (key: string, body: Buffer, extra: PutHeaders = {}, retries = true) => {
    written.add(key);
    const send = async () => {
      requests.classA++;
      const out = await objects.put(key, body, { contentType: 'application/octet-stream', contentMd5: hexToBase64(md5Hex(body)), ...extra }, retries);
      lastWritten.set(key, Date.now());
      return out;
    };
    try {
      return await send();
    } catch (error) {
      // R2 takes one write per key per second, and may say so (429) before it weighs a condition: a probe of a
      // condition waits out the second since its key was written and asks once more.
      const since = lastWritten.get(key);
      if (!retries || httpStatusOf(error) !== 429 || since === undefined) throw error;
      await sleep(Math.max(0, 1100 - (Date.now() - since)));
      return send();
    }
  };
  const head = async (key: string) => {
    requests.classB++;
    const answer = await objects.head(key);
    if (!answer) throw Object.assign(new Error('the probe object is not there'), { $metadata: { httpStatusCode: 404 } });
    return { etag: headerText(answer.headers.etag) ?? '', metadata: metadataOf(answer.headers), storageClass: headerText(answer.headers['x-amz-storage-class']) ?? 'STANDARD' };
  };
  let storageClass: string | undefined;
  let createdAt = Date.now();

  // A fresh key: a conditional create must be accepted there, or nothing else can be probed.
  const key = `${run}conditions`;
  const body = Buffer.from(`overskill-storage probe ${run}`);
  const sha256 = sha256Hex(body);
  let etag: string | undefined;
  // Probed last: a store that takes one write per key per second (R2) refuses it within the second of the create.
  let replaceSame: (() => Promise<void>) | undefined;
  const created = await answer(async () => {
    createdAt = Date.now();
    const out = await put(key, body, { ifNoneMatch: '*', metadata: { writer: 'overskill-storage', sha256, probe: 'yes' } });
    etag = cleanEtag(out.etag);
  });
  if (created.error) {
    const seen = `a conditional create on a new key ${described(created)}`;
    for (const id of Object.keys(REQUIRED) as (keyof typeof REQUIRED)[]) record(id, false, seen);
  } else {
    record('etagIsMd5', etag === md5Hex(body), etag === md5Hex(body) ? `the MD5 of the bytes (${etag.slice(0, 12)}…)` : `ETag ${etag || '(none)'}, MD5 ${md5Hex(body)}`);
    const meta = await answer(async () => {
      const seen = await head(key);
      storageClass = seen.storageClass;
      const back = seen.metadata;
      if (back.sha256 !== sha256 || back.writer !== 'overskill-storage') throw Object.assign(new Error(`metadata came back as ${JSON.stringify(back)}`), { $metadata: { httpStatusCode: 200 } });
    });
    record('metadataRoundTrip', !meta.error, meta.error ? described(meta) : 'sha256 and writer came back');

    const again = await answer(() => put(key, Buffer.from('must not land'), { ifNoneMatch: '*' }));
    record('createIfNoneMatch', again.status === 412, described(again));
    const current = async () => cleanEtag((await head(key)).etag);
    etag = await current().catch(() => etag);
    const wrong = await answer(() => put(key, Buffer.from('must not land either'), { ifMatch: `"${md5Hex(Buffer.from('another etag'))}"` }));
    record('replaceIfMatch', wrong.status === 412, described(wrong));
    replaceSame = async () => {
      etag = await current().catch(() => etag);
      const same = await answer(() => put(key, body, { ifMatch: etag, metadata: { writer: 'overskill-storage', sha256, probe: 'yes' } }));
      if (same.status !== 412 || !objects.ifMatchQuoted) {
        record('replaceIfMatchSame', !same.error, described(same));
        return;
      }
      // Refused on its own ETag: a server that compares If-Match to the bare ETag (Ceph RGW 16). Asked again
      // unquoted, and kept so only if a wrong ETag unquoted is still refused.
      objects.ifMatchQuoted = false;
      const bare = await answer(() => put(key, body, { ifMatch: etag, metadata: { writer: 'overskill-storage', sha256, probe: 'yes' } }));
      etag = await current().catch(() => etag);
      const bareWrong = bare.error ? bare : await answer(() => put(key, Buffer.from('must not land either'), { ifMatch: md5Hex(Buffer.from('another etag')) }));
      const works = !bare.error && bareWrong.status === 412;
      if (!works) objects.ifMatchQuoted = true;
      record(
        'replaceIfMatchSame',
        works,
        works
          ? 'refused quoted ("etag", as HTTP writes it), accepted unquoted, which a wrong ETag still fails: this store gets If-Match unquoted'
          : `${described(same)}; unquoted: ${described(bare)}`,
      );
    };

    for (const [id, condition] of [
      ['completeIfNoneMatch', { IfNoneMatch: '*' }],
      ['completeIfMatch', { IfMatch: `"${md5Hex(Buffer.from('another etag'))}-1"` }],
    ] as const) {
      const result = await answer(async () => {
        requests.classA++;
        const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: 'application/octet-stream' }));
        try {
          requests.classA++;
          const part = await client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 1, Body: Buffer.from('part that must not land'), ContentLength: 23 }));
          requests.classA++;
          await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: [{ ETag: part.ETag, PartNumber: 1 }] }, ...condition }));
        } finally {
          requests.free++;
          await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId })).catch(() => undefined);
        }
      });
      record(id, result.status === 412, described(result));
    }
  }

  // Informational: R2 takes one write per key per second; the guarded deletes lean on it where it holds.
  const limitedKey = `${run}same-key`;
  const first = await answer(() => put(limitedKey, Buffer.from('first'), {}, false));
  const second = first.error ? first : await answer(() => put(limitedKey, Buffer.from('second'), {}, false));
  record('sameKeyWriteLimited', second.status === 429, first.error ? `the first write ${described(first)}` : `a second write at once was ${second.status === 429 ? 'refused: 429' : described(second)}`);

  // Informational: an object stored with Content-Encoding: gzip, read by a client that did not ask for gzip.
  const gzipKey = `${run}encoded`;
  const plain = Buffer.from('overskill-storage probe: decompressed?'.repeat(8));
  const gzipped = gzipSync(plain);
  let decompressed = false as boolean;
  const decoded = await answer(async () => {
    await put(gzipKey, gzipped, { contentEncoding: 'gzip', contentType: 'text/plain' });
    requests.classB++;
    const out = await objects.get(gzipKey);
    const bytes = Buffer.concat(await out.body.toArray());
    if (!bytes.equals(plain) && !bytes.equals(gzipped)) throw Object.assign(new Error('came back as neither the stored nor the decoded bytes'), { $metadata: { httpStatusCode: 200 } });
    decompressed = bytes.equals(plain);
  });
  record('getDecompresses', decompressed, decoded.error ? described(decoded) : decompressed ? 'came back decompressed (every read of the tool decodes either way)' : 'came back as stored');

  // Informational: whether a DeleteObject's If-Match is honoured (S3's conditional deletes). Where it is, that
  // is the guard of every delete of ours; elsewhere a conditional tombstone bridges the check (store/deletes.ts).
  const deleteKey = `${run}conditional-delete`;
  const deleteBody = Buffer.from('conditional delete probe');
  const stored = await answer(() => put(deleteKey, deleteBody));
  if (stored.error) record('deleteIfMatch', false, `the probe object could not be stored: ${described(stored)}`);
  else {
    requests.free++;
    const refused = await answer(() => objects.delete(deleteKey, true, md5Hex(Buffer.from('another etag'))));
    const kept = await answer(() => head(deleteKey));
    const holds = refused.status === 412 && !kept.error;
    record('deleteIfMatch', holds, refused.status === 412 ? (kept.error ? 'refused: 412, but the object is gone' : 'refused: 412, the object kept') : `${described(refused)}${kept.error ? ', and the object was deleted' : ''}`);
  }

  // Informational: which spellings of a key are one object. R2 NFC-normalises key names ("Unicode
  // interoperability"); the tool treats keys so everywhere (keys.ts), and says what this store does.
  const decomposed = `${run}unicode-cafe\u0301`;
  const composed = decomposed.normalize('NFC');
  const spelled = await answer(() => put(decomposed, Buffer.from('unicode probe')));
  if (spelled.error) record('keysNormalized', false, `the probe object could not be stored: ${described(spelled)}`);
  else {
    requests.classB++;
    const other = await answer(async () => {
      if (!(await objects.head(composed))) throw Object.assign(new Error('not found under the other spelling'), { $metadata: { httpStatusCode: 404 } });
    });
    record('keysNormalized', !other.error, other.error ? (other.status === 404 ? 'written as "e" + U+0301, not found as "é": two objects' : described(other)) : 'written as "e" + U+0301, found as "é": one object');
    if (!other.error) written.add(composed);
  }

  if (storageClass !== undefined) {
    const standard = storageClass === 'STANDARD';
    record('storageClass', standard, standard ? 'STANDARD' : `${storageClass}: reads, read-backs and early deletes cost more (report --storage-class)`);
  }

  if (replaceSame) {
    // On a store with R2's per-key write limit, the second since the probe key was written is waited out.
    if (properties.some((p) => p.id === 'sameKeyWriteLimited' && p.holds)) await sleep(Math.max(0, 1100 - (Date.now() - createdAt)));
    await replaceSame();
  }

  const leftBehind: string[] = [];
  for (const probe of written) {
    requests.free++;
    const removed = await answer(() => objects.delete(probe));
    if (removed.error && removed.status !== 404) leftBehind.push(probe);
  }
  // Shown in one order whatever order they were probed in: the required ones first, as REQUIRED lists them.
  const order = [...Object.keys(REQUIRED), ...Object.keys(INFORMATIONAL)];
  properties.sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
  const ok = properties.filter((p) => p.required).every((p) => p.holds);
  return { bucket, ok, properties, requests, leftBehind, storageClass, durationMs: Date.now() - started, checkedAt: new Date(started).toISOString() };
}

/** The required properties a check found missing, as one sentence for a refusal. */
export function missingProperties(check: StoreCheck): StoreProperty[] {
  return check.properties.filter((p) => p.required && !p.holds);
}

/** Requests one check sends at most, for plans and dry runs. */
export const PROBE_REQUESTS = { classA: 15, classB: 6, free: 9 };
