import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PutObjectCommand, DeleteObjectCommand } from '@aws-sdk/client-s3';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { bucketFingerprint, fileRow, insertApp, insertFile, objectText, text } from './support/seed.ts';
import { migrate } from '../src/ops/migrate.ts';
import { finalize } from '../src/ops/finalize.ts';
import { rollback } from '../src/ops/rollback.ts';
import { cleanup } from '../src/ops/cleanup.ts';
import { defaultRunOptions } from '../src/ops/options.ts';
import { FILES } from '../src/tables.ts';
import { query } from '../src/db.ts';
import { hookedStore } from './support/stores.ts';
import { sha256Hex } from '../src/hashing.ts';

describe('finalize, rollback and cleanup', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => env?.close());

  const files = (overrides = {}) => defaultRunOptions({ tables: [FILES], ...overrides });
  /** Writes as someone else would (the app, another tool): no overskill-storage marker. */
  const overwrite = (key: string, body: string) =>
    env.store.client.send(new PutObjectCommand({ Bucket: env.s3.bucket, Key: key, Body: Buffer.from(body), ContentLength: Buffer.byteLength(body) }));
  /** An object this tool wrote (an interrupted run's upload, a superseded one). */
  const ours = (key: string, body: string) => env.store.putVerified({ key, body: Buffer.from(body), sha256: sha256Hex(body), contentType: 'text/plain', intent: { kind: 'create', mayReplaceOurs: async () => true } });

  it('finalize clears only verified rows above the threshold and refuses corrupted or deleted objects', async () => {
    const app = await insertApp(env.db);
    const big = await insertFile(env.db, app, 'big.js', text(20_000, 'big '));
    const edge = await insertFile(env.db, app, 'edge.js', text(10_240, 'e'));
    const over = await insertFile(env.db, app, 'over.js', text(10_241, 'o'));
    const corrupted = await insertFile(env.db, app, 'corrupted.js', text(30_000, 'c'));
    const deleted = await insertFile(env.db, app, 'deleted.js', text(30_000, 'd'));
    const changed = await insertFile(env.db, app, 'changed.js', text(30_000, 'x'));
    await migrate(env.context, files({ filter: { appIds: [app] } }));
    await overwrite((await fileRow(env.db, corrupted)).r2_object_key!, text(30_000, 'C'));
    await env.store.client.send(new DeleteObjectCommand({ Bucket: env.s3.bucket, Key: (await fileRow(env.db, deleted)).r2_object_key! }));
    await query(env.db, 'UPDATE app_files SET content = $2 WHERE id = $1', [changed, text(30_000, 'y')]);

    // What each content takes where PostgreSQL keeps it (TOAST compresses these repetitive texts far below their length).
    const stored = new Map(
      (await query<{ id: string; stored: number }>(env.db, 'SELECT id::text, pg_column_size(content)::int AS stored FROM app_files WHERE app_id = $1', [app])).map((row) => [row.id, row.stored]),
    );
    const storedOf = (...ids: string[]) => ids.reduce((sum, id) => sum + stored.get(id)!, 0);
    expect(storedOf(big, over)).toBeLessThan((20_000 + 10_241) / 4);

    const run = await cli(['finalize', '--yes', '--json', '--app', app], env.cliEnv);
    expect(run.code).toBe(1);
    const result = run.json().result;
    expect(result.cleared).toBe(2);
    expect(result.bytesFreed).toBe(storedOf(big, over));
    expect(result.contentBytesFreed).toBe(20_000 + 10_241);
    expect(result.vacuumCommands).toEqual(['VACUUM (ANALYZE) app_files;']);
    expect(run.json().plan.databaseBytesFreed).toBe(storedOf(big, over, corrupted, deleted, changed));
    expect(run.json().plan.contentBytesFreed).toBe(20_000 + 10_241 + 30_000 * 3);
    expect(run.stderr + run.stdout).not.toMatch(/undefined|NaN/);
    for (const id of [big, over]) {
      const row = await fileRow(env.db, id);
      expect(row.storage_location).toBe('r2');
      expect(row.content).toBeNull();
    }
    expect((await fileRow(env.db, edge)).storage_location).toBe('hybrid');
    for (const id of [corrupted, deleted, changed]) {
      const row = await fileRow(env.db, id);
      expect(row.storage_location, id).toBe('hybrid');
      expect(row.content, id).not.toBeNull();
    }
    const problems = [...result.tables[0].failed, ...result.tables[0].skipped].map((p: { id: string }) => p.id).sort();
    expect(problems).toEqual([corrupted, deleted, changed].sort());
  });

  it('finalize compare-and-set: a row the app rewrites during the read-back keeps its content', async () => {
    const app = await insertApp(env.db);
    const id = await insertFile(env.db, app, 'race.js', text(20_000, 'r'));
    await migrate(env.context, files({ filter: { appIds: [app] } }));
    const store = hookedStore(env.s3);
    const original = store.readAndHash.bind(store);
    store.readAndHash = async (key: string) => {
      const result = await original(key);
      await query(env.db, 'UPDATE app_files SET content = $2 WHERE id = $1', [id, text(20_000, 'R')]);
      return result;
    };
    const result = await finalize({ ...env.context, store }, files({ filter: { appIds: [app] } }));
    store.destroy();
    expect(result.cleared).toBe(0);
    expect(result.tables[0].changedMeanwhile.map((p) => p.id)).toEqual([id]);
    const row = await fileRow(env.db, id);
    expect(row.content).toBe(text(20_000, 'R'));
    expect(row.storage_location).toBe('hybrid');
  });

  it('rollback restores byte-identical content for database-less rows and flips everything back', async () => {
    const app = await insertApp(env.db);
    const contents = [text(50_000, 'ü日本 '), text(2000, 'two'), text(11_000, 'eleven')];
    const ids = [];
    for (const [i, content] of contents.entries()) ids.push(await insertFile(env.db, app, `rb/${i}.txt`, content));
    await migrate(env.context, files({ filter: { appIds: [app] } }));
    await finalize(env.context, files({ filter: { appIds: [app] } }));
    expect((await fileRow(env.db, ids[0])).content).toBeNull();
    const result = await rollback(env.context, { ...files({ filter: { appIds: [app] } }), keepHybrid: false, purge: false });
    expect(result.rolledBack).toBe(3);
    for (const [i, id] of ids.entries()) {
      const row = await fileRow(env.db, id);
      expect(row.content).toBe(contents[i]);
      expect(row.storage_location).toBe('database');
      expect(row.r2_object_key).toBeNull();
    }
  });

  it('rollback refuses a missing or different object and leaves the row as it is', async () => {
    const app = await insertApp(env.db);
    const good = await insertFile(env.db, app, 'good.txt', text(20_000, 'g'));
    const bad = await insertFile(env.db, app, 'bad.txt', text(20_000, 'b'));
    const gone = await insertFile(env.db, app, 'gone.txt', text(20_000, 'n'));
    await migrate(env.context, files({ filter: { appIds: [app] } }));
    await finalize(env.context, files({ filter: { appIds: [app] } }));
    await overwrite((await fileRow(env.db, bad)).r2_object_key!, text(20_000, 'B'));
    await env.store.client.send(new DeleteObjectCommand({ Bucket: env.s3.bucket, Key: (await fileRow(env.db, gone)).r2_object_key! }));
    const run = await cli(['rollback', '--yes', '--json', '--app', app, '--purge'], env.cliEnv);
    expect(run.code).toBe(1);
    expect((await fileRow(env.db, good)).storage_location).toBe('database');
    for (const id of [bad, gone]) {
      const row = await fileRow(env.db, id);
      expect(row.storage_location).toBe('r2');
      expect(row.content).toBeNull();
    }
    // --purge deleted the good row's object only; the bad row still names its (wrong) object
    expect(await env.store.head(`apps/${app}/files/good.txt`)).toBeUndefined();
    expect(await env.store.head(`apps/${app}/files/bad.txt`)).toBeDefined();
  });

  it('--purge never deletes an object whose row did not flip (changed by the app meanwhile)', async () => {
    const app = await insertApp(env.db);
    const id = await insertFile(env.db, app, 'kept.txt', text(20_000, 'k'));
    await migrate(env.context, files({ filter: { appIds: [app] } }));
    await finalize(env.context, files({ filter: { appIds: [app] } }));
    const store = hookedStore(env.s3);
    const original = store.getVerified.bind(store);
    store.getVerified = async (key: string, hash: string | null) => {
      const body = await original(key, hash);
      // the app rewrites the row (the plan's model stores it in R2 under a new hash) while we download
      await query(env.db, "UPDATE app_files SET content_hash = repeat('0', 64) WHERE id = $1", [id]);
      return body;
    };
    const result = await rollback({ ...env.context, store }, { ...files({ filter: { appIds: [app] } }), keepHybrid: false, purge: true });
    store.destroy();
    expect(result.rolledBack).toBe(0);
    expect(result.purged).toBe(0);
    expect(await env.store.head(`apps/${app}/files/kept.txt`)).toBeDefined();
    expect((await fileRow(env.db, id)).storage_location).toBe('r2');
  });

  it('--keep-hybrid brings content back but keeps the objects', async () => {
    const app = await insertApp(env.db);
    const id = await insertFile(env.db, app, 'kh.txt', text(20_000, 'h'));
    await migrate(env.context, files({ filter: { appIds: [app] } }));
    await finalize(env.context, files({ filter: { appIds: [app] } }));
    const run = await cli(['rollback', '--yes', '--keep-hybrid', '--app', app, '--tables', 'files'], env.cliEnv);
    expect(run.code).toBe(0);
    const row = await fileRow(env.db, id);
    expect(row.storage_location).toBe('hybrid');
    expect(row.content).toBe(text(20_000, 'h'));
    expect(await objectText(env.store, row.r2_object_key!)).toBe(text(20_000, 'h'));
  });

  it('cleanup deletes only unreferenced objects older than the grace period, dry-run by default', async () => {
    const app = await insertApp(env.db);
    const id = await insertFile(env.db, app, 'referenced.txt', text(3000));
    await migrate(env.context, files({ filter: { appIds: [app] } }));
    await ours(`apps/${app}/files/orphan-1.txt`, 'old orphan');
    await ours(`apps/${app}/files/orphan-2.txt`, 'old orphan 2');
    await overwrite(`apps/${app}/files/the-apps-own.txt`, 'written by the app, its row not saved yet');
    await overwrite(`outside/not-ours.txt`, 'not under apps/');
    const listing = await cli(['cleanup', '--app', app, '--grace', '0s', '--json'], env.cliEnv);
    expect(listing.code).toBe(0);
    expect(listing.json().listing.orphans).toBe(3);
    expect(await env.store.head(`apps/${app}/files/orphan-1.txt`)).toBeDefined();
    // inside the grace period nothing is touched
    const young = await cleanup(env.context, { appIds: [app], graceMs: 3_600_000, apply: true, concurrency: 2 });
    expect(young.deleted).toBe(0);
    expect(young.tooYoung).toBe(3);
    const run = await cli(['cleanup', '--app', app, '--grace', '0s', '--yes', '--json'], env.cliEnv);
    expect(run.code).toBe(0);
    expect(run.json().result.deleted).toBe(2);
    // an object without our marker is never deleted, whatever its age: the app may be about to name it
    expect(run.json().result.refused).toEqual([{ key: `apps/${app}/files/the-apps-own.txt`, reason: expect.stringMatching(/no overskill-storage marker/) }]);
    expect(await objectText(env.store, `apps/${app}/files/the-apps-own.txt`)).toBe('written by the app, its row not saved yet');
    expect(await env.store.head(`apps/${app}/files/orphan-1.txt`)).toBeUndefined();
    expect(await env.store.head((await fileRow(env.db, id)).r2_object_key!)).toBeDefined();
    expect(await env.store.head('outside/not-ours.txt')).toBeDefined();
  });

  it('cleanup --quarantine moves orphans (copy, verify, delete) so a mistake can be undone', async () => {
    const app = await insertApp(env.db);
    await ours(`apps/${app}/files/q.txt`, 'quarantine me');
    const run = await cli(['cleanup', '--app', app, '--grace', '0s', '--quarantine', 'quarantine/test', '--yes', '--json'], env.cliEnv);
    expect(run.code).toBe(0);
    expect(run.json().result.quarantined).toBe(1);
    expect(await env.store.head(`apps/${app}/files/q.txt`)).toBeUndefined();
    expect(await objectText(env.store, `quarantine/test/apps/${app}/files/q.txt`)).toBe('quarantine me');
    expect((await cli(['cleanup', '--quarantine', 'apps/x'], env.cliEnv)).code).toBe(2);
  });

  it('migrate → verify → finalize → rollback → verify ends byte-identical', async () => {
    const app = await insertApp(env.db);
    for (let i = 0; i < 25; i++) await insertFile(env.db, app, `round/${i}.txt`, text(500 + i * 997, `r${i}é`));
    const snapshot = async () => query(env.db, 'SELECT id, content FROM app_files WHERE app_id = $1 ORDER BY id', [app]);
    const before = await snapshot();
    for (const args of [['migrate', '--yes'], ['verify'], ['finalize', '--yes'], ['verify', '--deep'], ['rollback', '--yes', '--purge'], ['verify']]) {
      const run = await cli([...args, '--app', app], env.cliEnv);
      expect(run.code, `${args.join(' ')}: ${run.stdout} ${run.stderr}`).toBe(0);
    }
    expect(await snapshot()).toEqual(before);
    const leftovers = (await bucketFingerprint(env.store)).filter((entry) => entry.startsWith(`apps/${app}/`));
    expect(leftovers).toEqual([]);
  });
});

