import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { bucketFingerprint, databaseFingerprint, fileRow, insertApp, insertFile, objectText, text } from './support/seed.ts';
import { query } from '../src/db.ts';

const sha = (s: string) => createHash('sha256').update(Buffer.from(s, 'utf8')).digest('hex');

describe('migrate (app_files)', () => {
  let env: TestEnv;
  const ids: Record<string, string> = {};
  const contents: Record<string, string> = {};

  beforeAll(async () => {
    env = await createTestEnv();
    const app = await insertApp(env.db, 'shop');
    const add = async (name: string, path: string, content: string) => {
      contents[name] = content;
      ids[name] = await insertFile(env.db, app, path, content, 'js');
    };
    await add('empty', 'empty.js', '');
    await add('b1023', 'src/b1023.js', text(1023));
    await add('b1024', 'src/b1024.js', text(1024));
    await add('b10240', 'src/b10240.js', text(10240));
    await add('b10241', 'src/b10241.js', text(10241));
    // 600 characters but 1200 bytes: size is counted in UTF-8 bytes, not characters.
    await add('utf8', 'i18n/ü.json', 'é'.repeat(600));
    // 1000 characters, 999 of them ASCII: 1001 bytes... below the threshold.
    await add('utf8small', 'i18n/small.txt', 'a'.repeat(510) + 'é'.repeat(256));
    await add('spaces', '/components/My Button.tsx', text(2000, 'ab '));
    await add('unicode', 'pages/日本語/índex.html', text(3000, '日本'));
    await add('dotdot', 'src/../../etc/passwd', text(2000));
    await add('control', 'src/bad\u0007name.js', text(2000));
    await add('doubleslash', 'src//x.js', text(2000));
  }, 120_000);

  afterAll(async () => env?.close());

  it('--dry-run prints the plan and changes neither the database nor the bucket', async () => {
    const dbBefore = await databaseFingerprint(env.db);
    const bucketBefore = await bucketFingerprint(env.store);
    const run = await cli(['migrate', '--dry-run', '--json', '--tables', 'files'], env.cliEnv);
    expect(run.code).toBe(0);
    const plan = run.json().plan;
    expect(plan.operation).toBe('migrate');
    // 1024, 10240, 10241, utf8 (1200 B), spaces, unicode, dotdot, control, doubleslash are >= 1 KiB
    expect(plan.rows).toBe(9);
    expect(plan.requests.classA).toBe(9);
    expect(plan.cost.requests).toBeCloseTo((9 / 1e6) * 4.5, 10);
    expect(plan.contentBytesFreedLater).toBe(10241);
    const [above] = await query<{ stored: number }>(env.db, "SELECT sum(pg_column_size(content))::int AS stored FROM app_files WHERE octet_length(content) > 10240 AND storage_location = 'database'");
    expect(plan.databaseBytesFreedLater).toBe(above.stored);
    expect(await databaseFingerprint(env.db)).toBe(dbBefore);
    expect(await bucketFingerprint(env.store)).toEqual(bucketBefore);
  });

  it('refuses to write without a TTY and without --yes (exit 2), and changes nothing', async () => {
    const dbBefore = await databaseFingerprint(env.db);
    const run = await cli(['migrate', '--tables', 'files'], env.cliEnv);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/--yes/);
    expect(await databaseFingerprint(env.db)).toBe(dbBefore);
    expect(await bucketFingerprint(env.store)).toEqual([]);
  });

  it('migrates what the placement policy says, refuses unsafe paths, and exits 1 naming them', async () => {
    const run = await cli(['migrate', '--yes', '--json', '--tables', 'files', '--batch-size', '3'], env.cliEnv);
    expect(run.code).toBe(1);
    const result = run.json().result;
    const refused = result.tables[0].skipped.map((p: { id: string }) => p.id).sort();
    expect(refused).toEqual([ids.dotdot, ids.control, ids.doubleslash].sort());
    // the refused rows are still eligible, and the run says so
    expect(result.remaining).toBe(3);
    for (const name of ['empty', 'b1023', 'utf8small']) {
      const row = await fileRow(env.db, ids[name]);
      expect(row.storage_location, name).toBe('database');
      expect(row.r2_object_key).toBeNull();
    }
    for (const name of ['dotdot', 'control', 'doubleslash']) {
      expect((await fileRow(env.db, ids[name])).storage_location).toBe('database');
    }
    for (const name of ['b1024', 'b10240', 'b10241', 'utf8', 'spaces', 'unicode']) {
      const row = await fileRow(env.db, ids[name]);
      expect(row.storage_location, name).toBe('hybrid');
      expect(row.content, 'migrate never clears content').toBe(contents[name]);
      expect(row.content_hash).toBe(sha(contents[name]));
      expect(await objectText(env.store, row.r2_object_key!)).toBe(contents[name]);
    }
    expect((await fileRow(env.db, ids.spaces)).r2_object_key).toMatch(/^apps\/\d+\/files\/components\/My Button\.tsx$/);
    expect((await fileRow(env.db, ids.unicode)).r2_object_key).toMatch(/^apps\/\d+\/files\/pages\/日本語\/índex\.html$/);
    const head = await env.store.head((await fileRow(env.db, ids.utf8)).r2_object_key!);
    expect(head?.sha256).toBe(sha(contents.utf8));
    expect(head?.size).toBe(1200);
  });

  it('a rerun resumes: no row is uploaded again', async () => {
    env.requests.clear();
    const before = await bucketFingerprint(env.store);
    const run = await cli(['migrate', '--yes', '--json', '--tables', 'files'], env.cliEnv);
    // the refused rows are refused again (exit 1), but nothing is uploaded
    expect(run.code).toBe(1);
    expect(run.json().result.uploaded).toBe(0);
    expect(await bucketFingerprint(env.store)).toEqual(before);
  });

  it('verify is clean after migrate, and report counts every location', async () => {
    const verify = await cli(['verify', '--json', '--tables', 'files'], env.cliEnv);
    expect(verify.code).toBe(0);
    expect(verify.json().checked.files).toBe(6);
    const report = await cli(['report', '--format', 'json', '--tables', 'files'], env.cliEnv);
    expect(report.code).toBe(0);
    const files = report.json().tables[0];
    const hybrid = files.locations.find((l: { location: string }) => l.location === 'hybrid');
    expect(hybrid.rows).toBe(6);
    const [{ bytes }] = await query<{ bytes: number }>(env.db, "SELECT sum(octet_length(content))::float8 AS bytes FROM app_files WHERE storage_location = 'hybrid'");
    expect(hybrid.r2Bytes).toBe(bytes);
    expect(files.finalizableRows).toBe(1);
    expect(files.finalizableBytes).toBe(10241);
  });
});

describe('migrate --largest-first and --limit', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => env?.close());

  it('takes the largest contents first (by size band), and the dry-run plan names the same rows', async () => {
    const app = await insertApp(env.db);
    const sizes = [2000, 200_000, 30_000, 2_000_000, 5000, 150_000];
    const ids = [];
    for (const [i, size] of sizes.entries()) ids.push(await insertFile(env.db, app, `f${i}.txt`, text(size)));
    const plan = await cli(['migrate', '--dry-run', '--json', '--largest-first', '--limit', '3', '--tables', 'files'], env.cliEnv);
    expect(plan.json().plan.rows).toBe(3);
    expect(plan.json().plan.bytes).toBe(2_000_000 + 200_000 + 150_000);
    const run = await cli(['migrate', '--yes', '--largest-first', '--limit', '3', '--tables', 'files'], env.cliEnv);
    expect(run.code).toBe(0);
    const moved = (await query<{ id: string }>(env.db, "SELECT id FROM app_files WHERE storage_location = 'hybrid' ORDER BY id")).map((row) => row.id);
    expect(moved).toEqual([ids[1], ids[3], ids[5]]);
  });
});
