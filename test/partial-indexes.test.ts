import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { query } from '../src/db.ts';
import { seedDataset } from '../src/local/dataset.ts';
import { narrowedName } from '../src/sql/schema.ts';

/** The six indexes that cover only the rows with an object: each key column's index and its identity index. */
const PARTIAL = [
  { table: 'app_files', column: 'r2_object_key', unique: true },
  { table: 'app_versions', column: 'r2_snapshot_key', unique: true },
  { table: 'app_version_files', column: 'r2_content_key', unique: true },
].flatMap(({ table, column, unique }) => [
  { table, name: `index_${table}_on_${column}`, unique, definition: `(${column} COLLATE "C")`, where: `${column} IS NOT NULL` },
  { table, name: `index_${table}_on_${column}_identity`, unique: false, definition: `((normalize(${column}, NFC)))`, where: `${column} IS NOT NULL` },
]);

interface IndexState {
  name: string;
  unique: boolean;
  valid: boolean;
  predicate: string | null;
  bytes: number;
}

async function indexStates(env: TestEnv): Promise<Map<string, IndexState>> {
  const rows = await query<IndexState>(
    env.db,
    `SELECT c.relname AS name, i.indisunique AS unique, i.indisvalid AS valid, pg_get_expr(i.indpred, i.indrelid) AS predicate, pg_relation_size(c.oid)::float8 AS bytes
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE c.relname LIKE 'index_app_%'`,
  );
  return new Map(rows.map((row) => [row.name, row]));
}

/** The indexes as the plan's Rails migration (and this tool before they were partial) built them: every row has an entry. */
async function widen(env: TestEnv): Promise<void> {
  for (const index of PARTIAL) {
    await query(env.db, `DROP INDEX ${index.name}`);
    await query(env.db, `CREATE ${index.unique ? 'UNIQUE ' : ''}INDEX ${index.name} ON ${index.table} ${index.definition}`);
  }
}

const sum = (states: Map<string, IndexState>) => PARTIAL.reduce((total, index) => total + states.get(index.name)!.bytes, 0);

/**
 * On data shaped like real apps' files, after `migrate` with the plan's thresholds (so most rows keep their
 * content in the database, and have no key): the key indexes cover only the rows with an object, a database
 * whose indexes are still full is told so and rebuilt, and an interrupted rebuild is finished.
 */
