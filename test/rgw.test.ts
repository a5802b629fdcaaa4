import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { RGW, startRgw, type RgwServer } from './support/rgw.ts';
import { databaseFingerprint, insertApp, insertFile, insertVersion, insertVersionFile, text } from './support/seed.ts';
import { query } from '../src/db.ts';
import { ObjectStore } from '../src/object-store.ts';
import { sha256Hex } from '../src/hashing.ts';
import { probeStore } from '../src/store/preflight.ts';
import { DeleteBucketLifecycleCommand, PutBucketLifecycleConfigurationCommand } from '@aws-sdk/client-s3';

/**
 * The whole flow against Ceph's RADOS Gateway (RGW 16), a real S3 server: its own SigV4 checks, error codes and
 * composite multipart ETags. It honours If-None-Match on PutObject, takes If-Match only unquoted (the store
 * check finds that and the tool sends it so), and ignores conditions on CompleteMultipartUpload: so every
 * command that writes objects refuses it, and with --allow-unconditional-store the flow gives back every byte.
 */
describe.skipIf(!RGW.available || ON_PGLITE)(`Ceph RGW ${RGW.version ?? ''}`, () => {
  let env: TestEnv;
  let rgw: RgwServer;
  let store: ObjectStore;
  let rgwEnv: NodeJS.ProcessEnv;
  const contents = new Map<string, string>();
  let appId: string;
  let compressedApp: string;
  const run = (args: string[]) => cli([...args, '--json'], rgwEnv);
  const flow = (args: string[]) => cli([...args, '--json', '--allow-unconditional-store', '--yes'], rgwEnv);

  /** Every content of the three tables, as the tool reads it (database, else R2 through cat for files). */
  async function contentFingerprint(): Promise<string> {
    const rows = await query<{ fingerprint: string }>(
      env.db,
      `SELECT md5(string_agg(path || ':' || coalesce(content_hash, ''), ',' ORDER BY id)) AS fingerprint FROM app_files`,
    );
    return rows[0].fingerprint;
  }

  beforeAll(async () => {
    env = await createTestEnv();
    rgw = await startRgw();
    rgwEnv = { ...env.cliEnv, R2_ENDPOINT: rgw.endpoint, R2_ACCESS_KEY_ID: rgw.accessKeyId, R2_SECRET_ACCESS_KEY: rgw.secretAccessKey, R2_BUCKET: rgw.bucket };
    store = new ObjectStore({ endpoint: rgw.endpoint, accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey, bucket: rgw.bucket, region: 'us-east-1', allowInsecureEndpoint: false }, { requestTimeoutMs: 10_000, maxAttempts: 3 });
    appId = await insertApp(env.db, 'rgw');
    const files: [string, string][] = [
      ['src/tiny.ts', 'export const tiny = 1;\n'],
      ['src/hybrid.tsx', text(5_000, 'hybrid ')],
      ['src/large.tsx', text(40_000, 'large ')],
      ['public/big.bin.txt', text(6 * 1024 * 1024 + 123, 'multipart ')],
      ['app/(auth)/page.tsx', text(3_000, 'group ')],
      ['pages/[slug].tsx', text(12_000, 'slug ')],
      ["src/odd + = & ! ' ( ) * % @ : , ; ~ $ ? #.ts", text(2_000, 'odd ')],
      ['src/with space/日本語 файл ملف.tsx', text(11_000, 'intl ')],
    ];
    const ids: string[] = [];
    for (const [path, content] of files) {
      ids.push(await insertFile(env.db, appId, path, content));
      contents.set(path, content);
    }
    const v1 = await insertVersion(env.db, appId, '1.0.0', JSON.stringify(Object.fromEntries(files.slice(0, 3))));
    await insertVersionFile(env.db, v1, ids[1], 'created', text(4_000, 'v1 hybrid '));
    await insertVersionFile(env.db, v1, ids[2], 'created', text(20_000, 'v1 large '));
    await insertVersion(env.db, appId, '1.0.1', JSON.stringify(Object.fromEntries(files.slice(0, 4).map(([p, c]) => [p, c]))));
    compressedApp = await insertApp(env.db, 'rgw-compressed');
    for (let i = 0; i < 4; i++) await insertFile(env.db, compressedApp, `src/c${i}.ts`, text(30_000 + i, `compress me ${i} `));
  }, 420_000);
  afterAll(async () => {
    store?.destroy();
    await rgw?.stop();
    await env?.close();
  });

  it('doctor names exactly what RGW lacks: conditions on CompleteMultipartUpload', async () => {
    const doctor = await run(['doctor']);
    expect(doctor.code).toBe(1);
    const document = doctor.json();
    expect(document.failing.sort()).toEqual(['completeIfMatch', 'completeIfNoneMatch']);
    const replace = document.checks.find((c: { id: string }) => c.id === 'replaceIfMatchSame');
    expect(replace).toMatchObject({ holds: true });
    expect(replace.seen).toMatch(/unquoted/);
    expect(document.guards).toMatchObject({ deletes: 'tombstone', deleteGapCovered: false, keysNormalized: false });
  });

  it('reads the bucket lifecycle rules RGW keeps: an expiration on apps/ fails doctor and refuses finalize, and nothing changes', async () => {
    await store.client.send(
      new PutBucketLifecycleConfigurationCommand({
        Bucket: rgw.bucket,
        LifecycleConfiguration: { Rules: [{ ID: 'expire-apps', Status: 'Enabled', Filter: { Prefix: 'apps/' }, Expiration: { Days: 30 } }] },
      }),
    );
    try {
      const doctor = await run(['doctor']);
      expect(doctor.json().failing).toContain('lifecycleKeepsObjects');
      expect(doctor.json().checks.find((c: { id: string }) => c.id === 'lifecycleKeepsObjects').seen).toMatch(/"expire-apps" on apps\/\* after 30 days/);
      const before = await databaseFingerprint(env.db);
      const finalize = await flow(['finalize']);
      expect(finalize.code, finalize.stderr).toBe(2);
      expect(finalize.stderr).toMatch(/expire-apps/);
      expect(await databaseFingerprint(env.db)).toBe(before);
    } finally {
      await store.client.send(new DeleteBucketLifecycleCommand({ Bucket: rgw.bucket }));
    }
    expect((await run(['doctor'])).json().failing).not.toContain('lifecycleKeepsObjects');
  });

  it('every command that writes objects refuses it, and changes nothing', async () => {
    // Work for each of them: rows in R2 (for rollback --purge and prune-versions) and an orphan of ours (for cleanup).
    expect((await run(['migrate', '--yes'])).code).toBe(2);
    expect((await flow(['migrate', '--app', appId, '--tables', 'files', '--limit', '2'])).code).toBe(0);
    expect((await flow(['migrate', '--app', appId, '--tables', 'snapshots,version-files'])).code).toBe(0); // objects for prune-versions
    const orphan = `apps/${appId}/files/orphaned.txt`;
    await store.putVerified({ key: orphan, body: Buffer.from('orphan'), sha256: sha256Hex('orphan'), contentType: 'text/plain' });
    const before = await databaseFingerprint(env.db);
    for (const args of [
      ['migrate', '--yes'],
      ['rollback', '--purge', '--yes'],
      ['cleanup', '--grace', '0s', '--yes'],
      ['maintain', '--yes'],
      ['prune-versions', '--keep-last', '1', '--yes'],
      ['restore-version', appId, '1.0.0', '--yes'],
    ]) {
      const refused = await run(args);
      expect(refused.code, `${args.join(' ')}: ${refused.stderr}`).toBe(2);
      expect(refused.stderr).toMatch(/CompleteMultipartUpload with If-None-Match/);
    }
    expect(await databaseFingerprint(env.db)).toBe(before);
    expect((await store.head(orphan))?.ours).toBe(true);
  });

  it('with --allow-unconditional-store, the whole flow gives back every byte', async () => {
    const before = await contentFingerprint();
    expect((await flow(['migrate'])).code).toBe(0);
    expect((await flow(['migrate', '--app', compressedApp, '--compress', 'gzip'])).code).toBe(0);
    expect((await run(['verify'])).code).toBe(0);
    expect((await run(['verify', '--deep'])).code).toBe(0);
    expect((await flow(['finalize'])).code).toBe(0);
    const [{ r2 }] = await query<{ r2: number }>(env.db, "SELECT count(*)::int AS r2 FROM app_files WHERE storage_location = 'r2'");
    expect(r2).toBeGreaterThanOrEqual(6);
    for (const [path, content] of contents) {
      const catted = await cli(['cat', appId, path], rgwEnv);
      expect(catted.code, path).toBe(0);
      expect(catted.stdout === content, path).toBe(true);
    }
    const out = mkdtempSync(join(tmpdir(), 'oss-rgw-export-'));
    try {
      expect((await run(['export', appId, '--out', out])).code).toBe(0);
      for (const [path, content] of contents) expect(readFileSync(join(out, path), 'utf8') === content, path).toBe(true);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
    expect((await run(['verify', '--deep'])).code).toBe(0);
    expect((await flow(['restore-version', appId, '1.0.1'])).code).toBe(0);
    expect((await run(['verify', '--deep'])).code).toBe(0);
    const purged = await flow(['rollback', '--purge']);
    expect(purged.code, purged.stderr).toBe(0);
    expect(await contentFingerprint()).not.toBe(''); // the restore recorded a new version; the files are 1.0.1's
    for (const [path, content] of [...contents].slice(0, 4)) expect((await cli(['cat', appId, path], rgwEnv)).stdout === content, path).toBe(true);
    expect((await flow(['cleanup', '--grace', '0s'])).code).toBe(0);
    expect((await flow(['maintain'])).code).toBe(0);
    expect((await flow(['prune-versions', '--keep-last', '1', '--keep-within', '0s'])).code).toBe(0);
    expect(before.length).toBeGreaterThan(0);
  }, 300_000);

  it('the content-addressed layout too', async () => {
    expect((await flow(['schema', '--apply', '--key-layout', 'content-addressed'])).code).toBe(0);
    expect((await flow(['migrate', '--key-layout', 'content-addressed'])).code).toBe(0);
    const [{ blobs }] = await query<{ blobs: number }>(env.db, "SELECT count(*)::int AS blobs FROM app_files WHERE r2_object_key LIKE 'apps/%/blobs/%'");
    expect(blobs).toBeGreaterThan(0);
    expect((await run(['verify', '--deep'])).code).toBe(0);
    expect((await flow(['finalize'])).code).toBe(0);
    for (const [path, content] of [...contents].slice(0, 4)) expect((await cli(['cat', appId, path], rgwEnv)).stdout === content, path).toBe(true);
    expect((await flow(['rollback', '--purge'])).code).toBe(0);
  }, 300_000);

  it("the per-object requests (the tool's own SigV4 signing) with keys a web app really has", async () => {
    // As every command does before it writes: the check finds how this store takes If-Match.
    await probeStore(store);
    expect(store.objects.ifMatchQuoted).toBe(false);
    const keys = [
      'apps/1/files/app/(auth)/page.tsx',
      'apps/1/files/pages/[slug].tsx',
      "apps/1/files/+ = & ! ' ( ) * % @ : , ; ~ $ ? #.ts",
      'apps/1/files/with space/日本語/файл/ملف.tsx',
      'apps/1/files/emoji 🚀/x.ts',
    ];
    for (const key of keys) {
      const body = Buffer.from(`content of ${key}`);
      const put = await store.putVerified({ key, body, sha256: sha256Hex(body), contentType: 'text/plain' });
      expect(put.readBack).toBe(false);
      expect((await store.head(key))?.ours).toBe(true);
      expect((await store.getVerified(key, sha256Hex(body))).equals(body)).toBe(true);
      const listed = [];
      for await (const object of store.list('apps/1/files/')) listed.push(object.key);
      expect(listed).toContain(key);
    }
    // Each deleted by the guarded delete (the tombstone under If-Match, unquoted on this store).
    for (const key of keys) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect((await store.deleteIfOurs(key)).status, key).toBe('deleted');
      expect(await store.head(key)).toBeUndefined();
    }
  });
});
