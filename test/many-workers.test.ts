import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { spawnCliAndWait } from './support/cli.ts';
import { insertApp, text } from './support/seed.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { query } from '../src/db.ts';

/**
 * Several migrate processes on one database at once: PostgreSQL (claims under SKIP LOCKED) is the only
 * coordinator. The proxy counts the PUTs each key receives across all of them.
 */
// PGlite serves one transaction at a time and has no other sessions to kill: this suite needs a real PostgreSQL.
describe.skipIf(ON_PGLITE)('many workers', () => {
  let env: TestEnv;
  let proxy: S3Proxy;

  async function seed(apps: number, filesPerApp: number): Promise<string[]> {
    const ids: string[] = [];
    for (let a = 0; a < apps; a++) {
      const app = await insertApp(env.db);
      ids.push(app);
      await query(
        env.db,
        `INSERT INTO app_files (app_id, path, content) SELECT $1::bigint, 'f/' || i || '.js', repeat(md5(i::text || $1), 40 + i % 50) FROM generate_series(1, $2::int) i`,
        [app, filesPerApp],
      );
    }
    return ids;
  }

  beforeAll(async () => {
    env = await createTestEnv();
    proxy = await new S3Proxy(env.s3.port, env.s3.bucket).start();
    proxy.latencyMs = 5;
  });
  afterAll(async () => {
    await proxy?.stop();
    await env?.close();
  });

  it('four processes started at once upload every row exactly once and leave none behind', async () => {
    const apps = await seed(6, 60);
    const cliEnv = { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint };
    const args = ['migrate', '--yes', '--json', '--tables', 'files', '--batch-size', '10', '--concurrency', '4'];
    const runs = await Promise.all([0, 1, 2, 3].map(() => spawnCliAndWait(args, cliEnv)));
    for (const run of runs) expect(run.code, run.stderr).toBe(0);
    const uploadedPerRun = runs.map((run) => run.json().result?.uploaded ?? 0);
    expect(uploadedPerRun.reduce((a, b) => a + b, 0)).toBe(360);
    expect(uploadedPerRun.filter((n) => n > 0).length, 'the work was shared').toBeGreaterThan(1);
    const puts = proxy.putsPerKey();
    const keys = [...puts.keys()].filter((key) => apps.some((app) => key.startsWith(`apps/${app}/`)));
    expect(keys).toHaveLength(360);
    expect(keys.filter((key) => puts.get(key) !== 1)).toEqual([]);
    const [{ left }] = await query<{ left: number }>(env.db, "SELECT count(*)::int AS left FROM app_files WHERE storage_location <> 'hybrid' AND octet_length(content) >= 1024");
    expect(left).toBe(0);
    const [{ claims }] = await query<{ claims: number }>(env.db, 'SELECT count(*)::int AS claims FROM overskill_storage_claims');
    expect(claims).toBe(0);
  });

  it('--shard I/N partitions the rows: N processes, disjoint work, nothing missed', async () => {
    const apps = await seed(2, 90);
    const cliEnv = { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint };
    const before = proxy.seen.length;
    const runs = await Promise.all(
      [0, 1, 2].map((index) => spawnCliAndWait(['migrate', '--yes', '--json', '--tables', 'files', '--shard', `${index}/3`, '--app', apps.join(',')], cliEnv)),
    );
    for (const run of runs) expect(run.code, run.stderr).toBe(0);
    expect(runs.map((run) => run.json().result.uploaded).reduce((a: number, b: number) => a + b, 0)).toBe(180);
    const puts = proxy.seen.slice(before).filter((request) => request.method === 'PUT' && request.key.startsWith('apps/'));
    expect(new Set(puts.map((request) => request.key)).size).toBe(puts.length);
  });
});
