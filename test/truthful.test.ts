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
import { readSchemaState } from '../src/sql/schema.ts';
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
    for (const key of orphans) await env.store.putVerified({ key, body: Buffer.from(key), sha256: sha256Hex(key), contentType: 'text/plain' });
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
      // A complete schema whose key index is full (the plan's Rails migration built it): the rebuild is an economy,
      // and a role that may not do it is told so, not refused.
      await withDatabase('complete', { after: [`GRANT ALL ON ALL TABLES IN SCHEMA public TO ${stranger}`, 'DROP INDEX index_app_files_on_r2_object_key', 'CREATE UNIQUE INDEX index_app_files_on_r2_object_key ON app_files (r2_object_key)'] }, async (url) => {
        const described = await run(['schema', '--json'], { DATABASE_URL: as(url, stranger) });
        expect(described.code).toBe(0);
        expect(described.json().indexesToNarrow).toEqual([]);
        expect(described.json().narrowingSkipped).toEqual([{ table: 'app_files', name: 'index_app_files_on_r2_object_key', reason: expect.stringMatching(new RegExp(`role "${stranger}" does not own it`)) }]);
        const applied = await run(['schema', '--apply', '--yes'], { DATABASE_URL: as(url, stranger) });
        expect(applied.code, applied.stderr).toBe(0);
        expect(applied.stdout).toMatch(/index index_app_files_on_r2_object_key stays full: only app_files's owner \("\w+"\) may rebuild it/);
        const asOwner = await run(['schema', '--json'], { DATABASE_URL: url });
        expect(asOwner.json().indexesToNarrow.map((index: { name: string }) => index.name)).toEqual(['index_app_files_on_r2_object_key']);
      });
    } finally {
      await query(admin, `DROP OWNED BY ${reader}; DROP OWNED BY ${stranger}`).catch(() => undefined);
      await query(admin, `DROP ROLE IF EXISTS ${reader}`);
      await query(admin, `DROP ROLE IF EXISTS ${stranger}`);
      await admin.destroy();
    }
  });

  it.skipIf(ON_PGLITE)('a bytea content column is named by doctor and refused before any work', async () => {
    await withDatabase('bytea', { schema: false, after: ['ALTER TABLE app_files ALTER COLUMN content TYPE bytea USING convert_to(content, \'UTF8\')'] }, async (url) => {
      const doctor = await run(['doctor', '--json'], { DATABASE_URL: url });
      expect(doctor.code).toBe(1);
      expect(doctor.json().checks.find((c: { id: string }) => c.id === 'contentColumnTypes')).toMatchObject({ holds: false, seen: 'app_files.content is bytea' });
      const refused = await run(['verify'], { DATABASE_URL: url });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/app_files.content is bytea, not text/);
      expect(refused.stderr).not.toMatch(/convert_to/);
    });
  });

  it.skipIf(ON_PGLITE)('a LATIN1 database is named by doctor and refused before any work: its byte counts are not UTF-8\'s', async () => {
    const inserts = ["INSERT INTO app_files (app_id, path, content, size_bytes) VALUES (1, 'src/caf\u00e9.ts', repeat('d\u00e9j\u00e0 ', 3000), 21000)"];
    await withDatabase('latin1', { encoding: 'LATIN1', schema: false, after: inserts }, async (url) => {
      const db = createDb({ url, poolSize: 1 });
      try {
        const doctor = await run(['doctor', '--json'], { DATABASE_URL: url });
        expect(doctor.code).toBe(1);
        expect(doctor.json().checks.find((c: { id: string }) => c.id === 'databaseEncoding')).toMatchObject({ holds: false, required: true, seen: 'LATIN1: neither UTF8 nor SQL_ASCII' });
        const columns = () => query(db, "SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = 'app_files'::regclass AND attnum > 0 AND NOT attisdropped");
        const columnsBefore = await columns();
        const applied = await run(['schema', '--apply', '--yes'], { DATABASE_URL: url });
        expect(applied.code).toBe(2);
        expect(applied.stderr).toMatch(/schema --apply cannot finish here, so nothing was changed: the database encoding is LATIN1/);
        expect(await columns()).toEqual(columnsBefore);

        // The tool's schema made by hand, as another tool might have: every command still refuses, changing nothing.
        for (const item of (await readSchemaState(db)).missing) for (const statement of item.statements) await db.raw(statement);
        const before = await databaseFingerprint(db);
        for (const args of [['migrate', '--yes'], ['verify'], ['cat', '1', 'src/caf\u00e9.ts']]) {
          const refused = await run(args, { DATABASE_URL: url });
          expect(refused.code, args.join(' ')).toBe(2);
          expect(refused.stderr, args.join(' ')).toMatch(/the database encoding is LATIN1; the tool works in UTF8 databases, and row by row in SQL_ASCII ones/);
        }
        expect(await databaseFingerprint(db)).toBe(before);
      } finally {
        await db.destroy();
      }
    });
  });

  it.skipIf(ON_PGLITE)('a SQL_ASCII database: each row that is not UTF-8 is refused by name and left as it is, the rest move, verify and read', async () => {
    // Bytes as a SQL_ASCII database keeps them: Latin-1 text (é is 0xe9), which is not UTF-8.
    const latin1 = (hexExpression: string) => `convert_from(decode(${hexExpression}, 'hex'), 'SQL_ASCII')`;
    const inserts = [
      // #2: small content in Latin-1; #3: a path in Latin-1; #4: 2 MiB of Latin-1 (streamed, not inline); #5: valid UTF-8 outside ASCII.
      `INSERT INTO app_files (app_id, path, content, size_bytes) VALUES (1, 'src/latin1.txt', ${latin1("repeat('63616ce920', 800)")}, 4000)`,
      `INSERT INTO app_files (app_id, path, content, size_bytes) VALUES (1, ${latin1("'7372632f66e92e7473'")}, repeat('p', 3000), 3000)`,
      `INSERT INTO app_files (app_id, path, content, size_bytes) VALUES (1, 'src/big.bin', ${latin1("repeat('e9', 2097152)")}, 2097152)`,
      "INSERT INTO app_files (app_id, path, content, size_bytes) VALUES (1, 'src/caf\u00e9.ts', repeat('\u00e9', 3000), 6000)",
      // A snapshot whose JSON holds Latin-1 "calé " 400 times.
      `INSERT INTO app_versions (app_id, version_number, files_snapshot) VALUES (1, '1.0.0', ${latin1("'7b22612e7473223a22' || repeat('63616ce920', 400) || '227d'")})`,
    ];
    await withDatabase('ascii', { encoding: 'SQL_ASCII', after: inserts }, async (url) => {
      const db = createDb({ url, poolSize: 1 });
      try {
        const bytesOf = () => query<{ id: string; location: string; digest: string }>(db, "SELECT id::text, storage_location AS location, md5(convert_to(content, 'SQL_ASCII')) AS digest FROM app_files ORDER BY id");
        const before = await bytesOf();
        expect(before.map((row) => row.id)).toEqual(['1', '2', '3', '4', '5']);

        const doctor = await run(['doctor', '--json'], { DATABASE_URL: url });
        const encoding = doctor.json().checks.find((c: { id: string }) => c.id === 'databaseEncoding');
        expect(encoding).toMatchObject({ holds: true, required: true, seen: 'SQL_ASCII: a row that is not valid UTF-8 is refused by name' });
        expect(doctor.json().failing ?? []).not.toContain('databaseEncoding');

        const planned = await run(['migrate', '--dry-run', '--json'], { DATABASE_URL: url });
        expect(planned.code, planned.stderr).toBe(0);
        const refusedLines = planned.json().plan.lines.filter((line: { action: string }) => /not valid UTF-8/.test(line.action));
        expect(refusedLines.map((line: { table: string; rows: number }) => [line.table, line.rows])).toEqual([['files', 3], ['snapshots', 1]]);
        expect(planned.json().plan.rows).toBe(2);

        const migrated = await run(['migrate', '--yes'], { DATABASE_URL: url });
        expect(migrated.code, migrated.stderr).toBe(1);
        const said = migrated.stdout + migrated.stderr;
        for (const refused of ['app_files #2', 'app_files #3', 'app_files #4', 'app_versions #1']) expect(said).toMatch(new RegExp(`${refused}\\b[^\\n]*not valid UTF-8`));
        expect(said).not.toMatch(/invalid byte sequence/);
        const after = await bytesOf();
        expect(after.map((row) => row.location)).toEqual(['hybrid', 'database', 'database', 'database', 'hybrid']);
        // Nothing of a refused row changed, and the moved rows' contents are the same bytes.
        expect(after.map((row) => row.digest)).toEqual(before.map((row) => row.digest));
        const [cafe] = await query<{ key: string; hash: string }>(db, 'SELECT r2_object_key AS key, content_hash AS hash FROM app_files WHERE id = 5');
        const expected = Buffer.from('\u00e9'.repeat(3000), 'utf8');
        expect(cafe.hash).toBe(sha256Hex(expected));
        expect(cafe.key).toBe('apps/1/files/src/caf\u00e9.ts');
        const [{ items }] = await query<{ items: number }>(db, "SELECT count(*)::int AS items FROM overskill_storage_run_items WHERE error_class = 'NotUtf8'");
        expect(items).toBe(4);

        const verified = await run(['verify', '--deep', '--json'], { DATABASE_URL: url });
        expect(verified.code, verified.stdout).toBe(0);
        const catted = await cli(['cat', '1', 'src/caf\u00e9.ts'], { ...env.cliEnv, DATABASE_URL: url });
        expect(catted.code).toBe(0);
        expect(catted.stdout).toBe(expected.toString('utf8'));
        const refusedCat = await run(['cat', '1', 'src/latin1.txt'], { DATABASE_URL: url });
        expect(refusedCat.code).not.toBe(0);
        expect(refusedCat.stdout).toBe('');
        expect(refusedCat.stderr).toMatch(/app_files #2 is not valid UTF-8/);
        const out = mkdtempSync(join(tmpdir(), 'ascii-export-'));
        try {
          const exported = await run(['export', '1', '--out', out, '--json'], { DATABASE_URL: url });
          expect(exported.code).toBe(1);
          expect(exported.json().written.map((file: { path: string }) => file.path).sort()).toEqual(['src/a.ts', 'src/caf\u00e9.ts']);
          expect(exported.json().refused.map((file: { reason: string }) => /^app_files #(\d+) is not valid UTF-8/.exec(file.reason)?.[1]).sort()).toEqual(['2', '3', '4']);
          expect(exported.json().failed).toEqual([]);
          expect(readFileSync(join(out, 'src/caf\u00e9.ts'))).toEqual(expected);
        } finally {
          rmSync(out, { recursive: true, force: true });
        }
        // The moved rows go back, byte for byte.
        expect((await run(['rollback', '--yes'], { DATABASE_URL: url })).code).toBe(0);
        expect((await bytesOf()).map((row) => row.location)).toEqual(['database', 'database', 'database', 'database', 'database']);
        expect((await bytesOf()).map((row) => row.digest)).toEqual(before.map((row) => row.digest));
      } finally {
        await db.destroy();
      }
    });
  });
});

