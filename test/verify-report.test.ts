import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PutObjectCommand, DeleteObjectCommand } from '@aws-sdk/client-s3';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { fileRow, insertApp, insertFile, text } from './support/seed.ts';
import { migrate } from '../src/ops/migrate.ts';
import { finalize } from '../src/ops/finalize.ts';
import { verify } from '../src/ops/verify.ts';
import { defaultRunOptions } from '../src/ops/options.ts';
import { FILES } from '../src/tables.ts';
import { query } from '../src/db.ts';

describe('verify and report', () => {
  let env: TestEnv;
  let app: string;
  const ids: Record<string, string> = {};

  const overwrite = (key: string, body: string) =>
    env.store.client.send(new PutObjectCommand({ Bucket: env.s3.bucket, Key: key, Body: Buffer.from(body), ContentLength: Buffer.byteLength(body) }));

  beforeAll(async () => {
    env = await createTestEnv();
    app = await insertApp(env.db);
    for (const name of ['ok', 'missing', 'sameSize', 'otherSize', 'appWrote', 'r2ok', 'r2corrupt', 'flagR2NoKey', 'flagDbWithKey', 'flagR2WithContent']) {
      ids[name] = await insertFile(env.db, app, `src/${name}.ts`, text(name.startsWith('r2') ? 20_000 : 3000, `${name} `));
    }
    await insertFile(env.db, app, 'tiny.txt', 'small');
    await migrate(env.context, defaultRunOptions({ tables: [FILES] }));
    await finalize(env.context, defaultRunOptions({ tables: [FILES] }));
  });
  afterAll(async () => env?.close());

  it('is clean after migrate and finalize, using list requests instead of one request per row', async () => {
    env.requests.clear();
    const result = await verify(env.context, { tables: [FILES], filter: {}, deep: false, orphans: true, concurrency: 4 });
    expect(result.problems).toEqual([]);
    expect(result.checked.files).toBe(10);
    expect(env.requests.get('HeadObjectCommand') ?? 0).toBe(0);
    expect(env.requests.get('GetObjectCommand') ?? 0).toBe(0);
    expect(env.requests.get('ListObjectsV2Command')).toBe(1);
    const deep = await verify(env.context, { tables: [FILES], filter: {}, deep: true, orphans: false, concurrency: 4 });
    expect(deep.problems).toEqual([]);
  });

  it('names every problem with row, path, key and what differs, and exits 1', async () => {
    const key = async (name: string) => (await fileRow(env.db, ids[name])).r2_object_key!;
    await env.store.client.send(new DeleteObjectCommand({ Bucket: env.s3.bucket, Key: await key('missing') }));
    await overwrite(await key('sameSize'), text(3000, 'XXXX '));
    await overwrite(await key('otherSize'), 'short');
    await query(env.db, 'UPDATE app_files SET content = $2 WHERE id = $1', [ids.appWrote, text(3000, 'rewritten ')]);
    await overwrite(await key('r2corrupt'), text(20_000, 'evil '));
    await query(env.db, "UPDATE app_files SET storage_location = 'r2', r2_object_key = NULL, content = NULL WHERE id = $1", [ids.flagR2NoKey]);
    await query(env.db, "UPDATE app_files SET storage_location = 'database' WHERE id = $1", [ids.flagDbWithKey]);
    await query(env.db, "UPDATE app_files SET storage_location = 'r2' WHERE id = $1", [ids.flagR2WithContent]);
    await overwrite(`apps/${app}/files/orphan.js`, 'nobody points here');

    const run = await cli(['verify', '--orphans', '--json', '--tables', 'files'], env.cliEnv);
    expect(run.code).toBe(1);
    const result = run.json();
    const problemOf = (name: string) => result.problems.filter((p: { id: string }) => p.id === ids[name]).map((p: { problem: string }) => p.problem).join(' | ');
    expect(problemOf('missing')).toMatch(/object is missing/);
    expect(problemOf('sameSize')).toMatch(/differ from the database content/);
    expect(problemOf('otherSize')).toMatch(/object is 5 bytes, the database content is 3000/);
    expect(problemOf('appWrote')).toMatch(/no longer matches content_hash/);
    expect(problemOf('flagR2NoKey')).toMatch(/r2 row has no object key/);
    // the plan's model code leaves the key when it writes a small content: the app's normal state, not a problem
    expect(problemOf('flagDbWithKey')).toBe('');
    expect(problemOf('flagR2WithContent')).toMatch(/r2 row still has database content/);
    expect(problemOf('ok')).toBe('');
    expect(problemOf('r2ok')).toBe('');
    // same-size corruption of an r2-only object is invisible to listings: --deep downloads and hashes it
    expect(problemOf('r2corrupt')).toBe('');
    // the row that lost its key left its object unreferenced too
    expect(result.orphans.map((o: { key: string }) => o.key).sort()).toEqual([`apps/${app}/files/orphan.js`, `apps/${app}/files/src/flagR2NoKey.ts`]);
    const human = await cli(['verify', '--tables', 'files'], env.cliEnv);
    expect(human.stdout).toContain(`files #${ids.missing} app ${app} "src/missing.ts" [apps/${app}/files/src/missing.ts]: object is missing`);

    const deep = await cli(['verify', '--deep', '--json', '--tables', 'files'], env.cliEnv);
    expect(deep.code).toBe(1);
    const deepProblems = deep.json().problems.filter((p: { id: string }) => p.id === ids.r2corrupt);
    expect(deepProblems.map((p: { problem: string }) => p.problem).join()).toMatch(/hash/);
  });

  it('--sample checks a stable subset', async () => {
    const first = await verify(env.context, { tables: [FILES], filter: {}, deep: false, orphans: false, samplePercent: 50, concurrency: 2 });
    const second = await verify(env.context, { tables: [FILES], filter: {}, deep: false, orphans: false, samplePercent: 50, concurrency: 2 });
    expect(first.checked.files).toBe(second.checked.files);
    expect(first.checked.files).toBeLessThan(10);
  });

  it('report: counts and bytes per location from one aggregate, as table, JSON and markdown, with prices as options', async () => {
    const json = await cli(['report', '--format', 'json', '--tables', 'files', '--price-storage', '1', '--price-class-a', '1000000'], env.cliEnv);
    expect(json.code).toBe(0);
    const report = json.json();
    const byLocation = Object.fromEntries(report.tables[0].locations.map((l: { location: string }) => [l.location, l]));
    const [{ r2, db }] = await query<{ r2: number; db: number }>(
      env.db,
      `SELECT count(*) FILTER (WHERE storage_location = 'r2')::int AS r2, coalesce(sum(octet_length(content)), 0)::float8 AS db FROM app_files`,
    );
    expect(byLocation.r2?.rows ?? 0).toBe(r2);
    expect(report.totals.dbBytes).toBe(db);
    expect(report.prices.storagePerGbMonth).toBe(1);
    expect(report.cost.r2StoragePerMonth).toBeCloseTo(report.totals.r2Bytes / 1e9, 12);
    expect(report.cost.uploadsSoFar).toBeCloseTo(report.totals.movedRows, 9);
    const markdown = await cli(['report', '--format', 'markdown'], env.cliEnv);
    expect(markdown.stdout).toMatch(/^## R2 storage report/m);
    expect(markdown.stdout).toMatch(/\| table \| location \| rows \|/);
    const table = await cli(['report'], env.cliEnv);
    expect(table.stdout).toMatch(/Migration progress/);
    expect(table.stdout).toMatch(/\$0\.015\/GB-month/);
  });
});
