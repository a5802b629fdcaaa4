import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { insertApp } from './support/seed.ts';
import { query } from '../src/db.ts';
import { FILES, VERSION_FILES } from '../src/tables.ts';
import { Params } from '../src/sql/params.ts';
import { migrateMove } from '../src/sql/row-moves.ts';
import { RESTORES_TABLE } from '../src/sql/stranded-writes.ts';
import { identitiesNamingSql } from '../src/sql/references.ts';

interface PlanNode {
  'Node Type': string;
  'Join Type'?: string;
  'Total Cost': number;
  'Subplan Name'?: string;
  'Hash Cond'?: string;
  Plans?: PlanNode[];
}

const nodesOf = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(nodesOf)];

/**
 * The plans PostgreSQL picks for the statements that walk whole tables. A count over a table of a million
 * rows is planned once per run; what matters is that the rollback journal's check (a few rows) is costed by
 * the journal, not once per row of the table, and that no content is hashed unless the journal names its row.
 */
describe('SQL plans over a whole table', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
    const app = await insertApp(env.db);
    await query(
      env.db,
      `INSERT INTO app_files (app_id, path, content, size_bytes)
       SELECT $1, 'src/f' || n || '.js', repeat(md5(n::text), 40), 1280 FROM generate_series(1, 20000) n`,
      [app],
    );
    // One journal entry, so the journal is not empty and the check has something to match.
    const [row] = await query<{ id: string }>(env.db, 'SELECT id FROM app_files ORDER BY id LIMIT 1');
    await query(env.db, `INSERT INTO ${RESTORES_TABLE} (table_name, row_id, content_hash) VALUES ('app_files', $1, repeat('0', 64))`, [row.id]);
    await query(env.db, `ANALYZE app_files`);
    await query(env.db, `ANALYZE ${RESTORES_TABLE}`);
  });
  afterAll(async () => env?.close());

  it("migrate's eligibility over 20,000 rows: the journal check is a join, hashes nothing it does not name, and is cheap enough not to be JIT-compiled", async () => {
    const params = new Params();
    const sql = `SELECT count(*) FROM app_files t WHERE ${migrateMove(1024).takes(FILES, params)}`;
    const [{ 'QUERY PLAN': [plan] }] = await query<{ 'QUERY PLAN': { Plan: PlanNode }[] }>(env.db, `EXPLAIN (FORMAT JSON) ${sql}`, params.values);
    const nodes = nodesOf(plan.Plan);
    expect(nodes.filter((node) => node['Subplan Name']).map((node) => node['Subplan Name'])).toEqual([]);
    expect(nodes.some((node) => node['Join Type'] === 'Anti')).toBe(true);
    for (const node of nodes) expect(node['Hash Cond'] ?? '').not.toMatch(/sha256/);
    // PostgreSQL's default jit_above_cost: below it, a count is run, not compiled first.
    expect(plan.Plan['Total Cost']).toBeLessThan(100_000);
    // And the count is right: every row but none (the journal's entry does not match its content).
    const [{ count }] = await query<{ count: string }>(env.db, sql, params.values);
    expect(Number(count)).toBe(20_000);
  });
});

/**
 * The claim's collision check runs once per claimed row: it must look only at that row's app (or version)
 * through its index, never walk the table in id order for its `ORDER BY o.id LIMIT 1`. A planner estimate
 * that tips the other way (one CASE in the condition did) turns each batch of 500 into 500 table scans.
 */
describe('SQL plans of the collision check, over many apps', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
    await query(env.db, `INSERT INTO apps (name) SELECT 'app ' || n FROM generate_series(1, 200) n`);
    await query(
      env.db,
      `INSERT INTO app_files (app_id, path, content, size_bytes)
       SELECT a.id, 'src/f' || n || '.js', repeat(md5(n::text), 40), 1280 FROM apps a, generate_series(1, 100) n`,
    );
    await query(env.db, `INSERT INTO app_versions (app_id, version_number) SELECT id, '1' FROM apps`);
    await query(
      env.db,
      `INSERT INTO app_version_files (app_version_id, app_file_id, action, content)
       SELECT v.id, f.id, 'created', f.content FROM app_versions v JOIN app_files f ON f.app_id = v.app_id`,
    );
    await query(env.db, 'ANALYZE app_files');
    await query(env.db, 'ANALYZE app_version_files');
  });
  afterAll(async () => env?.close());

  for (const [table, index] of [[FILES, 'index_app_files_on_app_id_and_path'], [VERSION_FILES, 'index_app_version_files_on_app_version_id']] as const) {
    it(`${table.table}: each claimed row's check scans its ${table === FILES ? 'app' : 'version'} by index, in both kinds of database`, async () => {
      for (const utf8 of [true, false]) {
        const sql = `SELECT t.id, ${table.collisionExpr(utf8)} AS collision FROM ${table.source} WHERE t.id = ANY($1::bigint[])`;
        const ids = (await query<{ id: string }>(env.db, `SELECT id FROM ${table.table} ORDER BY id LIMIT 500`)).map((row) => row.id);
        const [{ 'QUERY PLAN': [plan] }] = await query<{ 'QUERY PLAN': { Plan: PlanNode & { 'Index Name'?: string; 'Parent Relationship'?: string } }[] }>(env.db, `EXPLAIN (FORMAT JSON) ${sql}`, [ids]);
        const subplan = nodesOf(plan.Plan).find((node) => node['Subplan Name']);
        expect(subplan, JSON.stringify(plan.Plan)).toBeDefined();
        const scans = nodesOf(subplan!) as (PlanNode & { 'Index Name'?: string; 'Relation Name'?: string })[];
        const overTable = scans.filter((node) => node['Relation Name'] === table.table);
        // One scan of the table, by the group's index: no sequential scan, no walk of the primary key.
        expect(overTable.map((node) => node['Node Type']), `utf8=${utf8}: ${JSON.stringify(subplan)}`).toEqual([expect.stringMatching(/^(Index Scan|Index Only Scan|Bitmap Heap Scan)$/)]);
        expect(overTable[0]['Index Name'], `utf8=${utf8}`).not.toBe(`${table.table}_pkey`);
        expect(JSON.stringify(subplan), `utf8=${utf8}`).toContain(`"Index Name":"${index}"`);
      }
    });
  }
});

