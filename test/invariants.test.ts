import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { bucketFingerprint, fileRow, insertApp, insertFile, objectText, text } from './support/seed.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { hookedStore, storeAt } from './support/stores.ts';
import { spawnCli, spawnCliAndWait } from './support/cli.ts';
import { migrate } from '../src/ops/migrate.ts';
import { defaultRunOptions } from '../src/ops/options.ts';
import { FILES } from '../src/tables.ts';
import { query } from '../src/db.ts';
import { verify } from '../src/ops/verify.ts';
import { checkConsistency, hybridRowsWithStaleObjects } from './support/consistency.ts';

const sha = (s: string) => createHash('sha256').update(Buffer.from(s, 'utf8')).digest('hex');
const filesOnly = (overrides = {}) => defaultRunOptions({ tables: [FILES], ...overrides });

describe('invariants of migrate', () => {
  let env: TestEnv;
  let proxy: S3Proxy;

  beforeAll(async () => {
    env = await createTestEnv();
    proxy = await new S3Proxy(env.s3.port, env.s3.bucket).start();
    proxy.serverPort = env.s3.barePort;
  });
  afterAll(async () => {
    await proxy?.stop();
    await env?.close();
  });

  it('1: a row is never flipped when the stored bytes differ from what was sent (server stored corrupted bytes)', async () => {
    const app = await insertApp(env.db);
    const id = await insertFile(env.db, app, 'corrupt/me.js', text(4000, 'abc'));
    proxy.inject((request) => request.method === 'PUT' && request.key.includes('corrupt/me.js'), { kind: 'corrupt' }, 100);
    const store = storeAt(env.s3, proxy.endpoint);
    const result = await migrate({ db: env.db, store, databaseUrl: env.databaseUrl }, filesOnly({ filter: { appIds: [app] } }));
    store.destroy();
    proxy.clearFaults();
    expect(result.uploaded).toBe(0);
    expect(result.tables[0].failed).toHaveLength(1);
    expect(result.tables[0].failed[0].reason).toMatch(/could not be verified|differs/);
    const row = await fileRow(env.db, id);
    expect(row.storage_location).toBe('database');
    expect(row.r2_object_key).toBeNull();
    // a clean rerun stores the right bytes and flips
    const again = await migrate(env.context, filesOnly({ filter: { appIds: [app] } }));
    expect(again.uploaded).toBe(1);
    expect(await objectText(env.store, (await fileRow(env.db, id)).r2_object_key!)).toBe(text(4000, 'abc'));
  });

  it('3: a write by the app between our read and our flip is never lost (compare-and-set)', async () => {
    const app = await insertApp(env.db);
    const id = await insertFile(env.db, app, 'src/racing.ts', text(5000, 'old '));
    const store = hookedStore(env.s3);
    store.before = async (key) => {
      if (key.endsWith('src/racing.ts')) await query(env.db, 'UPDATE app_files SET content = $2 WHERE id = $1', [id, text(6000, 'new! ')]);
    };
    const result = await migrate({ db: env.db, store, databaseUrl: env.databaseUrl }, filesOnly({ filter: { appIds: [app] } }));
    store.destroy();
    expect(result.tables[0].changedMeanwhile.map((p) => p.id)).toEqual([id]);
    let row = await fileRow(env.db, id);
    expect(row.content).toBe(text(6000, 'new! '));
    expect(row.storage_location).toBe('database');
    expect(row.r2_object_key).toBeNull();
    // the next run takes the app's content
    await migrate(env.context, filesOnly({ filter: { appIds: [app] } }));
    row = await fileRow(env.db, id);
    expect(row.storage_location).toBe('hybrid');
    expect(row.content_hash).toBe(sha(text(6000, 'new! ')));
    expect(await objectText(env.store, row.r2_object_key!)).toBe(text(6000, 'new! '));
  });

  // The killed worker ran on this machine: its process id names no process, so its lease is ended at once and
  // the rerun takes its rows without waiting (test/pgbouncer.test.ts waits out one killed elsewhere).
  // PGlite serves one session at a time, so a killed process's open connection stalls it: real PostgreSQL only.
  it.skipIf(ON_PGLITE)('4: a kill between upload and flip leaves no row pointing at a missing or different object, and a rerun converges', async () => {
    const app = await insertApp(env.db);
    for (let i = 0; i < 30; i++) await insertFile(env.db, app, `kill/f${i}.js`, text(2000 + i, `k${i}`));
    const child = spawnCli(['migrate', '--yes', '--app', app, '--tables', 'files', '--batch-size', '5', '--concurrency', '2'], { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    // Let a few uploads through, then hold one whose object is stored, and kill the process while it waits.
    let forwarded = 0;
    await new Promise<void>((resolve) => {
      proxy.inject(
        (request) => request.method === 'PUT' && request.key.startsWith(`apps/${app}/`) && ++forwarded > 7,
        { kind: 'hold', onForwarded: () => resolve() },
        1,
      );
    });
    child.kill('SIGKILL');
    await exited;
    proxy.clearFaults();
    await checkConsistency(env);
    expect(await hybridRowsWithStaleObjects(env)).toEqual([]);
    const [{ stored }] = await query<{ stored: number }>(env.db, "SELECT count(*)::int AS stored FROM app_files WHERE app_id = $1 AND storage_location = 'database'", [app]);
    expect(stored, 'the kill happened before every row flipped').toBeGreaterThan(0);
    const started = Date.now();
    const rerun = await spawnCliAndWait(['migrate', '--yes', '--app', app, '--tables', 'files', '--json'], env.cliEnv);
    expect(rerun.code).toBe(0);
    expect(rerun.stderr).not.toMatch(/waiting \d+ s for its lease to expire/);
    expect(Date.now() - started).toBeLessThan(10_000);
    const [{ left }] = await query<{ left: number }>(env.db, "SELECT count(*)::int AS left FROM app_files WHERE app_id = $1 AND storage_location = 'database'", [app]);
    expect(left).toBe(0);
    await checkConsistency(env);
    expect(await hybridRowsWithStaleObjects(env)).toEqual([]);
    const check = await verify(env.context, { tables: [FILES], filter: { appIds: [app] }, deep: true, orphans: false, concurrency: 4 });
    expect(check.problems).toEqual([]);
  });

  it('5: --dry-run leaves the database and the bucket byte-identical', async () => {
    const app = await insertApp(env.db);
    await insertFile(env.db, app, 'dry/a.js', text(3000));
    const before = await bucketFingerprint(env.store);
    const [{ fp: dbBefore }] = await query<{ fp: string }>(env.db, 'SELECT md5(string_agg(f::text, \'|\' ORDER BY id)) AS fp FROM app_files f');
    for (const args of [['migrate'], ['finalize'], ['rollback'], ['rollback', '--purge'], ['cleanup', '--grace', '0s']]) {
      const run = await spawnCliAndWait([...args, '--dry-run', '--yes'], env.cliEnv);
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(0);
    }
    const [{ fp: dbAfter }] = await query<{ fp: string }>(env.db, 'SELECT md5(string_agg(f::text, \'|\' ORDER BY id)) AS fp FROM app_files f');
    expect(dbAfter).toBe(dbBefore);
    expect(await bucketFingerprint(env.store)).toEqual(before);
  });
});
