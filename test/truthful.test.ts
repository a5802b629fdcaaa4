import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { ADMIN_URL, createTestEnv, databaseUrlFor, ON_PGLITE, type TestEnv } from './support/env.ts';
import { createDb } from '../src/db.ts';
import { OVERSKILL_TABLES_SQL } from '../src/local/overskill-schema.ts';
import { applySchema } from '../src/ops/schema.ts';
import { cli } from './support/cli.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { databaseFingerprint, fileRow, insertApp, insertFile, text } from './support/seed.ts';
import { query } from '../src/db.ts';
import { ConfigResolver } from '../src/config.ts';
import { ourMetadata } from '../src/store/ownership.ts';
import { sha256Hex } from '../src/hashing.ts';

/** The app's place in a rollout, as the tool computes it (md5 of the id, first 32 bits, mod 100). */
const rolloutBucket = (appId: string) => parseInt(createHash('md5').update(appId).digest('hex').slice(0, 8), 16) % 100;

/**
 * The tool says only what is true: a scope that names nothing is an error, a failure is never a choice, no
 * unverified byte reaches a user, an endpoint that is not S3 is named as such (never "content is lost"), a
 * finding has a way out, a .env reads as dotenv users write it, and --json always gives one document.
 */
describe('telling the truth', () => {
  let env: TestEnv;
  let appId: string;
  const run = (args: string[], extra: NodeJS.ProcessEnv = {}) => cli(args, { ...env.cliEnv, ...extra });
  const schema = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'schemas', 'cli-output.schema.json'), 'utf8'));
  const validate = new Ajv2020({ strict: false, allErrors: true }).compile(schema);

  beforeAll(async () => {
    env = await createTestEnv();
    appId = await insertApp(env.db, 'truth');
    for (let i = 0; i < 6; i++) await insertFile(env.db, appId, `src/t${i}.ts`, text(12_000 + i, `t${i} `));
  });
  afterAll(async () => env?.close());

  it('a scope that names nothing that exists is refused (exit 2), naming it, and changes nothing', async () => {
    const before = await databaseFingerprint(env.db);
    for (const args of [
      ['verify', '--app', '999'],
      ['migrate', '--app', '999', '--dry-run'],
      ['migrate', '--app', '999', '--yes'],
      ['finalize', '--app', '999', '--yes'],
      ['rollback', '--app', '999', '--yes'],
      ['cleanup', '--app', '999', '--yes'],
      ['prune-versions', '--app', '999', '--keep-last', '1', '--yes'],
      ['cat', '999', 'src/t0.ts'],
    ]) {
      const refused = await run(args);
      expect(refused.code, args.join(' ')).toBe(2);
      expect(refused.stderr, args.join(' ')).toMatch(/no app 999/);
      expect(refused.stdout + refused.stderr, args.join(' ')).not.toMatch(/No problems found|Nothing to/);
    }
    // A rollout that takes none of the apps in scope, and a shard that takes none of the rows.
    const bucket = rolloutBucket(appId);
    expect(bucket, 'this app must sit above the lowest rollout place for the check below').toBeGreaterThanOrEqual(1);
    const none = await run(['migrate', '--dry-run', '--app', appId, '--rollout', String(bucket - 0.5)]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/--rollout .* takes none of the 1 app/);
    expect((await run(['migrate', '--dry-run', '--app', appId, '--rollout', String(bucket + 1)])).code).toBe(0);
    const shard = await run(['verify', '--shard', '9999/10000']);
    expect(shard.code).toBe(2);
    expect(shard.stderr).toMatch(/--shard 9999\/10000 takes none of the/);
    expect(await databaseFingerprint(env.db)).toBe(before);
  });

  it('--json gives one document for every outcome, errors included, following the schema', async () => {
    const failures = [
      await run(['verify', '--app', '999', '--json']),
      await run(['migrate', '--dry-run', '--json'], { DATABASE_URL: 'not a url' }),
      await run(['migrate', '--json', '--no-such-flag']),
    ];
    for (const failure of failures) {
      expect(failure.code).toBe(2);
      const document = failure.json();
      expect(document.ok).toBe(false);
      expect(document.error.exitCode).toBe(2);
      expect(document.error.message.length).toBeGreaterThan(10);
      expect(validate(document), JSON.stringify(validate.errors)).toBe(true);
    }
  });

  it('a delete the store failed is a failure: in the output, the exit code, the run state and report --items', async () => {
    const orphans = ['o1', 'o2', 'o3', 'o4'].map((name) => `apps/${appId}/files/orphans/${name}.txt`);
    for (const key of orphans) await env.store.putVerified(key, Buffer.from(key), sha256Hex(key), 'text/plain');
    await new Promise((resolve) => setTimeout(resolve, 1100)); // R2's one write per key per second
    const proxy = await new S3Proxy(env.s3.port, env.s3.bucket).start();
    try {
      const failing = orphans.slice(0, 2);
      proxy.inject((request) => request.method === 'DELETE' && failing.includes(request.key), { kind: 'status', status: 500, code: 'InternalError' }, 1000);
      const cleaned = await run(['cleanup', '--app', appId, '--grace', '0s', '--yes', '--json', '--max-attempts', '1'], { R2_ENDPOINT: proxy.endpoint });
      expect(cleaned.code).toBe(1);
      const result = cleaned.json().result;
      expect(result.failed.map((f: { key: string }) => f.key).sort()).toEqual([...failing].sort());
      expect(result.refused).toEqual([]);
      expect(result.run.state).toBe('failed');
      const items = (await run(['report', '--items', result.run.id, '--json'])).json().items as { outcome: string; object_key: string }[];
      expect(items.map((item) => [item.outcome, item.object_key]).sort()).toEqual(failing.map((key) => ['failed', key]).sort());
      const text = await run(['cleanup', '--app', appId, '--grace', '0s', '--yes', '--max-attempts', '1'], { R2_ENDPOINT: proxy.endpoint });
      expect(text.code).toBe(1);
      expect(text.stdout).toMatch(/could not be deleted/);
      expect(text.stdout).not.toMatch(/on purpose/);
    } finally {
      await proxy.stop();
    }
  });

  it('cat writes nothing of a content whose object does not match its hash', async () => {
    const id = await insertFile(env.db, appId, 'src/corrupt.ts', text(30_000, 'c'));
    expect((await run(['migrate', '--app', appId, '--yes'])).code).toBe(0);
    expect((await run(['finalize', '--app', appId, '--yes'])).code).toBe(0);
    const row = await fileRow(env.db, id);
    expect(row.storage_location).toBe('r2');
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const damaged = text(30_000, 'd');
    await env.store.objects.put(row.r2_object_key!, Buffer.from(damaged), { metadata: ourMetadata(row.content_hash!) });
    const catted = await run(['cat', appId, 'src/corrupt.ts']);
    expect(catted.code).toBe(1);
    expect(catted.stdout).toBe('');
    expect(catted.stderr).toMatch(/does not match content_hash/);
  });

  it('an endpoint that is a web server, not S3, is named as such: doctor fails, verify refuses, nothing is called lost', async () => {
    const web = http.createServer((request, response) => {
      request.resume();
      response.writeHead(200, { 'content-type': 'text/html' });
      response.end('<html><body>Welcome</body></html>');
    });
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(web.address() as AddressInfo).port}`;
    try {
      const doctor = await run(['doctor'], { R2_ENDPOINT: endpoint });
      expect(doctor.code).toBe(1);
      expect(doctor.stdout).toMatch(/does not answer as S3 does/);
      expect(doctor.stdout).not.toMatch(/reachable ✓|Everything this tool relies on holds/);
      const verified = await run(['verify'], { R2_ENDPOINT: endpoint });
      expect(verified.code).toBe(2);
      expect(verified.stderr).toMatch(/does not answer as S3 does/);
      expect(verified.stdout + verified.stderr).not.toMatch(/content is lost|object is missing/);
    } finally {
      web.close();
    }
  });

  it('a finding has a way out: a database-only row rewritten without its hash is settled by maintain', async () => {
    const id = await insertFile(env.db, appId, 'src/small.ts', 'tiny');
    await query(env.db, 'UPDATE app_files SET content_hash = $2 WHERE id = $1', [id, sha256Hex('tiny')]);
    // Code from before the plan rewrites the content and leaves the hash.
    await query(env.db, "UPDATE app_files SET content = 'tiny, rewritten' WHERE id = $1", [id]);
    const found = await run(['verify', '--app', appId, '--json']);
    expect(found.code).toBe(1);
    const problem = (found.json().problems as { id: string; problem: string }[]).find((p) => p.id === id)!;
    expect(problem.problem).toMatch(/maintain/);
    const maintained = await run(['maintain', '--yes', '--json']);
    expect(maintained.json().result.hashesSettled).toBeGreaterThanOrEqual(1);
    expect((await fileRow(env.db, id)).content_hash).toBe(sha256Hex('tiny, rewritten'));
    expect((await run(['verify', '--app', appId])).code).toBe(0);
  });

  it('reads a .env as dotenv users write it: quotes, a comment after a value, export', () => {
    const dir = mkdtempSync(join(tmpdir(), 'oss-dotenv-'));
    try {
      writeFileSync(
        join(dir, '.env'),
        [
          'DATABASE_URL="postgres://app:p%40ss@db.internal:5432/overskill_production"  # prod',
          'export R2_ENDPOINT=http://127.0.0.1:9000',
          'R2_ACCESS_KEY_ID="AKIA123" # key',
          "R2_SECRET_ACCESS_KEY='s3cr3t#not-a-comment'",
          'R2_BUCKET=overskill-db-files # the bucket',
        ].join('\n'),
      );
      const resolver = new ConfigResolver({ flags: {}, env: {}, cwd: dir });
      expect(resolver.database().url).toBe('postgres://app:p%40ss@db.internal:5432/overskill_production');
      const store = resolver.objectStore();
      expect(store).toMatchObject({ endpoint: 'http://127.0.0.1:9000', accessKeyId: 'AKIA123', secretAccessKey: 's3cr3t#not-a-comment', bucket: 'overskill-db-files' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  /** A database of its own (OverSkill's tables, one app with a migratable file), made as `setup` says, dropped afterwards. */
  async function withDatabase(label: string, setup: { encoding?: string; schema?: boolean; before?: string[]; after?: string[] }, body: (url: string, name: string) => Promise<void>): Promise<void> {
    const name = `oss_${label}_${Math.random().toString(36).slice(2, 8)}`;
    const admin = createDb({ url: ADMIN_URL, poolSize: 1 });
    try {
      await query(admin, `CREATE DATABASE ${name}${setup.encoding ? ` ENCODING '${setup.encoding}' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'` : ''}`);
      const db = createDb({ url: databaseUrlFor(name), poolSize: 1 });
      try {
        for (const sql of setup.before ?? []) await db.raw(sql);
        await db.raw(OVERSKILL_TABLES_SQL);
        if (setup.schema !== false) await applySchema(db);
        await query(db, "INSERT INTO apps (name) VALUES ('x')");
        await query(db, "INSERT INTO app_files (app_id, path, content, size_bytes) VALUES (1, 'src/a.ts', repeat('a', 5000), 5000)");
        for (const sql of (setup.after ?? []).map((statement) => statement.replaceAll('{db}', name))) await db.raw(sql);
      } finally {
        await db.destroy();
      }
      await body(databaseUrlFor(name), name);
    } finally {
      await query(admin, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.destroy();
    }
  }
  const as = (url: string, role: string) => {
    const parsed = new URL(url);
    parsed.username = role;
    parsed.password = '';
    return parsed.toString();
  };

  it.skipIf(ON_PGLITE)('a read-only database: doctor names it, writes refuse before anything (exit 2), status, report and verify work', async () => {
    await withDatabase('ro', { after: ['ALTER DATABASE {db} SET default_transaction_read_only = on'] }, async (url) => {
      const doctor = await run(['doctor', '--json'], { DATABASE_URL: url });
      expect(doctor.code).toBe(1);
      expect(doctor.json().failing).toContain('databaseWritable');
      for (const args of [['migrate', '--yes'], ['finalize', '--yes'], ['rollback', '--yes'], ['cleanup', '--yes', '--grace', '0s'], ['maintain', '--yes']]) {
        const refused = await run(args, { DATABASE_URL: url });
        expect(refused.code, args.join(' ')).toBe(2);
        expect(refused.stderr, args.join(' ')).toMatch(/This database will not let the tool do its work, so nothing was changed: transactions are read-only/);
        expect(refused.stderr).not.toMatch(/cannot execute/);
      }
      for (const args of [['status'], ['report', '--runs'], ['report'], ['verify'], ['migrate', '--dry-run']]) {
        const read = await run(args, { DATABASE_URL: url });
        expect(read.code, `${args.join(' ')}: ${read.stderr}`).toBe(0);
      }
    });
  });

  it.skipIf(ON_PGLITE)('a role with too few grants, and one that does not own the tables: doctor names each, commands refuse before changing anything', async () => {
    const reader = `oss_reader_${Math.random().toString(36).slice(2, 8)}`;
    const stranger = `oss_stranger_${Math.random().toString(36).slice(2, 8)}`;
    const admin = createDb({ url: ADMIN_URL, poolSize: 1 });
    await query(admin, `CREATE ROLE ${reader} LOGIN`);
    await query(admin, `CREATE ROLE ${stranger} LOGIN`);
    try {
      await withDatabase('grants', { after: [`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${reader}`] }, async (url) => {
        const doctor = await run(['doctor', '--json'], { DATABASE_URL: as(url, reader) });
        expect(doctor.code).toBe(1);
        const failing = doctor.json().checks.filter((c: { holds: boolean; required: boolean }) => c.required && !c.holds);
        expect(failing.map((c: { id: string }) => c.id)).toEqual(['databasePrivileges']);
        expect(failing[0].seen).toMatch(new RegExp(`role "${reader}" lacks UPDATE on app_files`));
        const refused = await run(['migrate', '--yes'], { DATABASE_URL: as(url, reader) });
        expect(refused.code).toBe(2);
        expect(refused.stderr).toMatch(/lacks UPDATE on app_files/);
        expect((await run(['verify'], { DATABASE_URL: as(url, reader) })).code).toBe(0);
      });
      await withDatabase('owner', { schema: false, after: [`GRANT ALL ON ALL TABLES IN SCHEMA public TO ${stranger}`, `GRANT CREATE ON SCHEMA public TO ${stranger}`] }, async (url) => {
        const db = createDb({ url, poolSize: 1 });
        const columnsBefore = await query(db, "SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = 'app_files'::regclass AND attnum > 0 AND NOT attisdropped");
        const doctor = await run(['doctor', '--json'], { DATABASE_URL: as(url, stranger) });
        expect(doctor.json().checks.find((c: { id: string }) => c.id === 'schemaOwner')).toMatchObject({ holds: false });
        const applied = await run(['schema', '--apply', '--yes'], { DATABASE_URL: as(url, stranger) });
        expect(applied.code).toBe(2);
        expect(applied.stderr).toMatch(new RegExp(`role "${stranger}" does not own app_files`));
        expect(await query(db, "SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = 'app_files'::regclass AND attnum > 0 AND NOT attisdropped")).toEqual(columnsBefore);
        expect(await query(db, "SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE 'overskill_storage_%'")).toEqual([{ n: 0 }]);
        await db.destroy();
      });
    } finally {
      await query(admin, `DROP OWNED BY ${reader}; DROP OWNED BY ${stranger}`).catch(() => undefined);
      await query(admin, `DROP ROLE IF EXISTS ${reader}`);
      await query(admin, `DROP ROLE IF EXISTS ${stranger}`);
      await admin.destroy();
    }
  });

  it.skipIf(ON_PGLITE)('a bytea content column and a SQL_ASCII database are named by doctor and refused before any work', async () => {
    await withDatabase('bytea', { schema: false, after: ['ALTER TABLE app_files ALTER COLUMN content TYPE bytea USING convert_to(content, \'UTF8\')'] }, async (url) => {
      const doctor = await run(['doctor', '--json'], { DATABASE_URL: url });
      expect(doctor.code).toBe(1);
      expect(doctor.json().checks.find((c: { id: string }) => c.id === 'contentColumnTypes')).toMatchObject({ holds: false, seen: 'app_files.content is bytea' });
      const refused = await run(['verify'], { DATABASE_URL: url });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/app_files.content is bytea, not text/);
      expect(refused.stderr).not.toMatch(/convert_to/);
    });
    await withDatabase('ascii', { encoding: 'SQL_ASCII', schema: false }, async (url) => {
      const doctor = await run(['doctor', '--json'], { DATABASE_URL: url });
      expect(doctor.json().checks.find((c: { id: string }) => c.id === 'databaseEncoding')).toMatchObject({ holds: false, seen: 'SQL_ASCII' });
      const refused = await run(['migrate', '--yes'], { DATABASE_URL: url });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/encoding is SQL_ASCII, not UTF8/);
      const applied = await run(['schema', '--apply', '--yes'], { DATABASE_URL: url });
      expect(applied.code).toBe(2);
      expect(applied.stderr).toMatch(/schema --apply cannot finish here, so nothing was changed: the database encoding is SQL_ASCII/);
    });
  });
});