describe('cleanup against a flip racing it', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => env?.close());

  it('asks the database again right before deleting: a key a row started naming during the walk is kept', async () => {
    const app = await insertApp(env.db);
    const other = await insertApp(env.db);
    const id = await insertFile(env.db, app, 'late.txt', text(3000, 'late '));
    const key = `apps/${app}/files/late.txt`;
    const put = (k: string) => env.store.putVerified({ key: k, body: Buffer.from(text(3000, 'late ')), sha256: sha256Hex(text(3000, 'late ')), contentType: 'text/plain' });
    // an object uploaded by a run that stopped before its flip: an orphan, for now
    await put(key);
    await put(`apps/${other}/files/x.txt`);
    const store = hookedStore(env.s3);
    const list = store.list.bind(store);
    store.list = async function* (prefix: string, startAfter?: string) {
      for await (const object of list(prefix, startAfter)) {
        yield object;
        // the rerun's flip lands after cleanup judged the first app's objects, before it deletes anything
        if (object.key.startsWith(`apps/${other}/`)) {
          await query(env.db, "UPDATE app_files SET storage_location = 'hybrid', r2_object_key = $2, content_hash = encode(sha256(convert_to(content, 'UTF8')), 'hex') WHERE id = $1", [id, key]);
        }
      }
    };
    const result = await cleanup({ ...env.context, store }, { appIds: [app, other], graceMs: 0, apply: true, concurrency: 2, groupObjects: 1 });
    store.destroy();
    expect(result.orphans).toBe(2);
    expect(result.deleted).toBe(1);
    expect(await env.store.head(key)).toBeDefined();
  });
});

