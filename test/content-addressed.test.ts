import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { bucketFingerprint, databaseFingerprint, insertApp, insertFile, insertVersion, insertVersionFile, text } from './support/seed.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { query } from '../src/db.ts';

const sha = (s: string) => createHash('sha256').update(Buffer.from(s, 'utf8')).digest('hex');

describe('content-addressed layout', () => {
  let env: TestEnv;
  let proxy: S3Proxy;
  let app: string;
  const shared = text(4000, 'same bytes ');

  beforeAll(async () => {
    env = await createTestEnv();
    proxy = await new S3Proxy(env.s3.port, env.s3.bucket).start();
    app = await insertApp(env.db);
    const a = await insertFile(env.db, app, 'a.js', shared);
    await insertFile(env.db, app, 'copy/of/a.js', shared);
    await insertFile(env.db, app, 'different.js', text(30_000, 'other '));
    const version = await insertVersion(env.db, app, '1', JSON.stringify({ 'a.js': shared }));
    await insertVersionFile(env.db, version, a, 'created', shared);
  });
  afterAll(async () => {
    await proxy?.stop();
    await env?.close();
  });

  it('says it cannot coexist with the unique key index, before changing anything', async () => {
    const before = await databaseFingerprint(env.db);
    const run = await cli(['migrate', '--yes', '--key-layout', 'content-addressed'], env.cliEnv);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/cannot coexist with a unique index on app_files\.r2_object_key and app_version_files\.r2_content_key/);
    expect(run.stderr).toMatch(/schema --apply --key-layout content-addressed/);
    expect(await databaseFingerprint(env.db)).toBe(before);
    expect(await bucketFingerprint(env.store)).toEqual([]);
    const schema = await cli(['schema', '--key-layout', 'content-addressed'], env.cliEnv);
    expect(schema.code).toBe(1);
  });

  it('after schema --apply --key-layout content-addressed, identical contents share one object', async () => {
    const apply = await cli(['schema', '--apply', '--yes', '--key-layout', 'content-addressed', '--json'], env.cliEnv);
    expect(apply.code, apply.stderr).toBe(0);
    expect(apply.json().applied.join('\n')).toMatch(/DROP INDEX CONCURRENTLY IF EXISTS index_app_files_on_r2_object_key/);
    expect((await cli(['schema', '--key-layout', 'content-addressed'], env.cliEnv)).code).toBe(0);
    expect((await cli(['schema'], env.cliEnv)).code, 'the path-layout check now wants its unique index back').toBe(1);

    const run = await cli(['migrate', '--yes', '--json', '--key-layout', 'content-addressed'], { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint });
    expect(run.code, run.stderr).toBe(0);
    const blob = `apps/${app}/blobs/${sha(shared)}`;
    const keys = await query<{ key: string }>(env.db, `SELECT r2_object_key AS key FROM app_files WHERE app_id = $1 AND path <> 'different.js' UNION ALL SELECT r2_content_key FROM app_version_files`, [app]);
    expect(keys.map((row) => row.key)).toEqual([blob, blob, blob]);
    expect(proxy.putsPerKey().get(blob), 'one upload for three rows').toBe(1);
    const [snapshot] = await query<{ key: string }>(env.db, 'SELECT r2_snapshot_key AS key FROM app_versions');
    expect(snapshot.key).toMatch(/snapshots\/\d+\/snapshot\.json$/);
    expect((await cli(['verify', '--deep', '--orphans', '--json'], env.cliEnv)).json().problemCount).toBe(0);
  });

  it('rollback --purge keeps a shared object while any row still names it', async () => {
    const [{ id }] = await query<{ id: string }>(env.db, "SELECT id FROM app_files WHERE path = 'a.js'");
    // roll back one of the three rows only (a row filter by id is what --shard gives us here)
    const run = await cli(['rollback', '--yes', '--purge', '--tables', 'files', '--shard', `${Number(id) % 7}/7`, '--app', app], env.cliEnv);
    expect([0, 1]).toContain(run.code);
    expect(await env.store.head(`apps/${app}/blobs/${sha(shared)}`)).toBeDefined();
    expect((await cli(['verify', '--deep'], env.cliEnv)).code).toBe(0);
  });

  it('the path layout refuses to restore its unique index while rows share objects, and changes nothing', async () => {
    expect((await cli(['migrate', '--yes', '--key-layout', 'content-addressed'], env.cliEnv)).code).toBe(0);
    const [{ sharing }] = await query<{ sharing: number }>(env.db, 'SELECT max(n)::int AS sharing FROM (SELECT count(*) AS n FROM app_files GROUP BY r2_object_key) c');
    expect(sharing).toBe(2);
    const before = await databaseFingerprint(env.db);
    const run = await cli(['schema', '--apply', '--yes'], env.cliEnv);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/Rows share objects/);
    expect(await databaseFingerprint(env.db)).toBe(before);
  });
});
