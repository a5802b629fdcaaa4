import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { databaseFingerprint, insertApp, insertFile, text } from './support/seed.ts';
import { PGBOUNCER, startPgBouncer } from './support/pgbouncer.ts';
import { query } from '../src/db.ts';

const required = process.env.REQUIRE_PGBOUNCER === '1';

/**
 * PgBouncer between the tool and PostgreSQL. In transaction mode a session's state does not survive between
 * transactions (PgBouncer's "Features"), and this tool's workers rest on a session advisory lock: doctor names
 * the pooler and every command that changes rows refuses before changing anything. In session mode each
 * client keeps its server connection, and the tool runs as against PostgreSQL itself.
 */
describe.skipIf(ON_PGLITE || (!PGBOUNCER.available && !required))('behind PgBouncer', () => {
  let env: TestEnv;
  let transaction: Awaited<ReturnType<typeof startPgBouncer>>;
  let session: Awaited<ReturnType<typeof startPgBouncer>>;
  let database: string;

  beforeAll(async () => {
    expect(PGBOUNCER.available, 'pgbouncer is installed').toBe(true);
    env = await createTestEnv();
    database = new URL(env.databaseUrl).pathname.slice(1);
    transaction = await startPgBouncer('transaction');
    session = await startPgBouncer('session');
  });
  afterAll(async () => {
    transaction?.stop();
    session?.stop();
    await env?.close();
  });

  it('in transaction mode: doctor names it, and migrate, finalize and rollback refuse before changing anything', async () => {
    const app = await insertApp(env.db, 'pooled');
    for (let i = 0; i < 10; i++) await insertFile(env.db, app, `src/p${i}.ts`, text(4000 + i, `p${i} `));
    const viaPooler = { ...env.cliEnv, DATABASE_URL: transaction.url(database) };
    const doctor = await cli(['doctor', '--json'], viaPooler);
    expect(doctor.code).toBe(1);
    expect(doctor.json().failing).toContain('sessionsKept');
    expect(doctor.json().checks.find((c: { id: string }) => c.id === 'sessionsKept').seen).toMatch(new RegExp(`^transaction pooling: two statements of one connection ran on backends \\d+ and \\d+.*a pooler at port ${transaction.port}`));
    const before = await databaseFingerprint(env.db);
    for (const args of [['migrate', '--yes', '--app', app], ['finalize', '--yes', '--app', app], ['rollback', '--yes', '--app', app]]) {
      const run = await cli(args, viaPooler);
      expect(run.code, `${args[0]}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toMatch(/a pooler that does not keep sessions .* Point DATABASE_URL at PostgreSQL itself .* or at a pool in session mode/);
    }
    expect(await databaseFingerprint(env.db)).toBe(before);
    // Reading works through it: nothing of a run's rests on the session there.
    expect((await cli(['report', '--json'], viaPooler)).code).toBe(0);
  });

  it('in session mode: doctor says sessions are kept through it, and the flow runs', async () => {
    const app = await insertApp(env.db, 'session-pooled');
    for (let i = 0; i < 10; i++) await insertFile(env.db, app, `src/s${i}.ts`, text(4000 + i, `s${i} `));
    const viaPooler = { ...env.cliEnv, DATABASE_URL: session.url(database) };
    const doctor = await cli(['doctor', '--json'], viaPooler);
    expect(doctor.code, doctor.stdout).toBe(0);
    expect(doctor.json().checks.find((c: { id: string }) => c.id === 'sessionsKept').seen).toMatch(new RegExp(`^sessions kept, through something at port ${session.port} \\(the server listens on \\d+\\)`));
    for (const args of [['migrate', '--yes', '--app', app], ['verify', '--app', app], ['rollback', '--yes', '--app', app]]) {
      const run = await cli(args, viaPooler);
      expect(run.code, `${args[0]}: ${run.stderr}`).toBe(0);
    }
    const [{ back }] = await query<{ back: number }>(env.db, "SELECT count(*)::int AS back FROM app_files WHERE app_id = $1 AND storage_location = 'database'", [app]);
    expect(back).toBe(10);
    const direct = await cli(['doctor', '--json'], env.cliEnv);
    expect(direct.json().checks.find((c: { id: string }) => c.id === 'sessionsKept').seen).toBe('direct: each connection keeps its session');
  });
});
