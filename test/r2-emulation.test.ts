import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { CompleteMultipartUploadCommand, CreateMultipartUploadCommand, PutObjectCommand, UploadPartCommand } from '@aws-sdk/client-s3';
import type { TestEnv } from './support/env.ts';
import type { S3Proxy } from './support/http-proxy.ts';
import { sharedBucket, storeAt } from './support/stores.ts';
import { R2Emulation } from '../src/local/r2-emulation.ts';
import { ObjectStore } from '../src/object-store.ts';
import { probeStore } from '../src/store/preflight.ts';
import { proveStore } from '../src/ops/store-gate.ts';
import { storeGuards } from '../src/ops/doctor.ts';
import { deleteUnnamed, emptyTally } from '../src/ops/guarded-deletes.ts';
import { sha256Hex } from '../src/hashing.ts';
import { objectText } from './support/seed.ts';

const MiB = 1024 * 1024;

/**
 * The suite's R2 refuses what R2 refuses (src/local/r2-emulation.ts), each behaviour against R2's documentation:
 * key identity (Unicode interoperability), the key length limit, multipart part rules and ETags (Multipart
 * upload), one write per key per second (Limits); and If-Match on DeleteObject, a switch, so that both of the
 * tool's delete guards are tested.
 */
describe('the R2 emulation, and the delete guard each store allows', () => {
  let env: TestEnv;
  let r2: R2Emulation;
  let toolProxy: S3Proxy;
  let appProxy: S3Proxy;
  let tool: ObjectStore;
  let app: ObjectStore;
  let n = 0;
  const key = () => `apps/7/files/e${++n}.txt`;
  const statusOf = (promise: Promise<unknown>) => promise.then(() => 200, (error) => error.$metadata?.httpStatusCode ?? error.name);
  const appPut = (k: string, body: Buffer | string) => app.client.send(new PutObjectCommand({ Bucket: env.s3.bucket, Key: k, Body: Buffer.from(body), ContentLength: Buffer.byteLength(body) }));

  let close: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    // One emulation straight in front of s3rver, shared by the tool's and the app's proxies (one bucket, two clients).
    ({ env, r2, toolProxy, appProxy, tool, app, close } = await sharedBucket({ schema: true, tool: { maxAttempts: 4 }, app: { maxAttempts: 1 } }));
  });
  afterAll(async () => {
    await close?.();
  });
  beforeEach(() => {
    toolProxy.clearFaults();
    appProxy.clearFaults();
    r2.writeIntervalMs = 1000;
    r2.honour.deleteIfMatch = false;
    r2.honour.deleteIfLastModified = true;
  });

  it('takes one write per key per second by default, as R2 does', async () => {
    const k = key();
    expect(new R2Emulation(0).writeIntervalMs).toBe(1000);
    expect(await statusOf(appPut(k, 'one'))).toBe(200);
    expect(await statusOf(appPut(k, 'two'))).toBe(429);
    await new Promise((resolve) => setTimeout(resolve, 1050));
    expect(await statusOf(appPut(k, 'three'))).toBe(200);
  });

  it('refuses a key over 1,024 bytes', async () => {
    // In segments of 100 bytes: the server behind keeps each segment as a file name (255 bytes at most).
    const path = (bytes: number) => Array.from({ length: Math.ceil(bytes / 100) }, (_, i) => 'x'.repeat(Math.min(99, bytes - i * 100))).join('/');
    const long = `apps/7/files/${path(1020)}`;
    expect(Buffer.byteLength(long)).toBeGreaterThan(1024);
    expect(await statusOf(appPut(long, 'too long'))).toBe(400);
    const fits = `apps/7/files/${path(1000)}`;
    expect(Buffer.byteLength(fits)).toBeLessThanOrEqual(1024);
    expect(await statusOf(appPut(fits, 'fits'))).toBe(200);
  });

  async function multipart(k: string, sizes: number[]): Promise<{ status: number | string; partMd5s: string[] }> {
    const { UploadId } = await app.client.send(new CreateMultipartUploadCommand({ Bucket: env.s3.bucket, Key: k }));
    const parts = [];
    const partMd5s: string[] = [];
    for (const [index, size] of sizes.entries()) {
      const body = Buffer.alloc(size, 97 + index);
      partMd5s.push(createHash('md5').update(body).digest('hex'));
      const part = await app.client.send(new UploadPartCommand({ Bucket: env.s3.bucket, Key: k, UploadId, PartNumber: index + 1, Body: body, ContentLength: size }));
      parts.push({ ETag: part.ETag, PartNumber: index + 1 });
    }
    const status = await statusOf(app.client.send(new CompleteMultipartUploadCommand({ Bucket: env.s3.bucket, Key: k, UploadId, MultipartUpload: { Parts: parts } })));
    return { status, partMd5s };
  }

  it("gives a multipart object R2's ETag: the MD5 of the parts' MD5s, then -N", async () => {
    const k = key();
    const { status, partMd5s } = await multipart(k, [5 * MiB, 5 * MiB, 1000]);
    expect(status).toBe(200);
    const composite = `${createHash('md5').update(Buffer.concat(partMd5s.map((md5) => Buffer.from(md5, 'hex')))).digest('hex')}-3`;
    expect((await tool.head(k))?.etag).toBe(composite);
    const listed = [];
    for await (const object of tool.list('apps/7/')) if (object.key === k) listed.push(object);
    expect(listed[0].etag).toBe(composite);
  });

  it('refuses parts under 5 MiB but the last, and parts of unequal sizes', async () => {
    expect((await multipart(key(), [1 * MiB, 1000])).status).toBe(400);
    expect((await multipart(key(), [5 * MiB, 6 * MiB, 1000])).status).toBe(400);
    expect((await multipart(key(), [5 * MiB, 5 * MiB + 1])).status).toBe(400);
    // One part alone may be of any size.
    expect((await multipart(key(), [1000])).status).toBe(200);
  });

  // S3's If-Match, R2's Last-Modified condition, and neither (the tombstone guard).
  for (const mode of ['if-match', 'last-modified', 'tombstone'] as const) {
    it(`deletes where the store honours ${mode === 'tombstone' ? 'no delete condition' : mode === 'if-match' ? "If-Match on DeleteObject (S3's)" : "x-amz-if-match-last-modified-time (R2's)"}: doctor names the guard, and an app write between the check and the delete survives`, async () => {
      r2.honour.deleteIfMatch = mode === 'if-match';
      r2.honour.deleteIfLastModified = mode === 'last-modified';
      const gate = await proveStore(tool, { allowUnconditional: false });
      expect(gate.check.properties.find((p) => p.id === 'deleteIfMatch')?.holds).toBe(mode === 'if-match');
      expect(gate.check.properties.find((p) => p.id === 'deleteIfLastModified')?.holds).toBe(mode === 'last-modified');
      expect(tool.conditionalDeletes).toBe(mode === 'if-match');
      expect(tool.lastModifiedDeletes).toBe(mode === 'last-modified');
      expect(storeGuards(gate.check).deletes).toBe(mode);

      const k = key();
      await tool.putVerified({ key: k, body: Buffer.from('ours'), sha256: sha256Hex('ours'), contentType: 'text/plain', intent: { kind: 'create' } });
      const listedEtag = (await tool.head(k))!.etag;
      await new Promise((resolve) => setTimeout(resolve, 1050));
      // The app's write lands after the tool's check (its HEAD) and before the request that acts on it: the
      // conditional DELETE where the store honours a condition, else the conditional tombstone.
      let release!: () => void;
      const opened = new Promise<void>((resolve) => (release = resolve));
      let appStatus: number | string = 0;
      const journalFrom = r2.journal.length;
      toolProxy.inject((request) => request.key === k && (mode !== 'tombstone' ? request.method === 'DELETE' : request.method === 'PUT'), {
        kind: 'gate',
        arrived: () => void statusOf(appPut(k, "the app's newer content")).then((status) => ((appStatus = status), release())),
        opened,
      });
      const tally = emptyTally();
      await deleteUnnamed({ db: env.db, store: tool, databaseUrl: env.databaseUrl }, [{ key: k, expect: { etag: listedEtag } }], 2, tally);
      expect(appStatus).toBe(200);
      expect(tally.deleted).toEqual([]);
      expect(tally.refused.map((r) => r.key)).toEqual([k]);
      expect(await objectText(tool, k)).toBe("the app's newer content");
      const seenDeletes = toolProxy.seen.filter((request) => request.key === k && request.method === 'DELETE');
      if (mode === 'tombstone') expect(seenDeletes).toEqual([]); // the tombstone's condition failed first
      else {
        // The delete carried the condition the store proved, and the store refused it.
        const deletes = r2.journal.slice(journalFrom).filter((entry) => entry.key === k && entry.kind === 'delete' && entry.lane !== 'app');
        expect(deletes.length).toBeGreaterThan(0);
        for (const entry of deletes) expect(entry.condition).toMatch(mode === 'if-match' ? /if-match: / : /x-amz-if-match-last-modified-time: /);
        expect(deletes.map((entry) => entry.status)).toContain(412);
      }
    });
  }

  it('a conditional DELETE whose answer was lost, retried into a 404, counts as deleted (so the re-check of rows runs)', async () => {
    r2.honour.deleteIfMatch = true;
    const impatient = storeAt(env.s3, toolProxy.endpoint, { maxAttempts: 3, requestTimeoutMs: 1_000 });
    try {
      await proveStore(impatient, { allowUnconditional: false });
      expect(impatient.conditionalDeletes).toBe(true);
      const k = key();
      await impatient.putVerified({ key: k, body: Buffer.from('ours'), sha256: sha256Hex('ours'), contentType: 'text/plain', intent: { kind: 'create' } });
      // The store deletes it, and the answer never comes back: the client's deadline passes and it retries.
      toolProxy.inject((request) => request.key === k && request.method === 'DELETE', { kind: 'hold' });
      const outcome = await impatient.deleteIfOurs(k);
      expect(outcome.status).toBe('deleted');
      expect(toolProxy.seen.filter((request) => request.key === k && request.method === 'DELETE').length).toBeGreaterThanOrEqual(2);
      expect(await impatient.head(k)).toBeUndefined();
    } finally {
      impatient.destroy();
    }
  });

  it('doctor tells whether keys are one object per Unicode identity, and the storage class', async () => {
    const normalizing = await probeStore(tool);
    expect(normalizing.properties.find((p) => p.id === 'keysNormalized')?.holds).toBe(true);
    expect(normalizing.storageClass).toBe('STANDARD');
    r2.normalizeKeys = false;
    try {
      const byteStore = await probeStore(tool);
      expect(byteStore.properties.find((p) => p.id === 'keysNormalized')?.holds).toBe(false);
    } finally {
      r2.normalizeKeys = true;
    }
  });
});