describe('partial key indexes', () => {
  let env: TestEnv;
  const run = (args: string[]) => cli([...args, '--json'], env.cliEnv);

  beforeAll(async () => {
    env = await createTestEnv({ schema: false });
    const client = new pg.Client({ connectionString: env.databaseUrl });
    await client.connect();
    try {
      await seedDataset(client, { apps: 100, filesPerApp: 90, largeFiles: 0, versionsPerApp: 1, seed: 11 });
    } finally {
      await client.end();
    }
    expect((await run(['schema', '--apply', '--yes'])).code).toBe(0);
    expect((await run(['migrate', '--yes'])).code).toBe(0);
  }, 120_000);
  afterAll(async () => env?.close());

  it('schema --apply builds them partial; full ones are named, rebuilt partial in place, and take less space', async () => {
    const built = await indexStates(env);
    for (const index of PARTIAL) expect(built.get(index.name)?.predicate, index.name).toBe(`(${index.where})`);
    const [{ keyless }] = await query<{ keyless: number }>(env.db, 'SELECT count(*)::int AS keyless FROM app_files WHERE r2_object_key IS NULL');
    expect(keyless).toBeGreaterThan(100);

    await widen(env);
    const wide = await indexStates(env);
    const described = await run(['schema']);
    // Nothing is missing: a full index serves every lookup; it is only larger than it need be.
    expect(described.code).toBe(0);
    expect(described.json().indexesToNarrow.map((index: { name: string }) => index.name).sort()).toEqual(PARTIAL.map((index) => index.name).sort());
    const text = await cli(['schema'], env.cliEnv);
    expect(text.stdout).toMatch(/index index_app_files_on_r2_object_key covers every row \(\d+(\.\d+)? KiB\), where only rows with an object are looked up: --apply rebuilds it partial \(WHERE r2_object_key IS NOT NULL\)/);
    // A data command runs on full indexes as it did.
    expect((await run(['verify'])).code).toBe(0);
    // The report names the lever, with what it gives back.
    const metric = (await run(['report'])).json().metrics.find((m: { metric: string }) => m.metric === 'app_files table size reduction');
    const lever = metric.levers.find((l: { lever: string }) => l.lever === 'leaner-indexes');
    expect(lever.names.sort()).toEqual(['index_app_files_on_r2_object_key', 'index_app_files_on_r2_object_key_identity']);
    expect((await cli(['report'], env.cliEnv)).stdout).toMatch(/key indexes only over rows with an object \(`schema --apply` rebuilds them partial, about [\d.]+ KiB less\)/);

    const dry = await cli(['schema', '--apply', '--dry-run'], env.cliEnv);
    expect(dry.stdout).toContain(`CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ${narrowedName('index_app_files_on_r2_object_key')} ON app_files (r2_object_key COLLATE "C") WHERE r2_object_key IS NOT NULL;`);
    expect(dry.stdout).toContain(`ALTER INDEX ${narrowedName('index_app_files_on_r2_object_key')} RENAME TO index_app_files_on_r2_object_key;`);
    expect(await indexStates(env)).toEqual(wide);

    const applied = await run(['schema', '--apply', '--yes']);
    expect(applied.code).toBe(0);
    expect(applied.json().indexesToNarrow).toEqual([]);
    const narrow = await indexStates(env);
    for (const index of PARTIAL) {
      const state = narrow.get(index.name)!;
      expect(state, index.name).toMatchObject({ unique: index.unique, valid: true, predicate: `(${index.where})` });
      expect(narrow.has(narrowedName(index.name)), index.name).toBe(false);
    }
    // Each keyless row's entry is gone (app_versions' few hundred rows fit one page either way).
    for (const index of PARTIAL) expect(narrow.get(index.name)!.bytes, index.name).toBeLessThanOrEqual(wide.get(index.name)!.bytes);
    expect(narrow.get('index_app_files_on_r2_object_key')!.bytes).toBeLessThan(wide.get('index_app_files_on_r2_object_key')!.bytes);
    expect(sum(narrow)).toBeLessThan(sum(wide));
    const filesIndexes = (states: Map<string, IndexState>) => lever.names.reduce((total: number, name: string) => total + states.get(name)!.bytes, 0);
    const given = filesIndexes(wide) - filesIndexes(narrow);
    expect(Math.abs(lever.bytes - given) / given, `lever ${lever.bytes}, rebuild gave back ${given}`).toBeLessThan(0.15);
    expect((await run(['report'])).json().metrics.find((m: { metric: string }) => m.metric === 'app_files table size reduction').levers ?? []).not.toContainEqual(expect.objectContaining({ lever: 'leaner-indexes' }));
    expect((await run(['schema', '--apply', '--yes'])).json().applied).toEqual([]);
    expect((await run(['verify'])).code).toBe(0);
  }, 120_000);

  it('an interrupted rebuild is finished: a ready copy takes the name, an INVALID one is dropped and built again', async () => {
    const [files, files_identity, versions, , , versionFilesIdentity] = PARTIAL.map((index) => index.name);
    // app_files' key index: the copy was built and the wide one dropped; the rename never ran.
    await query(env.db, `ALTER INDEX ${files} RENAME TO ${narrowedName(files)}`);
    // Its identity index: the copy was built beside the wide one; neither drop nor rename ran.
    await query(env.db, `DROP INDEX ${files_identity}`);
    await query(env.db, `CREATE INDEX ${files_identity} ON app_files ((normalize(r2_object_key, NFC)))`);
    await query(env.db, `CREATE INDEX ${narrowedName(files_identity)} ON app_files ((normalize(r2_object_key, NFC))) WHERE r2_object_key IS NOT NULL`);
    // app_versions' key index: wide, with a copy whose build was cut short (INVALID).
    await query(env.db, `DROP INDEX ${versions}`);
    await query(env.db, `CREATE UNIQUE INDEX ${versions} ON app_versions (r2_snapshot_key COLLATE "C")`);
    await query(env.db, `CREATE UNIQUE INDEX ${narrowedName(versions)} ON app_versions (r2_snapshot_key COLLATE "C") WHERE r2_snapshot_key IS NOT NULL`);
    await query(env.db, `UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass($1)`, [narrowedName(versions)]);
    // app_version_files' identity index: the copy is ready, and the index under the name was left INVALID.
    await query(env.db, `CREATE INDEX ${narrowedName(versionFilesIdentity)} ON app_version_files ((normalize(r2_content_key, NFC))) WHERE r2_content_key IS NOT NULL`);
    await query(env.db, `UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass($1)`, [versionFilesIdentity]);

    // Meanwhile every data command still finds each key served.
    expect((await run(['verify'])).code).toBe(0);
    const described = (await run(['schema'])).json();
    expect(described.ok).toBe(true);
    expect(described.indexesToDrop.sort()).toEqual([narrowedName(versions), versionFilesIdentity].sort());

    const applied = await run(['schema', '--apply', '--yes']);
    expect(applied.code).toBe(0);
    const ran: string[] = applied.json().applied;
    expect(ran).toContain(`ALTER INDEX ${narrowedName(files)} RENAME TO ${files}`);
    expect(ran).not.toContain(expect.stringContaining(`CREATE INDEX CONCURRENTLY IF NOT EXISTS ${narrowedName(files_identity)}`));
    expect(ran).toContain(`DROP INDEX CONCURRENTLY IF EXISTS ${narrowedName(versions)}`);
    expect(ran).toContain(`DROP INDEX CONCURRENTLY IF EXISTS ${versionFilesIdentity}`);
    expect(ran).toContain(`ALTER INDEX ${narrowedName(versionFilesIdentity)} RENAME TO ${versionFilesIdentity}`);
    const after = await indexStates(env);
    for (const index of PARTIAL) {
      expect(after.get(index.name), index.name).toMatchObject({ unique: index.unique, valid: true, predicate: `(${index.where})` });
      expect(after.has(narrowedName(index.name)), index.name).toBe(false);
    }
    expect((await run(['schema', '--apply', '--yes'])).json().applied).toEqual([]);
  }, 120_000);
});
