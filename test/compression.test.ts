import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { R2Emulation } from '../src/local/r2-emulation.ts';
import { checkConsistency } from './support/consistency.ts';
import { databaseFingerprint, insertApp, insertFile, insertVersion, insertVersionFile } from './support/seed.ts';
import { query } from '../src/db.ts';
import { sha256Hex } from '../src/hashing.ts';
import { encodeForStore, MIN_BYTES } from '../src/store/encoding.ts';

/** Source-like text: compresses well, as app files do. */
const source = (i: number, bytes: number) => {
  const line = `export const value${i} = computeSomething(${i}, 'é😀');\n`;
  return line.repeat(Math.ceil(bytes / line.length)).slice(0, bytes);
};

describe('what is worth compressing', () => {
  it('compresses text that saves at least 10%, and leaves small or incompressible bodies as they are', async () => {
    const text = Buffer.from(source(1, 8000));
    const packed = await encodeForStore(text, 'gzip');
    expect(packed.encoding).toBe('gzip');
    expect(packed.body.length).toBeLessThan(text.length * 0.9);
    expect(await encodeForStore(text, undefined)).toEqual({ body: text });
    expect((await encodeForStore(Buffer.from('a'.repeat(MIN_BYTES - 1)), 'gzip')).encoding).toBeUndefined();
    const noise = randomBytes(8000);
    expect(await encodeForStore(noise, 'gzip')).toEqual({ body: noise });
  });
});