/**
 * Every "does a row name this object" question (cleanup, rollback --purge, prune-versions: the guard before a
 * delete) reads each table by its key index, in both kinds of database. The key indexes are partial (only rows
 * with an object have an entry), so these plans also prove the planner sees that a lookup by key implies the
 * key is set.
 */
describe('SQL plans of the lookups by object key', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
    await query(env.db, `INSERT INTO apps (name) SELECT 'app ' || n FROM generate_series(1, 100) n`);
    await query(env.db, `INSERT INTO app_files (app_id, path, content, size_bytes) SELECT a.id, 'src/f' || n || '.js', md5(n::text), 32 FROM apps a, generate_series(1, 100) n`);
    await query(env.db, `INSERT INTO app_versions (app_id, version_number, files_snapshot) SELECT a.id, v::text, '[]' FROM apps a, generate_series(1, 20) v`);
    await query(
      env.db,
      `INSERT INTO app_version_files (app_version_id, app_file_id, action, content)
       SELECT v.id, f.id, 'created', f.content FROM app_versions v JOIN app_files f ON f.app_id = v.app_id WHERE v.version_number::int <= 5`,
    );
    // A third of the rows name an object; the rest (the database's own) have no key.
    await query(env.db, `UPDATE app_files SET storage_location = 'hybrid', r2_object_key = 'apps/' || app_id || '/files/' || path WHERE id % 3 = 0`);
    await query(env.db, `UPDATE app_versions SET storage_strategy = 'hybrid', r2_snapshot_key = 'apps/' || app_id || '/versions/' || id || '/snapshot.json' WHERE id % 3 = 0`);
    await query(env.db, `UPDATE app_version_files SET storage_location = 'hybrid', r2_content_key = 'apps/' || (app_version_id % 100 + 1) || '/versions/' || app_version_id || '/files/' || id WHERE id % 3 = 0`);
    for (const table of ['app_files', 'app_versions', 'app_version_files']) await query(env.db, `ANALYZE ${table}`);
  });
  afterAll(async () => env?.close());

  it('the key and identity indexes are partial: rows without an object have no entry', async () => {
    const rows = await query<{ name: string; predicate: string | null }>(
      env.db,
      `SELECT c.relname AS name, pg_get_expr(i.indpred, i.indrelid) AS predicate FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE c.relname = ANY($1::text[]) ORDER BY 1`,
      [[...KEY_INDEXES.map((k) => k.key), ...KEY_INDEXES.map((k) => k.identity)]],
    );
    expect(rows).toHaveLength(6);
    for (const row of rows) expect(row.predicate, row.name).toMatch(/^\(r2_\w+ IS NOT NULL\)$/);
  });

  it('each table is read by its key index, in a UTF8 database (by identity) and elsewhere (by spelling)', async () => {
    const named = await query<{ key: string }>(
      env.db,
      `(SELECT r2_object_key AS key FROM app_files WHERE r2_object_key IS NOT NULL LIMIT 1)
       UNION ALL (SELECT r2_snapshot_key FROM app_versions WHERE r2_snapshot_key IS NOT NULL LIMIT 1)
       UNION ALL (SELECT r2_content_key FROM app_version_files WHERE r2_content_key IS NOT NULL LIMIT 1)`,
    );
    const keys = [...named.map((row) => row.key), 'apps/7/files/src/caf\u00e9.js'];
    expect(named).toHaveLength(3);
    for (const utf8 of [true, false]) {
      const { sql, values } = identitiesNamingSql(keys, utf8);
      const [{ 'QUERY PLAN': [plan] }] = await query<{ 'QUERY PLAN': { Plan: PlanNode }[] }>(env.db, `EXPLAIN (FORMAT JSON) ${sql}`, values);
      const nodes = nodesOf(plan.Plan) as (PlanNode & { 'Index Name'?: string; 'Relation Name'?: string })[];
      for (const { table, key, identity } of KEY_INDEXES) {
        const reads = nodes.filter((node) => node['Relation Name'] === table || node['Index Name']?.startsWith(`index_${table}_on_`));
        expect(reads.map((node) => node['Node Type']), `utf8=${utf8} ${table}`).not.toContain('Seq Scan');
        expect(reads.map((node) => node['Index Name']).filter(Boolean), `utf8=${utf8} ${table}`).toContain(utf8 ? identity : key);
      }
      // And it answers: the three keys that rows name, none that no row does.
      const found = (await query<{ identity: string }>(env.db, sql, values)).map((row) => row.identity).sort();
      expect(found).toEqual(keys.slice(0, 3).sort());
    }
  });
});

const KEY_INDEXES = [
  { table: 'app_files', key: 'index_app_files_on_r2_object_key', identity: 'index_app_files_on_r2_object_key_identity' },
  { table: 'app_versions', key: 'index_app_versions_on_r2_snapshot_key', identity: 'index_app_versions_on_r2_snapshot_key_identity' },
  { table: 'app_version_files', key: 'index_app_version_files_on_r2_content_key', identity: 'index_app_version_files_on_r2_content_key_identity' },
];
