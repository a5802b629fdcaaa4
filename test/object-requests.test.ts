import http from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import { HttpRequest } from '@smithy/core/protocols';
import { createHash, createHmac } from 'node:crypto';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { storeAt } from './support/stores.ts';
import { objectText } from './support/seed.ts';
import { R2Emulation } from '../src/local/r2-emulation.ts';
import { ObjectStore } from '../src/object-store.ts';
import { ObjectStoreError } from '../src/errors.ts';
import { hexToBase64, md5Hex, sha256Hex } from '../src/hashing.ts';
import { isKeyWriteLimited, isNotFound, isPreconditionFailed } from '../src/store/client.ts';

/**
 * The per-object requests (store/object-requests.ts): PUT, HEAD, GET and DELETE on undici, signed by the AWS
 * signer. What the SDK path gave is asked of this one: signatures the server accepts (the emulation checks
 * them as R2 does), keys of every kind, the SDK's error shapes, retries where the SDK retries and only there.
 */
class Sha256 {
  private hash;
  constructor(secret?: string | Uint8Array) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', secret);
  }
  update(data: string | Uint8Array) {
    this.hash.update(data);
  }
  async digest() {
    return new Uint8Array(this.hash.digest());
  }
  reset() {}
}

describe('per-object requests', () => {
  let env: TestEnv;
  let r2: R2Emulation;
  let proxy: S3Proxy;
  let store: ObjectStore;
  let n = 0;
  const counted: string[] = [];
  const key = (name = 'k.txt') => `apps/9/files/${++n}/${name}`;

  beforeAll(async () => {
    env = await createTestEnv({ schema: false });
    r2 = new R2Emulation(env.s3.barePort);
    proxy = await new S3Proxy(env.s3.barePort, env.s3.bucket, r2).start();
    store = storeAt(env.s3, proxy.endpoint, { requestTimeoutMs: 2_000, maxAttempts: 3, onRequest: (command) => counted.push(command) });
  });
  afterAll(async () => {
    store?.destroy();
    await proxy?.stop();
    await env?.close();
  });
  beforeEach(() => {
    proxy.clearFaults();
    // Off unless a test turns it on: these tests count requests, and R2's 429 within a second would add retries.
    r2.writeIntervalMs = 0;
    counted.length = 0;
  });

  const put = (k: string, body: string, condition: { ifNoneMatch?: '*'; ifMatch?: string } = { ifNoneMatch: '*' }, retries = true) => {
    const bytes = Buffer.from(body);
    return store.objects.put(k, bytes, { contentType: 'text/plain', contentMd5: hexToBase64(md5Hex(bytes)), bodySha256: sha256Hex(bytes), metadata: { writer: 'test', sha256: sha256Hex(bytes) }, ...condition }, retries);
  };

  describe('signatures, checked by the emulation as R2 checks them', () => {
    it('accepts what the signer signs, and refuses a wrong secret and a header changed after signing', async () => {
      const refusedBefore = r2.stats.signatureRefused;
      const k = key();
      await put(k, 'signed');
      expect(r2.stats.signatureRefused).toBe(refusedBefore);

      const wrong = new ObjectStore(
        { endpoint: proxy.endpoint, accessKeyId: env.s3.accessKeyId, secretAccessKey: 'not-the-secret', bucket: env.s3.bucket, region: 'auto', allowInsecureEndpoint: false },
        { requestTimeoutMs: 2_000, maxAttempts: 2 },
      );
      try {
        const error = await wrong.objects.put(key(), Buffer.from('x'), {}).catch((e) => e);
        expect(error.name).toBe('SignatureDoesNotMatch');
        expect(error.$metadata.httpStatusCode).toBe(403);
        await expect(wrong.head(k)).rejects.toBeInstanceOf(ObjectStoreError);
      } finally {
        wrong.destroy();
      }

      // Signed by an independent client of the same signer, then one signed header altered on the way.
      const signer = new SignatureV4({ service: 's3', region: 'auto', credentials: { accessKeyId: env.s3.accessKeyId, secretAccessKey: env.s3.secretAccessKey }, sha256: Sha256 as never, uriEscapePath: false });
      const host = new URL(proxy.endpoint).host;
      const path = `/${env.s3.bucket}/${key('tampered.txt')}`;
      const body = Buffer.from('tampered');
      const signed = await signer.sign(new HttpRequest({ method: 'PUT', protocol: 'http:', hostname: host, path, headers: { host, 'content-length': String(body.length), 'x-amz-meta-sha256': sha256Hex(body) }, body }));
      const send = (headers: Record<string, string>) =>
        new Promise<number>((resolve, reject) => {
          const request = http.request({ host: '127.0.0.1', port: proxy.port, method: 'PUT', path, headers }, (response) => {
            response.resume();
            response.on('end', () => resolve(response.statusCode ?? 0));
          });
          request.on('error', reject);
          request.end(body);
        });
      expect(await send({ ...signed.headers, 'x-amz-meta-sha256': sha256Hex('something else') })).toBe(403);
      expect(await send(signed.headers)).toBe(200);
      // A query that is not valid percent-encoding is refused (400), and the front goes on answering.
      const malformed = await new Promise<number>((resolve, reject) => {
        const request = http.request({ host: '127.0.0.1', port: proxy.port, method: 'GET', path: `${path}?tagging=%E0%A4%A`, headers: { ...signed.headers, 'content-length': '0' } }, (response) => {
          response.resume();
          response.on('end', () => resolve(response.statusCode ?? 0));
        });
        request.on('error', reject);
        request.end();
      });
      expect(malformed).toBe(400);
      expect(await store.head(k)).toMatchObject({ etag: md5Hex('signed') });
    });
  });

  it('keys of every kind round-trip: what is written under a key is listed, read, headed and deleted under it', async () => {
    const refusedBefore = r2.stats.signatureRefused;
    const names = ['a b+c.txt', 'ünï/cødé.ts', "(x)!*'~.js", '100%.md', 'q?x=1&y#z.txt', 'v@2:3,4;5$=&.json', '日本語/ファイル.tsx'];
    for (const name of names) {
      const k = key(name);
      const content = `content of ${name}`;
      await put(k, content);
      const listed = await store.client.send(new ListObjectsV2Command({ Bucket: env.s3.bucket, Prefix: k }));
      expect(listed.Contents?.map((o) => o.Key)).toEqual([k]);
      const head = await store.head(k);
      expect(head).toMatchObject({ size: Buffer.byteLength(content), etag: md5Hex(content), sha256: sha256Hex(content) });
      expect((await store.getVerified(k, sha256Hex(content))).toString()).toBe(content);
      await store.objects.delete(k);
      expect(await store.head(k)).toBeUndefined();
    }
    expect(r2.stats.signatureRefused).toBe(refusedBefore);
  });

  it("answers carry the SDK's error shapes: 404, 412 and 429 as every caller tells them apart", async () => {
    const k = key();
    const missing = await store.objects.get(k).catch((e) => e);
    expect(isNotFound(missing)).toBe(true);
    expect(missing.name).toBe('NoSuchKey');
    expect(await store.head(k)).toBeUndefined();
    await put(k, 'first');
    const again = await put(k, 'second').catch((e) => e);
    expect(isPreconditionFailed(again)).toBe(true);
    expect(again.name).toBe('PreconditionFailed');
    const wrongEtag = await put(k, 'third', { ifMatch: md5Hex('nothing like it') }).catch((e) => e);
    expect(isPreconditionFailed(wrongEtag)).toBe(true);
    r2.writeIntervalMs = 1000;
    const limited = await put(k, 'fourth', { ifMatch: md5Hex('first') }, false).catch((e) => e);
    expect(isKeyWriteLimited(limited)).toBe(true);
    expect(limited.$metadata).toMatchObject({ httpStatusCode: 429, attempts: 1 });
    expect((await store.getVerified(k, sha256Hex('first'))).toString()).toBe('first');
  });

  it('retries a 503 and a reset connection with the SDK strategy, and never a 4xx or a request sent once', async () => {
    const k = key();
    const puts = () => proxy.seen.filter((r) => r.method === 'PUT' && r.key === k).length;
    proxy.inject((r) => r.method === 'PUT' && r.key === k, { kind: 'status', status: 503, code: 'SlowDown' });
    await put(k, 'after a 503');
    expect(puts()).toBe(2);
    expect(counted.filter((c) => c === 'PutObjectCommand')).toHaveLength(2);

    const reset = key();
    proxy.inject((r) => r.method === 'HEAD' && r.key === reset, { kind: 'reset' });
    await put(reset, 'x');
    expect(await store.head(reset)).toMatchObject({ etag: md5Hex('x') });

    const refused = key();
    proxy.inject((r) => r.method === 'PUT' && r.key === refused, { kind: 'status', status: 400, code: 'InvalidRequest' });
    const error = await put(refused, 'x').catch((e) => e);
    expect(error.name).toBe('InvalidRequest');
    expect(proxy.seen.filter((r) => r.method === 'PUT' && r.key === refused)).toHaveLength(1);

    const once = key();
    proxy.inject((r) => r.method === 'PUT' && r.key === once, { kind: 'status', status: 503, code: 'SlowDown' });
    expect((await put(once, 'x', { ifNoneMatch: '*' }, false).catch((e) => e)).$metadata.httpStatusCode).toBe(503);
    expect(proxy.seen.filter((r) => r.method === 'PUT' && r.key === once)).toHaveLength(1);
  });

  it('once the run is stopping, a failed attempt is not retried', async () => {
    const stop = new AbortController();
    const stopping = storeAt(env.s3, proxy.endpoint, { requestTimeoutMs: 2_000, maxAttempts: 5, stopping: stop.signal });
    try {
      const k = key();
      stop.abort();
      proxy.inject((r) => r.method === 'PUT' && r.key === k, { kind: 'status', status: 503, code: 'SlowDown' }, 5);
      const error = await stopping.objects.put(k, Buffer.from('x'), { ifNoneMatch: '*' }).catch((e) => e);
      expect(error.$metadata.httpStatusCode).toBe(503);
      expect(proxy.seen.filter((r) => r.method === 'PUT' && r.key === k)).toHaveLength(1);
    } finally {
      stopping.destroy();
    }
  });

  it('a body damaged on the way is refused before anything is stored (BadDigest, XAmzContentSHA256Mismatch) and sent again, on both paths', async () => {
    // A wire in front of the emulation that flips a byte of the next body it carries.
    const wire = await new S3Proxy(proxy.port, env.s3.bucket).start();
    const across = storeAt(env.s3, wire.endpoint, { requestTimeoutMs: 2_000, maxAttempts: 3 });
    const puts = (k: string) => wire.seen.filter((r) => r.method === 'PUT' && r.key === k).length;
    try {
      const refusedBefore = r2.stats.digestRefused;
      const k = key();
      wire.inject((r) => r.method === 'PUT' && r.key === k, { kind: 'garble' });
      const body = Buffer.from('the bytes as sent');
      await across.objects.put(k, body, { contentMd5: hexToBase64(md5Hex(body)), bodySha256: sha256Hex(body), ifNoneMatch: '*' });
      expect(puts(k)).toBe(2);
      expect(await objectText(store, k)).toBe('the bytes as sent');
      // Without Content-MD5, the signed payload hash catches it.
      const hashed = key();
      wire.inject((r) => r.method === 'PUT' && r.key === hashed, { kind: 'garble' });
      await across.objects.put(hashed, body, { bodySha256: sha256Hex(body), ifNoneMatch: '*' });
      expect(puts(hashed)).toBe(2);
      expect(await objectText(store, hashed)).toBe('the bytes as sent');
      // The SDK client's requests (multipart parts, copies) are retried the same way, where the SDK alone would not.
      const viaSdk = key();
      wire.inject((r) => r.method === 'PUT' && r.key === viaSdk, { kind: 'garble' });
      await across.client.send(new PutObjectCommand({ Bucket: env.s3.bucket, Key: viaSdk, Body: body, ContentLength: body.length, ContentMD5: hexToBase64(md5Hex(body)) }));
      expect(puts(viaSdk)).toBe(2);
      expect(await objectText(store, viaSdk)).toBe('the bytes as sent');
      expect(r2.stats.digestRefused - refusedBefore).toBe(3);
      // A request sent once is not sent again: it fails with the refusal, and nothing was stored.
      const once = key();
      wire.inject((r) => r.method === 'PUT' && r.key === once, { kind: 'garble' });
      const error = await across.objects.put(once, body, { contentMd5: hexToBase64(md5Hex(body)), ifNoneMatch: '*' }, false).catch((e) => e);
      expect([error.name, error.$metadata.httpStatusCode]).toEqual(['BadDigest', 400]);
      expect(await store.head(once)).toBeUndefined();
    } finally {
      across.destroy();
      await wire.stop();
    }
  });

  describe("a store whose clock is not this machine's", () => {
    const MINUTE = 60_000;
    // A store on its own emulation, so the skewed clock is this block's alone.
    let skewed: R2Emulation;
    let front: S3Proxy;
    const fresh = (secretAccessKey = env.s3.secretAccessKey) =>
      new ObjectStore(
        { endpoint: front.endpoint, accessKeyId: env.s3.accessKeyId, secretAccessKey, bucket: env.s3.bucket, region: 'auto', allowInsecureEndpoint: false },
        { requestTimeoutMs: 2_000, maxAttempts: 3 },
      );
    /** `body` on a store of its own (its clock uncorrected, as a new process's), destroyed afterwards. */
    const onFresh = async (body: (store: ObjectStore) => Promise<void>, secretAccessKey?: string) => {
      const store = fresh(secretAccessKey);
      try {
        await body(store);
      } finally {
        store.destroy();
      }
    };
    const sent = (method: string, k: string) => front.seen.filter((r) => r.method === method && r.key === k).length;
    const bytes = (text: string) => Buffer.from(text);
    const putOn = (on: ObjectStore, k: string, text: string, retries = true) =>
      on.objects.put(k, bytes(text), { contentMd5: hexToBase64(md5Hex(bytes(text))), bodySha256: sha256Hex(bytes(text)), ifNoneMatch: '*' }, retries);
    // The per-object GET itself, one attempt (objectText goes through getStream, whose read retries would hide a refusal).
    const readOn = async (on: ObjectStore, k: string) => {
      const answer = await on.objects.get(k);
      const chunks: Buffer[] = [];
      for await (const chunk of answer.body) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString();
    };

    beforeAll(async () => {
      // In front of the bare server: the local server's own front keeps this machine's clock.
      skewed = new R2Emulation(env.s3.barePort);
      front = await new S3Proxy(env.s3.barePort, env.s3.bucket, skewed).start();
    });
    afterAll(async () => front?.stop());

    it('20 minutes ahead: the first request is refused for its time, signed again by the server’s clock, and nothing after it is refused', async () => {
      skewed.clockOffsetMs = 20 * MINUTE;
      await onFresh(async (ahead) => {
        const k = key();
        const before = skewed.stats.clockRefused;
        await putOn(ahead, k, 'ahead');
        expect(skewed.stats.clockRefused - before).toBe(1);
        expect(sent('PUT', k)).toBe(2);
        expect(Math.abs(ahead.objects.clockOffsetMs - 20 * MINUTE)).toBeLessThan(5_000);
        expect(await ahead.head(k)).toMatchObject({ etag: md5Hex('ahead') });
        expect(await readOn(ahead, k)).toBe('ahead');
        await ahead.objects.delete(k);
        expect(await ahead.head(k)).toBeUndefined();
        expect(skewed.stats.clockRefused - before).toBe(1);
        // The SDK client beside it (listings, multipart) corrects its own clock the same way.
        const listed = await ahead.client.send(new ListObjectsV2Command({ Bucket: env.s3.bucket, Prefix: 'apps/9/' }));
        expect(listed.$metadata.httpStatusCode).toBe(200);
        // Its signer marks every error on a skewed store as clock-corrected; only a refusal for the time is
        // retried, so a 404 is one request, not one per attempt.
        const missing = key('missing.txt');
        const error = await ahead.client.send(new HeadObjectCommand({ Bucket: env.s3.bucket, Key: missing })).catch((e) => e);
        expect(error.$metadata.httpStatusCode).toBe(404);
        expect(sent('HEAD', missing)).toBe(1);
      });
    });

    it('30 minutes behind: a request sent once and a download (one attempt each) are still signed again after the refusal, once', async () => {
      skewed.clockOffsetMs = -30 * MINUTE;
      const k = key();
      await onFresh(async (writer) => {
        const before = skewed.stats.clockRefused;
        await putOn(writer, k, 'sent once', false);
        expect(sent('PUT', k)).toBe(2);
        expect(skewed.stats.clockRefused - before).toBe(1);
      });
      await onFresh(async (reader) => {
        const before = skewed.stats.clockRefused;
        expect(await readOn(reader, k)).toBe('sent once');
        expect(sent('GET', k)).toBe(2);
        expect(skewed.stats.clockRefused - before).toBe(1);
      });
      await onFresh(async (deleter) => {
        await deleter.objects.delete(k, false);
        expect(sent('DELETE', k)).toBe(2);
      });
    });

    it('within 15 minutes nothing is refused; a wrong secret on a skewed clock is refused after one correction, not retried for ever', async () => {
      skewed.clockOffsetMs = 10 * MINUTE;
      await onFresh(async (near) => {
        const k = key();
        const before = skewed.stats.clockRefused;
        await putOn(near, k, 'near');
        expect(sent('PUT', k)).toBe(1);
        expect(skewed.stats.clockRefused).toBe(before);
        // The offset is learnt from the answer anyway.
        expect(Math.abs(near.objects.clockOffsetMs - 10 * MINUTE)).toBeLessThan(5_000);
      });
      skewed.clockOffsetMs = 20 * MINUTE;
      try {
        await onFresh(async (wrong) => {
          const k = key();
          const error = await putOn(wrong, k, 'x').catch((e) => e);
          expect(error.name).toBe('SignatureDoesNotMatch');
          expect(sent('PUT', k)).toBe(2);
        }, 'not-the-secret');
      } finally {
        skewed.clockOffsetMs = 0;
      }
    });
  });

  it('every attempt is metered: requests, latency and the socket wait, beside the SDK client’s own', async () => {
    const before = store.transportStats();
    const k = key();
    await put(k, 'metered');
    await store.head(k);
    await store.client.send(new PutObjectCommand({ Bucket: env.s3.bucket, Key: key(), Body: 'sdk', ContentLength: 3 }));
    const after = store.transportStats();
    expect(after.requests - before.requests).toBe(3);
    expect(after.latencyMs.count - before.latencyMs.count).toBe(3);
    expect(after.inFlight).toBe(0);
  });
});