describe('migrate --compress gzip: a mixed bucket through every command', () => {
  let env: TestEnv;
  let proxy: S3Proxy;
  let app: string;
  const contents = new Map<string, string>();
  let out: string;
  beforeAll(async () => {
    env = await createTestEnv();
    // R2's conditional writes (s3rver ignores them) and Cloudflare's transparent decompression.
    proxy = await new S3Proxy(env.s3.barePort, env.s3.bucket, new R2Emulation(env.s3.barePort)).start();
    proxy.decompressForPlainClients = true;
    out = mkdtempSync(join(tmpdir(), 'oss-compress-'));
    app = await insertApp(env.db);
    for (let i = 0; i < 24; i++) {
      const content = source(i, 1500 + i * 1200);
      contents.set(`src/f${i}.ts`, content);
      await insertFile(env.db, app, `src/f${i}.ts`, content);
    }
    const version = await insertVersion(env.db, app, '1.0.0', JSON.stringify(Object.fromEntries([...contents].slice(0, 6))));
    const [{ id: fileId }] = await query<{ id: string }>(env.db, "SELECT id FROM app_files WHERE path = 'src/f3.ts'");
    await insertVersionFile(env.db, version, fileId, 'created', contents.get('src/f3.ts')!);
  });
  afterAll(async () => {
    rmSync(out, { recursive: true, force: true });
    await proxy?.stop();
    await env?.close();
  });

  it('stores compressed where it pays, records the encoding in metadata, and every reader gives back the exact bytes', async () => {
    const before = await databaseFingerprint(env.db);
    // Before any compressed run, report estimates the saving from a sample compressed the way migrate would.
    const estimated = await cli(['report', '--json'], env.cliEnv);
    expect(estimated.code, estimated.stderr).toBe(0);
    const estimate = estimated.json().compression.estimate;
    expect(estimate.sampledContents).toBeGreaterThan(0);
    expect(estimate.savingShare).toBeGreaterThan(0.5);
    expect(estimate.estimatedSavedBytes).toBeCloseTo(estimate.eligibleBytes * estimate.savingShare, -1);
    // Half the files first, uncompressed; then everything else compressed: a mixed bucket.
    const [{ half }] = await query<{ half: string }>(env.db, "SELECT (array_agg(id ORDER BY id))[12] AS half FROM app_files WHERE app_id = $1", [app]);
    expect((await cli(['migrate', '--yes', '--tables', 'files', '--limit', '12'], env.cliEnv)).code).toBe(0);
    const viaProxy = { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint };
    const packed = await cli(['migrate', '--yes', '--json', '--compress', 'gzip'], viaProxy);
    expect(packed.code).toBe(0);
    const compression = packed.json().result.compression;
    expect(compression.objects).toBeGreaterThanOrEqual(12);
    expect(compression.storedBytes).toBeLessThan(compression.contentBytes * 0.5);

    // What is stored: gzip bytes, no Content-Encoding (nothing on the way may decode them), and the metadata.
    const rows = await query<{ id: string; path: string; key: string; hash: string }>(env.db, 'SELECT id, path, r2_object_key AS key, content_hash AS hash FROM app_files WHERE app_id = $1 ORDER BY id', [app]);
    for (const row of rows) {
      const raw = await env.store.client.send(new GetObjectCommand({ Bucket: env.s3.bucket, Key: row.key }));
      const bytes = Buffer.from(await raw.Body!.transformToByteArray());
      const plain = Buffer.from(contents.get(row.path)!, 'utf8');
      if (BigInt(row.id) <= BigInt(half)) {
        expect(raw.Metadata?.encoding, row.path).toBeUndefined();
        expect(bytes.equals(plain)).toBe(true);
      } else {
        expect(raw.Metadata).toMatchObject({ encoding: 'gzip', 'content-size': String(plain.length), sha256: row.hash });
        expect(raw.ContentEncoding).toBeUndefined();
        expect(bytes.length).toBeLessThan(plain.length);
        expect(bytes[0]).toBe(0x1f);
      }
    }
    // (the store check's own probe of decompression, outside apps/, is the one that may be)
    expect(proxy.decompressedKeys.filter((key) => key.startsWith('apps/'))).toEqual([]);
    // With --list-bucket, report measures what the stored objects save: listing sizes against content sizes.
    const listed = (await cli(['report', '--json', '--list-bucket'], env.cliEnv)).json();
    const measured = listed.compression.measured;
    const compressedBytes = packed.json().result.compression;
    expect(measured.savedBytes).toBe(compressedBytes.contentBytes - compressedBytes.storedBytes);
    // R2 is priced on what it stores: the listing's sizes, compressed objects for their compressed bytes.
    expect(listed.cost.r2StoredFrom).toBe('bucket listing');
    expect(listed.cost.r2StoredBytes).toBe(measured.storedBytes);
    expect(listed.cost.r2StoredBytes).toBeLessThan(listed.totals.r2Bytes);
    expect(listed.cost.r2StoragePerMonth).toBeCloseTo((measured.storedBytes / 1e9) * listed.prices.storagePerGbMonth, 12);
    expect((await cli(['report', '--json'], env.cliEnv)).json().cost.r2StoredFrom).toBe('content sizes');
    expect((await cli(['report', '--list-bucket'], env.cliEnv)).stdout).toMatch(/Saved by compression\s+\S+ \S+: \d+ objects hold/);

    // Every reader, through the proxy that would decompress a Content-Encoding object: verify (listings and
    // deep), export, cat, finalize's read-back, restore-version, rollback.
    expect((await cli(['verify'], viaProxy)).code).toBe(0);
    expect((await cli(['verify', '--deep'], viaProxy)).code).toBe(0);
    expect((await cli(['export', app, '--out', join(out, 'hybrid')], viaProxy)).code).toBe(0);
    for (const [path, content] of contents) expect(readFileSync(join(out, 'hybrid', path), 'utf8')).toBe(content);
    expect((await cli(['finalize', '--yes'], viaProxy)).code).toBe(0);
    const [{ r2 }] = await query<{ r2: number }>(env.db, "SELECT count(*)::int AS r2 FROM app_files WHERE app_id = $1 AND storage_location = 'r2' AND content IS NULL", [app]);
    expect(r2).toBeGreaterThan(10);
    expect((await cli(['export', app, '--out', join(out, 'r2')], viaProxy)).code).toBe(0);
    for (const [path, content] of contents) expect(readFileSync(join(out, 'r2', path), 'utf8')).toBe(content);
    const cat = await cli(['cat', app, 'src/f23.ts'], viaProxy);
    expect(cat.stdout).toBe(contents.get('src/f23.ts'));
    expect((await cli(['verify', '--deep'], viaProxy)).code).toBe(0);
    // Rolled back, every content is in the database again, byte for byte, from compressed and plain objects alike.
    expect((await cli(['rollback', '--yes', '--purge'], viaProxy)).code).toBe(0);
    await checkConsistency(env);
    for (const [path, content] of contents) {
      const [row] = await query<{ content: string; location: string }>(env.db, 'SELECT content, storage_location AS location FROM app_files WHERE app_id = $1 AND path = $2', [app, path]);
      expect(row, path).toEqual({ content, location: 'database' });
    }
    expect(await databaseFingerprint(env.db)).not.toBe(before); // timestamps and columns moved; the contents did not
    // restore-version reads the version's snapshot and files from compressed objects too.
    expect((await cli(['migrate', '--yes', '--compress', 'gzip'], viaProxy)).code).toBe(0);
    expect((await cli(['finalize', '--yes'], viaProxy)).code).toBe(0);
    await query(env.db, "UPDATE app_files SET content = 'broken', storage_location = 'database', r2_object_key = NULL WHERE app_id = $1 AND path = 'src/f3.ts'", [app]);
    const restored = await cli(['restore-version', app, '1.0.0', '--yes', '--json'], viaProxy);
    expect(restored.code, restored.stderr).toBe(0);
    expect((await cli(['cat', app, 'src/f3.ts'], viaProxy)).stdout).toBe(contents.get('src/f3.ts'));
    expect((await cli(['verify', '--deep'], viaProxy)).code).toBe(0);
    await checkConsistency(env);
  });

  it('a rerun over objects stored either way adopts them instead of uploading again', async () => {
    expect((await cli(['rollback', '--yes', '--purge', '--tables', 'files'], env.cliEnv)).code).toBe(0);
    expect((await cli(['migrate', '--yes', '--tables', 'files'], env.cliEnv)).code).toBe(0); // plain objects
    expect((await cli(['rollback', '--yes', '--tables', 'files'], env.cliEnv)).code).toBe(0); // objects kept
    const appPuts = () => proxy.seen.filter((request) => request.method === 'PUT' && request.key.startsWith('apps/')).length;
    // How each object is stored now (plain, or compressed by the first test and adopted by the plain run).
    const encodings = async () => {
      const found = new Map<string, string | undefined>();
      for await (const { key } of env.store.list('apps/')) if (key.includes('/files/')) found.set(key, (await env.store.head(key))?.encoding);
      return found;
    };
    const before = await encodings();
    const puts = appPuts();
    const again = await cli(['migrate', '--yes', '--json', '--compress', 'gzip', '--tables', 'files'], { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint });
    expect(again.code).toBe(0);
    const [{ files }] = await query<{ files: number }>(env.db, "SELECT count(*)::int AS files FROM app_files WHERE storage_location = 'hybrid'");
    expect(again.json().result.uploaded).toBe(files);
    // Conditional creates found our identical objects and adopted them, however they were stored: no second PUT per key.
    expect(appPuts() - puts).toBeLessThanOrEqual(files);
    for (const { key } of await query<{ key: string }>(env.db, "SELECT r2_object_key AS key FROM app_files WHERE storage_location = 'hybrid'")) {
      if (before.has(key)) expect((await env.store.head(key))?.encoding, key).toBe(before.get(key)); // adopted as it was
    }
    expect([...before.values()].filter((encoding) => encoding === undefined).length, 'some objects were stored plain before the rerun').toBeGreaterThan(0);
    expect((await cli(['verify', '--deep'], env.cliEnv)).code).toBe(0);
  });

  it('reads an object stored with Content-Encoding: gzip right, whether or not it arrives decompressed', async () => {
    const other = await insertApp(env.db);
    const content = source(99, 6000);
    const hash = sha256Hex(content);
    const key = `apps/${other}/files/app-written.ts`;
    // As other code might write it: gzip bytes, Content-Encoding: gzip, and the SHA-256 of the content.
    await env.store.client.send(new PutObjectCommand({ Bucket: env.s3.bucket, Key: key, Body: gzipSync(content), ContentEncoding: 'gzip', ContentType: 'text/plain', Metadata: { sha256: hash } }));
    await query(
      env.db,
      "INSERT INTO app_files (app_id, path, content, storage_location, r2_object_key, content_hash, size_bytes) VALUES ($1, 'app-written.ts', NULL, 'r2', $2, $3, $4)",
      [other, key, hash, Buffer.byteLength(content)],
    );
    const decompressedBefore = proxy.decompressed;
    const through = await cli(['cat', other, 'app-written.ts'], { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint });
    expect(through.code, through.stderr).toBe(0);
    expect(through.stdout).toBe(content);
    expect(proxy.decompressed).toBe(decompressedBefore + 1); // it did arrive decompressed
    const direct = await cli(['cat', other, 'app-written.ts'], env.cliEnv); // and here it arrives as stored
    expect(direct.stdout).toBe(content);
    expect((await cli(['verify', '--deep', '--app', other], { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint })).code).toBe(0);
    expect((await cli(['verify', '--deep', '--app', other], env.cliEnv)).code).toBe(0);
  });
});

