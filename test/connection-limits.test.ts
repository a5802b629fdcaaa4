import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ADMIN_URL, createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { databaseFingerprint, insertApp, insertFile, text } from './support/seed.ts';
import { createDb, query } from '../src/db.ts';
import { databaseSentence } from '../commands/support/flow/exit.ts';

/**
 * A role with a CONNECTION LIMIT (PostgreSQL's CREATE ROLE): a command that cannot get the connections its
 * concurrency needs is refused before it changes anything, instead of stopping mid-run with some rows flipped.
 */
describe.skipIf(ON_PGLITE)('connection limits', () => {
  let env: TestEnv;
  let role: string;
  let limitedEnv: NodeJS.ProcessEnv;

  beforeAll(async () => {
    env = await createTestEnv();
    role = `oss_limited_${randomBytes(4).toString('hex')}`;
    await query(env.db, `CREATE ROLE ${role} LOGIN CONNECTION LIMIT 2`);
    await query(env.db, `GRANT USAGE ON SCHEMA public TO ${role}`);
    await query(env.db, `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}`);
    await query(env.db, `GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${role}`);
    const url = new URL(env.databaseUrl);
    url.username = role;
    limitedEnv = { ...env.cliEnv, DATABASE_URL: url.toString() };
  });
  afterAll(async () => {
    await env?.close();
    // The role is the cluster's: dropped once its database (and the grants in it) is gone.
    const admin = createDb({ url: ADMIN_URL, poolSize: 1 });
    await query(admin, `DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
    await admin.destroy();
  });

  it('a role with CONNECTION LIMIT 2: refused up front at the default concurrency, nothing changed; a lower one runs', async () => {
    const app = await insertApp(env.db, 'limited');
    for (let i = 0; i < 30; i++) await insertFile(env.db, app, `src/l${i}.ts`, text(3000 + i, `l${i} `));
    const before = await databaseFingerprint(env.db);
    const refused = await cli(['migrate', '--yes', '--app', app], limitedEnv);
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toMatch(new RegExp(`needs up to \\d+ more database connections \\(a pool of \\d+ for --concurrency 16, and a session for the run's worker\\), and role "${role}" may open 2 \\(CONNECTION LIMIT\\), 1 open now: room for 1\\. Nothing was changed\\. Run it with a lower --concurrency`));
    expect(await databaseFingerprint(env.db)).toBe(before);

    const doctor = await cli(['doctor', '--json'], limitedEnv);
    const check = doctor.json().checks.find((c: { id: string }) => c.id === 'databaseConnections');
    expect(check).toMatchObject({ holds: false, required: false });
    expect(check.seen).toMatch(/^1 more \(role limit 2, 1 open\)$/);

    const lower = await cli(['migrate', '--yes', '--app', app, '--concurrency', '1', '--db-connections', '1'], limitedEnv);
    expect(lower.code, lower.stderr).toBe(0);
    const [{ moved }] = await query<{ moved: number }>(env.db, "SELECT count(*)::int AS moved FROM app_files WHERE app_id = $1 AND storage_location = 'hybrid'", [app]);
    expect(moved).toBe(30);
  });

  it('where the probe of how sessions reach the server cannot get its second connection, doctor says it cannot tell', async () => {
    await query(env.db, `ALTER ROLE ${role} CONNECTION LIMIT 1`);
    try {
      const doctor = await cli(['doctor', '--json'], limitedEnv);
      const check = doctor.json().checks.find((c: { id: string }) => c.id === 'sessionsKept');
      expect(check).toMatchObject({ holds: false, required: false });
      expect(check.seen).toMatch(/^cannot tell: a second connection for the probe was refused \(.*too many connections for role/);
    } finally {
      await query(env.db, `ALTER ROLE ${role} CONNECTION LIMIT 2`);
    }
  });

  it('what PostgreSQL says of a lost or refused connection is one sentence with the way on', () => {
    expect(databaseSentence({ code: '57P01', message: 'terminating connection due to administrator command' })).toMatch(/^The database connection was lost mid-command .*run the same command again to go on\.$/);
    expect(databaseSentence(new Error('Connection terminated unexpectedly'))).toMatch(/^The database connection was lost mid-command/);
    expect(databaseSentence({ code: '53300', message: `too many connections for role "${'x'}"` })).toMatch(/Run with a lower --concurrency/);
    expect(databaseSentence({ code: '57014', message: 'canceling statement due to user request' })).toMatch(/an operator's pg_cancel_backend, or a pooler's query_timeout/);
    expect(databaseSentence(new Error('something else'))).toBeUndefined();
  });
});