describe('migrate --refresh-stale', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => env?.close());

  it('re-uploads hybrid rows the app rewrote after upload, so verify is clean and finalize can proceed', async () => {
    const app = await insertApp(env.db);
    const stale = await insertFile(env.db, app, 'stale.txt', text(20_000, 'v1 '));
    const fresh = await insertFile(env.db, app, 'fresh.txt', text(20_000, 'same '));
    await migrate(env.context, defaultRunOptions({ tables: [FILES] }));
    // the app's old write path: content only, flags untouched
    await query(env.db, 'UPDATE app_files SET content = $2 WHERE id = $1', [stale, text(25_000, 'v2 ')]);
    expect((await cli(['verify', '--app', app], env.cliEnv)).code).toBe(1);
    const finalizeFirst = await cli(['finalize', '--yes', '--json', '--app', app, '--tables', 'files'], env.cliEnv);
    expect(finalizeFirst.code).toBe(1);
    expect(finalizeFirst.json().result.tables[0].skipped[0].reason).toMatch(/--refresh-stale/);
    env.requests.clear();
    const refresh = await cli(['migrate', '--yes', '--json', '--refresh-stale', '--app', app, '--tables', 'files'], env.cliEnv);
    expect(refresh.code, refresh.stderr).toBe(0);
    expect(refresh.json().result.uploaded).toBe(1);
    let row = await fileRow(env.db, stale);
    expect(row.storage_location).toBe('hybrid');
    expect(await objectText(env.store, row.r2_object_key!)).toBe(text(25_000, 'v2 '));
    expect((await cli(['verify', '--deep', '--app', app], env.cliEnv)).code).toBe(0);
    expect((await cli(['finalize', '--yes', '--app', app, '--tables', 'files'], env.cliEnv)).code).toBe(0);
    row = await fileRow(env.db, stale);
    expect(row.storage_location).toBe('r2');
    expect((await fileRow(env.db, fresh)).storage_location).toBe('r2');
    expect((await cli(['cat', app, 'stale.txt'], env.cliEnv)).stdout).toBe(text(25_000, 'v2 '));
  });
});
