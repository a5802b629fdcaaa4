import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import { cleanEtag, hexToBase64, md5Hex, sha256Hex } from '../hashing.ts';
import { headerText, metadataOf, type PutHeaders } from './object-requests.ts';
import type { StoreCore } from './core.ts';
import { describeS3Error, httpStatusOf } from './client.ts';
import { describeLifecycle, readLifecycle, TOOL_KEY_PREFIX, type LifecycleCheck } from './lifecycle.ts';

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
  /** The bucket's lifecycle rules, judged against the tool's keys (store/lifecycle.ts). */
  lifecycle?: LifecycleCheck;
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
  lifecycleKeepsObjects: {
    property: `no lifecycle rule expires (deletes) objects under ${TOOL_KEY_PREFIX}`,
    risk: 'the store would delete the only copy of every content finalize clears from the database; finalize and maintain refuse while such a rule stands',
  },
} as const;

/** What the store does that the tool adapts to, without refusing a store that does otherwise. */
const INFORMATIONAL = {
  sameKeyWriteLimited: 'a second write to a key within a second is refused (429), as R2 does',
  getDecompresses: 'GetObject returns gzip-encoded objects decompressed',
  deleteIfMatch: 'DeleteObject with If-Match is refused (412) on a different ETag, and the object kept',
  deleteIfLastModified: "DeleteObject with x-amz-if-match-last-modified-time is refused (412) on another time, and deletes on the object's own (R2's conditional delete)",
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
 * CompleteMultipartUpload, ETags that are MD5s, metadata that round-trips, and no lifecycle rule that
 * expires the tool's keys; and, for information, whether a second write to a key within a second is refused
 * (R2's 429), whether GETs come back decompressed, which delete conditions hold (If-Match, S3's; the
 * Last-Modified time, R2's), whether Unicode-equivalent keys are one object, and the storage class.
 * The single-object probes go the way the tool's own writes and reads go (`store.objects`), the multipart
 * ones through the SDK client that uploads large rows: a property is proven on the path that relies on it.
 * Each probe has its own key, so the probes run side by side: through a 50 ms link the check takes a few
 * round trips (and, on a store with R2's per-key rule, the second one key's conditions must wait), not
 * thirty. Writes retry (R2 may answer 429 to the probes' own writes to one key), except the two of the
 * same-key rule, which are sent once. Never throws for what the store answers: every answer is a result.
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
    const lastModified = headerText(answer.headers['last-modified']);
    return {
      etag: headerText(answer.headers.etag) ?? '',
      metadata: metadataOf(answer.headers),
      storageClass: headerText(answer.headers['x-amz-storage-class']) ?? 'STANDARD',
      lastModified: lastModified ? new Date(lastModified) : undefined,
    };
  };
  let storageClass: string | undefined;

  // Informational, and asked first: R2 takes one write per key per second. The conditions probe waits on it.
  const sameKeyLimited = (async () => {
    const limitedKey = `${run}same-key`;
    const first = await answer(() => put(limitedKey, Buffer.from('first'), {}, false));
    const second = first.error ? first : await answer(() => put(limitedKey, Buffer.from('second'), {}, false));
    record('sameKeyWriteLimited', second.status === 429, first.error ? `the first write ${described(first)}` : `a second write at once was ${second.status === 429 ? 'refused: 429' : described(second)}`);
    return second.status === 429;
  })();

  // Multipart uploads the probes opened: aborted at the end.
  const uploads: string[] = [];
  // A fresh key: a conditional create must be accepted there, or nothing else can be probed.
  const conditions = (async () => {
    const key = `${run}conditions`;
    const body = Buffer.from(`overskill-storage probe ${run}`);
    const sha256 = sha256Hex(body);
    const ours = { writer: 'overskill-storage', sha256, probe: 'yes' };
    let etag = '';
    const createdAt = Date.now();
    const created = await answer(async () => {
      const out = await put(key, body, { ifNoneMatch: '*', metadata: ours });
      etag = cleanEtag(out.etag);
    });
    if (created.error) {
      const seen = `a conditional create on a new key ${described(created)}`;
      for (const id of Object.keys(REQUIRED) as (keyof typeof REQUIRED)[]) if (id !== 'lifecycleKeepsObjects') record(id, false, seen);
      return;
    }
    record('etagIsMd5', etag === md5Hex(body), etag === md5Hex(body) ? `the MD5 of the bytes (${etag.slice(0, 12)}…)` : `ETag ${etag || '(none)'}, MD5 ${md5Hex(body)}`);
    const [meta, again] = await Promise.all([
      answer(async () => {
        const seen = await head(key);
        storageClass = seen.storageClass;
        const back = seen.metadata;
        if (back.sha256 !== sha256 || back.writer !== 'overskill-storage') throw Object.assign(new Error(`metadata came back as ${JSON.stringify(back)}`), { $metadata: { httpStatusCode: 200 } });
      }),
      answer(() => put(key, Buffer.from('must not land'), { ifNoneMatch: '*' })),
    ]);
    record('metadataRoundTrip', !meta.error, meta.error ? described(meta) : 'sha256 and writer came back');
    record('createIfNoneMatch', again.status === 412, described(again));
    // Only a write that landed changed the ETag: asked again then.
    const current = async () => cleanEtag((await head(key)).etag);
    if (!again.error) etag = await current().catch(() => etag);
    const wrong = await answer(() => put(key, Buffer.from('must not land either'), { ifMatch: `"${md5Hex(Buffer.from('another etag'))}"` }));
    record('replaceIfMatch', wrong.status === 412, described(wrong));
    if (!wrong.error) etag = await current().catch(() => etag);

    // The two multipart conditions, side by side: uploads of their own, completed under a condition that must fail.
    const completes = await Promise.all(
      ([
        ['completeIfNoneMatch', { IfNoneMatch: '*' }],
        ['completeIfMatch', { IfMatch: `"${md5Hex(Buffer.from('another etag'))}-1"` }],
      ] as const).map(async ([id, condition]) => {
        let uploadId: string | undefined;
        const result = await answer(async () => {
          requests.classA++;
          const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: 'application/octet-stream' }));
          uploadId = UploadId;
          requests.classA++;
          const part = await client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 1, Body: Buffer.from('part that must not land'), ContentLength: 23 }));
          requests.classA++;
          await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: [{ ETag: part.ETag, PartNumber: 1 }] }, ...condition }));
        });
        record(id, result.status === 412, described(result));
        return { uploadId, landed: !result.error };
      }),
    );
    uploads.push(...completes.map((c) => c.uploadId).filter((id): id is string => id !== undefined));
    if (completes.some((c) => c.landed)) etag = await current().catch(() => etag);

    // Last: on a store that takes one write per key per second (R2), this is refused within the second of the
    // create, which is waited out.
    if (await sameKeyLimited) await sleep(Math.max(0, 1100 - (Date.now() - createdAt)));
    const same = await answer(() => put(key, body, { ifMatch: etag, metadata: ours }));
    if (same.status !== 412 || !objects.ifMatchQuoted) {
      record('replaceIfMatchSame', !same.error, described(same));
      return;
    }
    // Refused on its own ETag: a server that compares If-Match to the bare ETag (Ceph RGW 16). Asked again
    // unquoted, and kept so only if a wrong ETag unquoted is still refused.
    objects.ifMatchQuoted = false;
    const bare = await answer(() => put(key, body, { ifMatch: etag, metadata: ours }));
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
  })();

  // Informational: an object stored with Content-Encoding: gzip, read by a client that did not ask for gzip.
  const gzip = (async () => {
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
  })();

  // Informational: whether a DeleteObject's If-Match is honoured (S3's conditional deletes). Where it is, that
  // is the guard of every delete of ours (store/deletes.ts).
  const deleteIfMatch = (async () => {
    const deleteKey = `${run}conditional-delete`;
    const stored = await answer(() => put(deleteKey, Buffer.from('conditional delete probe')));
    if (stored.error) return record('deleteIfMatch', false, `the probe object could not be stored: ${described(stored)}`);
    requests.free++;
    const refused = await answer(() => objects.delete(deleteKey, true, md5Hex(Buffer.from('another etag'))));
    const kept = await answer(() => head(deleteKey));
    const holds = refused.status === 412 && !kept.error;
    record('deleteIfMatch', holds, refused.status === 412 ? (kept.error ? 'refused: 412, but the object is gone' : 'refused: 412, the object kept') : `${described(refused)}${kept.error ? ', and the object was deleted' : ''}`);
  })();

  // Informational: R2's conditional delete, `x-amz-if-match-last-modified-time`: a wrong time must be refused
  // (412) with the object kept, and the right one must delete it. Where If-Match is not honoured, it is the
  // guard of every delete of ours.
  const deleteIfLastModified = (async () => {
    const key = `${run}last-modified-delete`;
    const stored = await answer(() => put(key, Buffer.from('conditional delete probe')));
    const seen = stored.error ? undefined : await head(key).catch(() => undefined);
    if (!seen?.lastModified) return record('deleteIfLastModified', false, stored.error ? `the probe object could not be stored: ${described(stored)}` : 'the probe object came back without a Last-Modified time');
    requests.free++;
    const refused = await answer(() => objects.delete(key, true, undefined, new Date(seen.lastModified!.getTime() - 86_400_000)));
    const kept = await answer(() => head(key));
    if (refused.status !== 412 || kept.error) {
      return record('deleteIfLastModified', false, refused.status === 412 ? 'a wrong time was refused: 412, but the object is gone' : `a wrong time was ${described(refused)}${kept.error ? ', and the object was deleted' : ''}`);
    }
    requests.free++;
    const accepted = await answer(() => objects.delete(key, true, undefined, seen.lastModified));
    const gone = await answer(() => head(key));
    const holds = !accepted.error && gone.status === 404;
    record('deleteIfLastModified', holds, holds ? 'a wrong time refused (412, the object kept), the right one deleted' : `a wrong time refused (412), the right one ${described(accepted)}${gone.error ? '' : ', and the object is still there'}`);
  })();

  // Informational: which spellings of a key are one object. R2 NFC-normalises key names ("Unicode
  // interoperability"); the tool treats keys so everywhere (keys.ts), and says what this store does.
  const unicode = (async () => {
    const decomposed = `${run}unicode-cafe\u0301`;
    const composed = decomposed.normalize('NFC');
    const spelled = await answer(() => put(decomposed, Buffer.from('unicode probe')));
    if (spelled.error) return record('keysNormalized', false, `the probe object could not be stored: ${described(spelled)}`);
    requests.classB++;
    const other = await answer(async () => {
      if (!(await objects.head(composed))) throw Object.assign(new Error('not found under the other spelling'), { $metadata: { httpStatusCode: 404 } });
    });
    record('keysNormalized', !other.error, other.error ? (other.status === 404 ? 'written as "e" + U+0301, not found as "é": two objects' : described(other)) : 'written as "e" + U+0301, found as "é": one object');
    if (!other.error) written.add(composed);
  })();

  // Required: no lifecycle rule expires the tool's keys (R2 applies them within about a day, unasked).
  const lifecycleRead = (async () => {
    requests.classB++;
    const lifecycle = await readLifecycle(client, bucket);
    record('lifecycleKeepsObjects', lifecycle.expiring.length === 0, describeLifecycle(lifecycle));
    return lifecycle;
  })();

  const [lifecycle] = await Promise.all([lifecycleRead, sameKeyLimited, conditions, gzip, deleteIfMatch, deleteIfLastModified, unicode]);
  if (storageClass !== undefined) {
    const standard = storageClass === 'STANDARD';
    record('storageClass', standard, standard ? 'STANDARD' : `${storageClass}: reads, read-backs and early deletes cost more (report --storage-class)`);
  }

  const leftBehind: string[] = [];
  await Promise.all([
    ...[...written].map(async (probe) => {
      requests.free++;
      const removed = await answer(() => objects.delete(probe));
      if (removed.error && removed.status !== 404) leftBehind.push(probe);
    }),
    // A refused completion leaves its upload open (and billed until aborted).
    ...uploads.map(async (uploadId) => {
      requests.free++;
      await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: `${run}conditions`, UploadId: uploadId })).catch(() => undefined);
    }),
  ]);
  // Shown in one order whatever order they were probed in: the required ones first, as REQUIRED lists them.
  const order = [...Object.keys(REQUIRED), ...Object.keys(INFORMATIONAL)];
  properties.sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
  const ok = properties.filter((p) => p.required).every((p) => p.holds);
  return { bucket, ok, properties, requests, leftBehind, storageClass, lifecycle, durationMs: Date.now() - started, checkedAt: new Date(started).toISOString() };
}

/**
 * The guard every delete of a row's object takes on this store (store/deletes.ts), from what the check proved.
 * R2's Last-Modified condition compares whole seconds (HTTP dates): it guards a delete only where the store
 * also takes one write per key per second, so that every version of a key has a second of its own; elsewhere
 * an app write in the second of the HEAD would carry the same time, and the tombstone guards instead.
 */
export function deleteGuardOf(check: StoreCheck): 'if-match' | 'last-modified' | 'tombstone' {
  const holds = (id: string) => check.properties.some((p) => p.id === id && p.holds);
  if (holds('deleteIfMatch')) return 'if-match';
  if (holds('deleteIfLastModified') && holds('sameKeyWriteLimited')) return 'last-modified';
  return 'tombstone';
}

/** The required properties a check found missing, as one sentence for a refusal. */
export function missingProperties(check: StoreCheck): StoreProperty[] {
  return check.properties.filter((p) => p.required && !p.holds);
}

/** Requests one check sends at most, for plans and dry runs. */
export const PROBE_REQUESTS = { classA: 16, classB: 8, free: 12 };
