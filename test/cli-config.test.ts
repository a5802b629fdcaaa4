import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli, spawnCliAndWait } from './support/cli.ts';
import { ConfigResolver } from '../src/config.ts';
import { describeConnectionError, query } from '../src/db.ts';
import { insertApp, insertFile, text } from './support/seed.ts';

describe('configuration and usage errors', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
    const app = await insertApp(env.db);
    await insertFile(env.db, app, 'a.js', text(2000));
  });
  afterAll(async () => env?.close());

  const expectOneSentence = (run: { code: number; stderr: string; stdout: string }, pattern: RegExp) => {
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(pattern);
    expect(run.stderr).not.toMatch(/\n\s+at /); // no stack trace
  };

  it('--help and --version work, and every subcommand has help with an example', async () => {
    const help = await spawnCliAndWait(['--help'], env.cliEnv);
    expect(help.code).toBe(0);
    const version = await spawnCliAndWait(['--version'], env.cliEnv);
    expect(version.code).toBe(0);
    expect(version.stdout.split('\n')[0]).toMatch(/^overskill-storage \d+\.\d+\.\d+$/);
    expect(version.stdout).toMatch(/^build: +(commit [0-9a-f]+|built )/m);
    expect(version.stdout).toMatch(/^runtime: node v\d+/m);
    for (const command of ['schema', 'migrate', 'verify', 'finalize', 'rollback', 'report', 'restore-version', 'cleanup', 'export', 'cat', 'demo']) {
      const run = await cli([command, '--help'], env.cliEnv);
      expect(run.code, command).toBe(0);
      expect(run.stdout, command).toMatch(/Example/);
      expect(run.stdout, command).toMatch(/--json/);
    }
  });

  it('a missing DATABASE_URL names the fix', async () => {
    const { DATABASE_URL: _, ...rest } = env.cliEnv;
    expectOneSentence(await cli(['report'], rest), /DATABASE_URL is not set/);
  });

  it('a malformed DATABASE_URL names the fix', async () => {
    expectOneSentence(await cli(['report'], { ...env.cliEnv, DATABASE_URL: 'not a url' }), /DATABASE_URL is malformed/);
    expectOneSentence(await cli(['report'], { ...env.cliEnv, DATABASE_URL: 'mysql://x@y/z' }), /must start with postgres/);
  });

  it('an unreachable database names host and port', async () => {
    expectOneSentence(await cli(['report'], { ...env.cliEnv, DATABASE_URL: 'postgres://postgres:hunter2secret@127.0.0.1:1/x' }), /Cannot reach the database at 127\.0\.0\.1:1/);
  });

  it('a missing database is named', async () => {
    expectOneSentence(await cli(['report'], { ...env.cliEnv, DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/no_such_db_here' }), /Database "no_such_db_here" does not exist/);
  });

  it('a refused login is one sentence without the password', () => {
    const error = describeConnectionError({ code: '28P01', message: 'password authentication failed for user "app"' }, 'postgres://app:s3cr3tpass@db.internal:5432/prod');
    expect(error.message).toBe('The database refused the login for user "app": check the user and password in DATABASE_URL.');
    expect(error.message).not.toContain('s3cr3tpass');
  });

  it('a missing bucket and refused credentials are named, and the secret never printed', async () => {
    expectOneSentence(await cli(['verify'], { ...env.cliEnv, R2_BUCKET: 'no-such-bucket' }), /Bucket "no-such-bucket" does not exist/);
    // s3rver checks the access key id (it does not compute SigV4), so an unknown key id is the refusal here.
    const secret = 'wrong-secret-value-1234567';
    const keyId = 'AKIAWRONGKEYID0001';
    const run = await cli(['verify', '--json'], { ...env.cliEnv, R2_ACCESS_KEY_ID: keyId, R2_SECRET_ACCESS_KEY: secret });
    expectOneSentence(run, /refused the credentials/);
    expect(run.stdout + run.stderr).not.toContain(secret);
    expect(run.stdout + run.stderr).not.toContain(keyId);
  });

  it('unknown flags and bad numbers are usage errors (exit 2)', async () => {
    for (const args of [
      ['migrate', '--frobnicate'],
      ['migrate', '--batch-size', '0'],
      ['migrate', '--batch-size', '-5'],
      ['migrate', '--batch-size', 'NaN'],
      ['migrate', '--concurrency', '1e99'],
      ['migrate', '--concurrency', '99999999999999999999'],
      ['migrate', '--rollout', '0'],
      ['migrate', '--rollout', '101'],
      ['migrate', '--max-rate', '-1'],
      ['migrate', '--app', 'abc'],
      ['migrate', '--app', "1; DROP TABLE apps"],
      ['migrate', '--shard', '4/4'],
      ['migrate', '--tables', 'files,bogus'],
      ['migrate', '--hybrid-threshold', '20KiB', '--r2-threshold', '10KiB'],
      ['report', '--format', 'xml'],
      ['cleanup', '--grace', 'soon'],
      ['restore-version', '0', '1'],
      ['nonsense'],
    ]) {
      const run = await cli(args, env.cliEnv);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr.length, args.join(' ')).toBeGreaterThan(0);
    }
  });

  it('a plain http endpoint on a non-loopback host is refused unless allowed', async () => {
    const run = await cli(['verify'], { ...env.cliEnv, R2_ENDPOINT: 'http://example.invalid:9000' });
    expectOneSentence(run, /--allow-insecure-endpoint/);
  });

  it('an --app id that does not exist is refused (exit 2), naming it, with a --json document for scripts', async () => {
    const run = await cli(['migrate', '--yes', '--app', '999999', '--json'], env.cliEnv);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/no app 999999/);
    expect(run.json()).toMatchObject({ command: 'migrate', ok: false, error: { exitCode: 2, kind: 'UsageError' } });
    expect(run.json().error.message).toMatch(/no app 999999/);
  });

  it('flags override the environment, which overrides .env', () => {
    const dir = mkdtempSync(join(tmpdir(), 'oss-env-'));
    try {
      writeFileSync(join(dir, '.env'), 'R2_BUCKET=from-dotenv\nR2_ENDPOINT="http://127.0.0.1:1"\n# comment\nCLOUDFLARE_R2_BUCKET_DB_FILES=plan-name\nR2_ACCESS_KEY_ID=k\nR2_SECRET_ACCESS_KEY=s\n');
      const fromFile = new ConfigResolver({ flags: {}, env: {}, cwd: dir }).objectStore();
      expect(fromFile.bucket).toBe('from-dotenv');
      const fromEnv = new ConfigResolver({ flags: {}, env: { R2_BUCKET: 'from-env' }, cwd: dir }).objectStore();
      expect(fromEnv.bucket).toBe('from-env');
      const fromFlag = new ConfigResolver({ flags: { bucket: 'from-flag' }, env: { R2_BUCKET: 'from-env' }, cwd: dir }).objectStore();
      expect(fromFlag.bucket).toBe('from-flag');
      const planName = new ConfigResolver({ flags: {}, env: { CLOUDFLARE_R2_BUCKET_DB_FILES: 'plan-bucket' }, cwd: tmpdir() });
      expect(planName.get('bucket')).toBe('plan-bucket');
      const account = new ConfigResolver({ flags: {}, env: { R2_ACCOUNT_ID: 'abc123', R2_ACCESS_KEY_ID: 'k', R2_SECRET_ACCESS_KEY: 's', R2_BUCKET: 'b-1' }, cwd: tmpdir() }).objectStore();
      expect(account.endpoint).toBe('https://abc123.r2.cloudflarestorage.com');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('NO_COLOR is honoured and --json puts one document on stdout', async () => {
    const run = await cli(['report', '--json'], { ...env.cliEnv, NO_COLOR: '1', FORCE_COLOR: '1' });
    expect(run.code).toBe(0);
    expect(() => JSON.parse(run.stdout)).not.toThrow();
    expect(run.stdout + run.stderr).not.toMatch(/\u001b\[/);
  });
});

describe('schema', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv({ schema: false });
  });
  afterAll(async () => env?.close());

  it('reports what is missing (exit 1), prints the SQL on --apply --dry-run (exit 0, nothing changed), applies idempotently', async () => {
    const missing = await cli(['schema', '--json'], env.cliEnv);
    expect(missing.code).toBe(1);
    expect(missing.json().missing).toContain('app_files.storage_location');
    const dry = await cli(['schema', '--apply', '--dry-run'], env.cliEnv);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/ALTER TABLE app_files ADD COLUMN IF NOT EXISTS storage_location/);
    expect((await cli(['schema'], env.cliEnv)).code).toBe(1);
    const refused = await cli(['schema', '--apply'], env.cliEnv);
    expect(refused.code).toBe(2);
    const announced = /Will run (\d+) statements? \(.*\), then (\d+) ANALYZE statements?/.exec(refused.stdout);
    // the page of SQL is --dry-run's: neither `schema` nor `schema --apply` prints it
    expect(refused.stdout).not.toMatch(/ALTER TABLE/);
    expect((await cli(['schema'], env.cliEnv)).stdout).not.toMatch(/ALTER TABLE/);
    expect(announced, refused.stdout).not.toBeNull();
    const applied = await cli(['schema', '--apply', '--yes', '--json'], env.cliEnv);
    expect(applied.code).toBe(0);
    expect(applied.json().applied.length).toBeGreaterThan(10);
    // what it said it would run is what it ran: the schema statements, then the ANALYZEs
    const ran: string[] = applied.json().applied;
    expect(ran.filter((statement) => !statement.startsWith('ANALYZE')).length).toBe(Number(announced![1]));
    expect(ran.filter((statement) => statement.startsWith('ANALYZE')).length).toBe(Number(announced![2]));
    const again = await cli(['schema', '--apply', '--yes', '--json'], env.cliEnv);
    expect(again.code).toBe(0);
    expect(again.json().applied).toEqual([]);
    expect((await cli(['schema'], env.cliEnv)).code).toBe(0);
    // each index the migration adds, with whose it is, why, and its size on disk
    const described = await cli(['schema', '--json'], env.cliEnv);
    const indexes: { name: string; origin: string; purpose: string; bytes: number }[] = described.json().indexes;
    const byName = new Map(indexes.map((index) => [index.name, index]));
    expect(byName.get('index_app_files_on_r2_object_key')?.origin).toBe('plan');
    expect(byName.get('index_app_files_on_r2_object_key_identity')?.origin).toBe('tool');
    for (const index of indexes) {
      const [{ bytes }] = await query<{ bytes: number }>(env.db, 'SELECT pg_relation_size(to_regclass($1))::float8 AS bytes', [index.name]);
      expect(index.bytes, index.name).toBe(bytes);
      expect(index.purpose, index.name).not.toBe('');
    }
    expect((await cli(['schema'], env.cliEnv)).stdout).toMatch(/index_app_files_on_r2_object_key_identity — \d+(\.\d+)? KiB, this tool's: /);
    // a data command on an incomplete schema names the fix instead of failing halfway
    const fresh = await createTestEnv({ schema: false });
    try {
      const run = await cli(['migrate', '--dry-run'], fresh.cliEnv);
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/schema --apply/);
    } finally {
      await fresh.close();
    }
  });
});
