import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { insertApp } from './support/seed.ts';
import { query } from '../src/db.ts';
import { FILES } from '../src/tables.ts';
import { Params } from '../src/sql/params.ts';
import { migrateEligibleSql } from '../src/ops/migrate.ts';
import { RESTORES_TABLE } from '../src/sql/stranded-writes.ts';

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
    const sql = `SELECT count(*) FROM app_files t WHERE ${migrateEligibleSql(FILES, 1024, params)}`;
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