describe('migrate --compress gzip with contents streamed from the database (above 1 MiB)', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => env?.close());

  it('compresses large contents on the way by the 10% rule (multipart too), and every reader gives them back', async () => {
    const app = await insertApp(env.db);
    const big = source(7, 3 * 1024 * 1024 + 123); // multibyte source text: compresses a hundredfold, one part
    const noisy = randomBytes(9_000_000).toString('base64'); // 12 MB of base64: gzip saves about a quarter, two 5 MiB parts and more
    const [{ id: bigId }] = await query<{ id: string }>(env.db, "INSERT INTO app_files (app_id, path, content) VALUES ($1, 'big.ts', $2) RETURNING id", [app, big]);
    const random = Array.from({ length: 700_000 }, () => String.fromCharCode(0x4e00 + Math.floor(Math.random() * 20000))).join(''); // ~2.1 MB of random CJK
    await query(env.db, "INSERT INTO app_files (app_id, path, content) VALUES ($1, 'noise.txt', $2), ($1, 'cjk.txt', $3)", [app, noisy, random]);
    const run = await cli(['migrate', '--yes', '--json', '--compress', 'gzip', '--tables', 'files'], env.cliEnv);
    expect(run.code, run.stderr).toBe(0);
    const heads = new Map<string, Awaited<ReturnType<typeof env.store.head>>>();
    for (const { path, key } of await query<{ path: string; key: string }>(env.db, 'SELECT path, r2_object_key AS key FROM app_files WHERE app_id = $1', [app])) heads.set(path, await env.store.head(key));
    expect(heads.get('big.ts')).toMatchObject({ encoding: 'gzip', contentSize: Buffer.byteLength(big) });
    expect(heads.get('big.ts')!.size).toBeLessThan(Buffer.byteLength(big) / 10);
    // Compressed on the way and still over one 5 MiB part: a multipart upload of the compressed stream.
    expect(heads.get('noise.txt')).toMatchObject({ encoding: 'gzip', contentSize: noisy.length });
    expect(heads.get('noise.txt')!.size).toBeGreaterThan(5 * 1024 * 1024);
    expect(heads.get('noise.txt')!.size).toBeLessThan(noisy.length * 0.9);
    const cjk = heads.get('cjk.txt')!;
    // Random CJK text compresses by a third or so; whatever gzip makes of it, the decision follows the 10% rule.
    if (cjk.encoding) expect(cjk.size).toBeLessThan(Buffer.byteLength(random) * 0.9);
    else expect(cjk.size).toBe(Buffer.byteLength(random));
    expect((await cli(['verify'], env.cliEnv)).code).toBe(0);
    expect((await cli(['verify', '--deep'], env.cliEnv)).code).toBe(0);
    expect((await cli(['finalize', '--yes'], env.cliEnv)).code).toBe(0);
    expect((await cli(['cat', app, 'big.ts'], env.cliEnv)).stdout).toBe(big);
    expect((await cli(['cat', app, 'noise.txt'], env.cliEnv)).stdout === noisy).toBe(true);
    const purged = await cli(['rollback', '--yes', '--purge'], env.cliEnv);
    expect(purged.code, purged.stdout + purged.stderr).toBe(0);
    const [{ content }] = await query<{ content: string }>(env.db, 'SELECT content FROM app_files WHERE id = $1', [bigId]);
    expect(content === big).toBe(true);
    await checkConsistency(env);
  }, 120_000);
});
