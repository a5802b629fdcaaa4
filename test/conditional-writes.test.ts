import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { TestEnv } from './support/env.ts';
import type { S3Proxy } from './support/http-proxy.ts';
import type { R2Emulation } from '../src/local/r2-emulation.ts';
import { sharedBucket, storeAt } from './support/stores.ts';
import { insertApp, insertFile, objectText, text } from './support/seed.ts';
import { deleteUnnamed, emptyTally } from '../src/ops/guarded-deletes.ts';
import { query } from '../src/db.ts';
import { ObjectStore } from '../src/object-store.ts';
import { ObjectConflictError } from '../src/errors.ts';
import { sha256Hex } from '../src/hashing.ts';

/**
 * R2 behaviour the tool's safety rests on, emulated in the test proxy (s3rver has none of it), and the
 * object store's conditional writes and owner-checked deletes against it. "The app" writes as the plan's
 * Phase 1 model does: a plain PutObject with no metadata, through its own proxy (its own latency).
 */
describe('R2 emulation and conditional writes', () => {
  let env: TestEnv;
  let r2: R2Emulation;
  let toolProxy: S3Proxy;
  let appProxy: S3Proxy;
  let tool: ObjectStore;
  let app: ObjectStore;
  let n = 0;
  const key = () => `apps/1/files/k${++n}.txt`;
  const appPut = (k: string, body: string) => app.client.send(new PutObjectCommand({ Bucket: env.s3.bucket, Key: k, Body: Buffer.from(body), ContentLength: Buffer.byteLength(body) }));
  const rawPut = (k: string, body: string, condition: { IfNoneMatch?: string; IfMatch?: string }) =>
    app.client.send(new PutObjectCommand({ Bucket: env.s3.bucket, Key: k, Body: Buffer.from(body), ContentLength: Buffer.byteLength(body), ...condition }));
  const ours = (k: string, body: string, mayReplace = false) =>
    tool.putVerified({ key: k, body: Buffer.from(body), sha256: sha256Hex(body), contentType: 'text/plain', intent: { kind: 'create', mayReplaceOurs: async () => mayReplace } });
  const statusOf = (promise: Promise<unknown>) => promise.then(() => 200, (error) => error.$metadata?.httpStatusCode ?? error.name);

  let close: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    // One emulation straight in front of s3rver, shared by the tool's and the app's proxies (one bucket, two clients).
    ({ env, r2, toolProxy, appProxy, tool, app, close } = await sharedBucket({ tool: { requestTimeoutMs: 1_500, maxAttempts: 4, partSize: 5 * 1024 * 1024 }, app: { maxAttempts: 6 } }));
  });
  afterAll(async () => {
    await close?.();
  });
  beforeEach(() => {
    // Off unless a test turns it on: these tests write one key several times in a row to reach a condition,
    // and each that depends on R2's one write per key per second says so by setting it.
    r2.writeIntervalMs = 0;
    r2.limitDeletes = false;
    toolProxy.clearFaults();
    appProxy.clearFaults();
  });

  describe('the emulation itself', () => {
    it('If-None-Match: * creates only where nothing is, If-Match replaces only the ETag it names', async () => {
      const k = key();
      expect(await statusOf(rawPut(k, 'first', { IfNoneMatch: '*' }))).toBe(200);
      expect(await statusOf(rawPut(k, 'second', { IfNoneMatch: '*' }))).toBe(412);
      const head = (await tool.head(k))!;
      expect(await statusOf(rawPut(k, 'third', { IfMatch: '"0123456789abcdef0123456789abcdef"' }))).toBe(412);
      expect(await statusOf(rawPut(k, 'third', { IfMatch: `"${head.etag}"` }))).toBe(200);
      expect(await objectText(tool, k)).toBe('third');
      expect(await statusOf(rawPut(key(), 'nothing there', { IfMatch: `"${head.etag}"` }))).toBe(412);
    });

    it('is atomic per key: of 20 concurrent creates exactly one wins', async () => {
      const k = key();
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => statusOf(rawPut(k, `writer ${i}`, { IfNoneMatch: '*' }))));
      expect(results.filter((status) => status === 200)).toHaveLength(1);
      expect(results.filter((status) => status === 412)).toHaveLength(19);
    });

    it('refuses a second write to a key within a second with 429, and takes it after the second', async () => {
      r2.writeIntervalMs = 1000;
      const k = key();
      const once = storeAt(env.s3, appProxy.endpoint, { maxAttempts: 1 });
      try {
        await once.client.send(new PutObjectCommand({ Bucket: env.s3.bucket, Key: k, Body: 'a' }));
        expect(await statusOf(once.client.send(new PutObjectCommand({ Bucket: env.s3.bucket, Key: k, Body: 'b' })))).toBe(429);
        await new Promise((resolve) => setTimeout(resolve, 1050));
        expect(await statusOf(once.client.send(new PutObjectCommand({ Bucket: env.s3.bucket, Key: k, Body: 'c' })))).toBe(200);
      } finally {
        once.destroy();
      }
      expect(await objectText(tool, k)).toBe('c');
    });

    it('applies conditions to CompleteMultipartUpload', async () => {
      const k = key();
      await appPut(k, 'the app was here first');
      const body = Buffer.alloc(11 * 1024 * 1024, 'm');
      const upload = new Upload({ client: tool.client, partSize: 5 * 1024 * 1024, params: { Bucket: env.s3.bucket, Key: k, Body: body, IfNoneMatch: '*' } });
      await expect(upload.done()).rejects.toMatchObject({ $metadata: { httpStatusCode: 412 } });
      expect(await objectText(tool, k)).toBe('the app was here first');
    });
  });

  describe('writes', () => {
    it('never replaces an object the app wrote, in memory or streamed', async () => {
      const k = key();
      await appPut(k, 'the app wrote this');
      await expect(ours(k, 'our older copy', true)).rejects.toBeInstanceOf(ObjectConflictError);
      const big = Buffer.alloc(6 * 1024 * 1024, 'b');
      await expect(tool.putStreamVerified({ key: k, open: async function* () { yield big; }, sha256: sha256Hex(big), size: big.length, contentType: 'text/plain', intent: { kind: 'create', mayReplaceOurs: async () => true } })).rejects.toBeInstanceOf(ObjectConflictError);
      await expect(tool.putVerified({ key: k, body: Buffer.from('refresh'), sha256: sha256Hex('refresh'), contentType: 'text/plain', intent: { kind: 'replace-ours' } })).rejects.toBeInstanceOf(ObjectConflictError);
      expect(await objectText(tool, k)).toBe('the app wrote this');
      expect(r2.stats.preconditionFailed).toBeGreaterThan(0);
    });

    it('adopts its own identical object, and replaces its own older one only when allowed', async () => {
      const k = key();
      expect((await ours(k, 'v1')).adopted).toBe(false);
      expect((await ours(k, 'v1')).adopted).toBe(true);
      await expect(ours(k, 'v2', false)).rejects.toBeInstanceOf(ObjectConflictError);
      expect(await objectText(tool, k)).toBe('v1');
      expect((await ours(k, 'v2', true)).adopted).toBe(false);
      expect(await objectText(tool, k)).toBe('v2');
      expect((await tool.head(k))!.ours).toBe(true);
    });

    it('a replacement loses to a write that lands between its look and its write (If-Match)', async () => {
      const k = key();
      await ours(k, 'ours, stale');
      // our PUT is held 400 ms on its way; the app writes meanwhile
      toolProxy.inject((r) => r.method === 'PUT' && r.key === k, { kind: 'delay', ms: 400 });
      const replacing = tool.putVerified({ key: k, body: Buffer.from('ours, fresh'), sha256: sha256Hex('ours, fresh'), contentType: 'text/plain', intent: { kind: 'replace-ours' } });
      await new Promise((resolve) => setTimeout(resolve, 150));
      await appPut(k, 'the app, newest');
      await expect(replacing).rejects.toBeInstanceOf(ObjectConflictError);
      expect(await objectText(tool, k)).toBe('the app, newest');
    });

    it('a retried upload whose first answer was lost adopts what it stored instead of failing', async () => {
      const k = key();
      toolProxy.inject((r) => r.method === 'PUT' && r.key === k, { kind: 'hold' });
      const result = await ours(k, 'stored, answer lost');
      expect(result.adopted).toBe(true);
      expect(await objectText(tool, k)).toBe('stored, answer lost');
    });

    it('waits out 429 after the app wrote the key a moment ago, then still refuses to replace it', async () => {
      r2.writeIntervalMs = 1000;
      const k = key();
      await appPut(k, 'the app, just now');
      const throttledBefore = r2.stats.throttled;
      await expect(ours(k, 'ours', true)).rejects.toBeInstanceOf(ObjectConflictError);
      expect(r2.stats.throttled).toBeGreaterThan(throttledBefore);
      expect(await objectText(tool, k)).toBe('the app, just now');
    });
  });

  describe('deletes', () => {
    it('deletes only its own object, and only while it is what was checked', async () => {
      const appsOwn = key();
      await appPut(appsOwn, 'the app');
      expect(await tool.deleteIfOurs(appsOwn)).toMatchObject({ status: 'refused', reason: expect.stringMatching(/no overskill-storage marker/) });
      const mine = key();
      await ours(mine, 'mine');
      expect(await tool.deleteIfOurs(mine, { sha256: sha256Hex('something else') })).toMatchObject({ status: 'refused' });
      expect(await tool.deleteIfOurs(mine, { etag: '0123456789abcdef0123456789abcdef' })).toMatchObject({ status: 'refused' });
      expect(await tool.deleteIfOurs(mine, { sha256: sha256Hex('mine') })).toMatchObject({ status: 'deleted', guarded: true });
      expect(await tool.head(mine)).toBeUndefined();
      expect(await tool.deleteIfOurs(mine)).toEqual({ status: 'gone' });
      expect(await objectText(tool, appsOwn)).toBe('the app');
    });

    it('an app write between its check and its tombstone makes the tombstone fail: nothing is deleted', async () => {
      const k = key();
      await ours(k, 'ours');
      toolProxy.inject((r) => r.method === 'PUT' && r.key === k, { kind: 'delay', ms: 400 });
      const deleting = tool.deleteIfOurs(k);
      await new Promise((resolve) => setTimeout(resolve, 150));
      await appPut(k, 'the app wrote after our look');
      expect(await deleting).toMatchObject({ status: 'refused' });
      expect(await objectText(tool, k)).toBe('the app wrote after our look');
    });

    it('an app write between its tombstone and its delete is refused (429) and lands after the delete', async () => {
      r2.writeIntervalMs = 1000;
      const k = key();
      await ours(k, 'ours');
      await new Promise((resolve) => setTimeout(resolve, 1050));
      let appWrite: Promise<unknown> | undefined;
      // the moment our DELETE leaves, the app writes; the DELETE reaches the server 400 ms later
      toolProxy.inject((r) => {
        if (r.method !== 'DELETE' || r.key !== k) return false;
        appWrite = new Promise((resolve) => setTimeout(resolve, 50)).then(() => appPut(k, 'the app, during our delete'));
        return true;
      }, { kind: 'delay', ms: 400 });
      const throttledBefore = r2.stats.throttled;
      const outcome = await tool.deleteIfOurs(k);
      await appWrite;
      expect(outcome).toMatchObject({ status: 'deleted', guarded: true });
      expect(r2.stats.throttled).toBeGreaterThan(throttledBefore);
      expect(await objectText(tool, k)).toBe('the app, during our delete');
    });

    it('a tombstone answered too slowly is written again once the second is surely over, then deleted', async () => {
      r2.writeIntervalMs = 1000;
      const k = key();
      await ours(k, 'ours');
      await new Promise((resolve) => setTimeout(resolve, 1050));
      // the first tombstone reaches the store 700 ms late: past the 600 ms the delete may follow it by
      toolProxy.inject((r) => r.method === 'PUT' && r.key === k, { kind: 'delay', ms: 700 });
      const throttledBefore = r2.stats.throttled;
      expect(await tool.deleteIfOurs(k)).toMatchObject({ status: 'deleted', guarded: true });
      expect(await tool.head(k)).toBeUndefined();
      // it waited for its own second to pass instead of running into its own 429
      expect(r2.stats.throttled).toBe(throttledBefore);
    });

    it('a row that starts naming the key while it is tombstoned gets its object back from its database content', async () => {
      const app = await insertApp(env.db);
      const content = text(3000, 'row content ');
      const id = await insertFile(env.db, app, 'adopted.txt', content);
      const k = `apps/${app}/files/adopted.txt`;
      await ours(k, content);
      // while the tombstone is on its way, a migrate adopts the object and flips the row to name it;
      // then the delete fails, leaving the tombstone
      toolProxy.inject((r) => {
        if (r.method !== 'PUT' || r.key !== k) return false;
        void query(env.db, "UPDATE app_files SET storage_location = 'hybrid', r2_object_key = $2, content_hash = $3 WHERE id = $1", [id, k, sha256Hex(content)]);
        return true;
      }, { kind: 'delay', ms: 200 });
      // The delete fails, and so does the one more try after the second (store/deletes.ts).
      toolProxy.inject((r) => r.method === 'DELETE' && r.key === k, { kind: 'status', status: 500 }, 2);
      const tally = emptyTally();
      await deleteUnnamed({ db: env.db, store: tool, databaseUrl: env.databaseUrl }, [{ key: k, expect: {} }], 2, tally);
      expect(tally.deleted).toEqual([]);
      // The store's 500 is a failure, not a choice (it is reported and the run exits 1).
      expect(tally.failed.map((r) => r.key)).toEqual([k]);
      expect(tally.refused).toEqual([]);
      expect(tally.restored).toEqual([k]);
      expect(await objectText(tool, k)).toBe(content);
    });

    it('if deletes count as writes too, it waits out the second and deletes its own tombstone', async () => {
      r2.writeIntervalMs = 1000;
      r2.limitDeletes = true;
      const k = key();
      await ours(k, 'ours');
      await new Promise((resolve) => setTimeout(resolve, 1050));
      expect(await tool.deleteIfOurs(k)).toMatchObject({ status: 'deleted', guarded: false });
      expect(await tool.head(k)).toBeUndefined();
    });
  });
});
