import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { insertApp, insertFile, text } from './support/seed.ts';
import { migrate } from '../src/ops/migrate.ts';
import { finalize } from '../src/ops/finalize.ts';
import { rollback } from '../src/ops/rollback.ts';
import { planFinalize, planMigrate, planRollback, type Plan, type PlanScope } from '../src/ops/plan.ts';
import { defaultRunOptions, type CommonRunOptions } from '../src/ops/options.ts';
import { FILES } from '../src/tables.ts';
import { query } from '../src/db.ts';
import type { Reporter, RunEvent } from '../src/reporter.ts';

/**
 * Every move a row can make is declared once (src/sql/row-moves.ts): the plan counts the rows each move takes
 * by the same condition the run claims by. Here each command's plan is made, then the command runs on the
 * same data, and the rows its batches claimed (every move of the run, the stranded-write repair included)
 * are what the plan said, line by line where the run's result tells them apart.
 */
describe('row moves: a plan says what its run takes', () => {
  let env: TestEnv;
  let app: string;
  beforeAll(async () => {
    env = await createTestEnv();
    app = await insertApp(env.db);
    for (let i = 0; i < 3; i++) await insertFile(env.db, app, `small-${i}.js`, text(500, `s${i}`));
    for (let i = 0; i < 4; i++) await insertFile(env.db, app, `medium-${i}.js`, text(5_000, `m${i}`));
    for (let i = 0; i < 3; i++) await insertFile(env.db, app, `large-${i}.js`, text(20_000, `l${i}`));
  });
  afterAll(async () => env?.close());

  const options = (overrides: Partial<CommonRunOptions> = {}) => defaultRunOptions({ tables: [FILES], filter: { appIds: [app] }, batchSize: 3, settleMs: 0, ...overrides });
  const scopeOf = (run: CommonRunOptions): PlanScope => ({ tables: run.tables, filter: run.filter, limit: run.limit, policy: run.policy, inlineMaxBytes: run.inlineMaxBytes });
  /** A reporter that sums the rows every batch of the run claimed. */
  const claims = () => {
    const seen = { rows: 0 };
    const reporter: Reporter = {
      event: (event: RunEvent) => {
        if (event.type === 'batch.done') seen.rows += (event as { claimed: number }).claimed;
      },
    };
    return { seen, reporter };
  };
  const line = (plan: Plan, action: RegExp) => plan.lines.filter((l) => action.test(l.action)).reduce((sum, l) => sum + l.rows, 0);
  const locations = async () =>
    Object.fromEntries(
      (await query<{ location: string; rows: number }>(env.db, 'SELECT storage_location AS location, count(*)::int AS rows FROM app_files WHERE app_id = $1 GROUP BY 1', [app])).map((r) => [r.location, r.rows]),
    );

  it('migrate: the contents from the hybrid threshold up, once each', async () => {
    const run = options();
    const plan = await planMigrate(env.db, scopeOf(run), run.policy.hybridMin, true);
    expect(plan.rows).toBe(7);
    expect(line(plan, /stays in database/)).toBe(3);
    const { seen, reporter } = claims();
    const result = await migrate(env.context, run, reporter);
    expect(seen.rows).toBe(plan.rows);
    expect(result.uploaded).toBe(plan.rows);
    expect(result.remaining).toBe(0);
    expect(await locations()).toEqual({ database: 3, hybrid: 7 });
  });

  it('migrate --refresh-stale: the hybrid rows the app rewrote after their upload', async () => {
    await query(env.db, "UPDATE app_files SET content = content || '// edited' WHERE app_id = $1 AND path IN ('medium-0.js', 'large-0.js')", [app]);
    const run = options({});
    const plan = await planMigrate(env.db, scopeOf(run), run.policy.hybridMin, true);
    expect(line(plan, /re-upload/)).toBe(2);
    expect(plan.rows).toBe(2);
    const { seen, reporter } = claims();
    const result = await migrate(env.context, { ...run, refreshStale: true }, reporter);
    expect(seen.rows).toBe(plan.rows);
    expect(result.uploaded).toBe(2);
  });

  it("finalize: the verified hybrid rows above the r2 threshold, after the repair of an app's stranded write", async () => {
    // A stale partial save of the app's: hybrid, content in the row, but no key (stranded-writes.ts).
    await query(env.db, "UPDATE app_files SET r2_object_key = NULL WHERE app_id = $1 AND path = 'medium-1.js'", [app]);
    const run = options();
    const plan = await planFinalize(env.db, scopeOf(run));
    expect(line(plan, /put back the app's writes/)).toBe(1);
    expect(line(plan, /clear DB content/)).toBe(3);
    const { seen, reporter } = claims();
    const result = await finalize(env.context, run, reporter);
    expect(seen.rows).toBe(plan.rows);
    expect(result.cleared).toBe(line(plan, /clear DB content/));
    expect(await locations()).toEqual({ database: 4, hybrid: 3, r2: 3 });
  });

  it('finalize --hybrid-band: the same move from the hybrid threshold up', async () => {
    const base = options();
    const run = { ...base, policy: { ...base.policy, r2Above: base.policy.hybridMin - 1 } };
    const plan = await planFinalize(env.db, scopeOf(run));
    // medium-1.js went back to the database in the repair, and medium-0.js's copy is the refreshed one.
    expect(line(plan, /clear DB content/)).toBe(3);
    const { seen, reporter } = claims();
    const result = await finalize(env.context, run, reporter);
    expect(seen.rows).toBe(plan.rows);
    expect(result.cleared).toBe(plan.rows);
    expect(await locations()).toEqual({ database: 4, r2: 6 });
  });

  it('rollback --keep-hybrid: r2 rows get their content back and keep their object', async () => {
    const run = options();
    const plan = await planRollback(env.db, scopeOf(run), true, false);
    expect(plan.rows).toBe(6);
    expect(line(plan, /write back to DB \(hybrid\)/)).toBe(6);
    const { seen, reporter } = claims();
    const result = await rollback(env.context, { ...run, keepHybrid: true, purge: false }, reporter);
    expect(seen.rows).toBe(plan.rows);
    expect(result.rolledBack).toBe(plan.rows);
    expect(await locations()).toEqual({ database: 4, hybrid: 6 });
  });

  it('rollback, under --limit: every row with an object back to the database, as many as the plan says', async () => {
    await finalize(env.context, options({ limit: 2 }));
    const before = await locations();
    expect(before).toEqual({ database: 4, hybrid: 4, r2: 2 });
    const limited = options({ limit: 5 });
    const plan = await planRollback(env.db, scopeOf(limited), false, false);
    expect(plan.rows).toBe(5);
    const first = claims();
    await rollback(env.context, { ...limited, keepHybrid: false, purge: false }, first.reporter);
    expect(first.seen.rows).toBe(plan.rows);
    const rest = options();
    const restPlan = await planRollback(env.db, scopeOf(rest), false, false);
    expect(restPlan.rows).toBe(1);
    expect(line(restPlan, /write back to DB/) + line(restPlan, /flip hybrid back/)).toBe(1);
    const second = claims();
    const result = await rollback(env.context, { ...rest, keepHybrid: false, purge: false }, second.reporter);
    expect(second.seen.rows).toBe(restPlan.rows);
    expect(result.rolledBack).toBe(1);
    expect(await locations()).toEqual({ database: 10 });
  });

  it("rollback after an app's stranded write: an r2 row holding the app's content is repaired, not downloaded", async () => {
    const other = await insertApp(env.db);
    for (const name of ['a.js', 'b.js', 'c.js']) await insertFile(env.db, other, name, text(20_000, name));
    const run = options({ filter: { appIds: [other] } });
    await migrate(env.context, run);
    await finalize(env.context, run);
    // A stale save of the app's wrote content into an r2 row (stranded-writes.ts): it is the app's.
    await query(env.db, "UPDATE app_files SET content = 'saved by the app' WHERE app_id = $1 AND path = 'a.js'", [other]);
    const plan = await planRollback(env.db, scopeOf(run), false, false);
    expect(line(plan, /put back the app's writes/)).toBe(1);
    expect(line(plan, /write back to DB/)).toBe(2);
    const { seen, reporter } = claims();
    const result = await rollback(env.context, { ...run, keepHybrid: false, purge: false }, reporter);
    expect(seen.rows).toBe(plan.rows);
    expect(result.rolledBack).toBe(2);
  });

  it("migrate after an app's stranded write: the plan counts the repair and the upload that follows it in the same run", async () => {
    const other = await insertApp(env.db);
    await insertFile(env.db, other, 'a.js', text(5_000, 'a'));
    await insertFile(env.db, other, 'b.js', text(5_000, 'b'));
    const run = options({ filter: { appIds: [other] } });
    await migrate(env.context, run);
    await query(env.db, "UPDATE app_files SET r2_object_key = NULL WHERE app_id = $1 AND path = 'a.js'", [other]);
    const plan = await planMigrate(env.db, scopeOf(run), run.policy.hybridMin);
    expect(line(plan, /put back the app's writes/)).toBe(1);
    expect(line(plan, /^upload/)).toBe(1);
    const { seen, reporter } = claims();
    const result = await migrate(env.context, run, reporter);
    expect(seen.rows).toBe(plan.rows);
    expect(result.uploaded).toBe(1);
  });
});
