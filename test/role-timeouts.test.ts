import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { insertApp } from './support/seed.ts';
import { createDb, query } from '../src/db.ts';
import { describeError } from '../commands/support/flow/exit.ts';

/**
 * Rails deployments give the app's role short timeouts (statement_timeout, lock_timeout,
 * idle_in_transaction_session_timeout) for its requests. The tool sets its own sessions' as pg_dump does, by
 * SET after connecting (PostgreSQL's "Client Connection Defaults"), so none of its whole-table statements is
 * cut and no run stops on the app's settings.
 */
describe.skipIf(ON_PGLITE)("a database with Rails' timeouts", () => {
  let env: TestEnv;
  let name: string;

  beforeAll(async () => {
    env = await createTestEnv();
    name = new URL(env.databaseUrl).pathname.slice(1);
    const app = await insertApp(env.db, 'timeouts');
    // Enough rows that a whole-table statement takes longer than the database's statement_timeout.
    await query(env.db, `INSERT INTO app_files (app_id, path, content) SELECT $1::bigint, 'src/small/' || i || '.ts', 'export const n = ' || i || ';' FROM generate_series(1, 150000) i`, [app]);
    await query(env.db, `INSERT INTO app_files (app_id, path, content) SELECT $1::bigint, 'src/large/' || i || '.ts', repeat(md5(i::text), 400) FROM generate_series(1, 40) i`, [app]);
    await query(env.db, 'ANALYZE app_files');
    await query(env.db, `ALTER DATABASE ${name} SET statement_timeout = '20ms'`);
    await query(env.db, `ALTER DATABASE ${name} SET lock_timeout = '1s'`);
    await query(env.db, `ALTER DATABASE ${name} SET idle_in_transaction_session_timeout = '5s'`);
  }, 120_000);
  afterAll(async () => {
    await env?.close();
  });

  it('a session of its own would be cut: the database really has these timeouts', async () => {
    const plain = createDb({ url: env.databaseUrl, poolSize: 1 });
    try {
      const client = (plain as unknown as { client: { acquireConnection(): Promise<import('pg').PoolClient>; releaseConnection(c: unknown): Promise<void> } }).client;
      const connection = await client.acquireConnection();
      try {
        // The tool's own session setup is what this test is about; a bare session keeps the database's.
        await connection.query('RESET statement_timeout');
        const [{ timeout }] = (await connection.query("SELECT current_setting('statement_timeout') AS timeout")).rows;
        expect(timeout).toBe('20ms');
        // A statement that surely outlasts 20 ms (a whole-table count may not, on a warm cache).
        const error = await connection.query('SELECT pg_sleep(0.2), count(*) FROM app_files').then(() => undefined, (e: Error & { code?: string }) => e);
        expect(error?.code).toBe('57014');
        expect(describeError(error, false)).toMatch(/^PostgreSQL cancelled one of this tool's statements \(canceling statement due to statement timeout\): .* run the same command again/);
      } finally {
        await client.releaseConnection(connection);
      }
    } finally {
      await plain.destroy();
    }
  });

  it('every command runs to the end: schema --apply rebuilds an INVALID index, the whole flow exits 0', async () => {
    // An index build cut short (as a 400 ms statement_timeout did) leaves it INVALID.
    await query(env.db, "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'index_app_files_on_storage_location'::regclass");
    const plan = await cli(['schema'], env.cliEnv);
    expect(plan.stdout).toMatch(/index index_app_files_on_storage_location must be rebuilt \(left INVALID/);
    const apply = await cli(['schema', '--apply', '--yes'], env.cliEnv);
    expect(apply.code, apply.stderr).toBe(0);
    const [{ valid }] = await query<{ valid: boolean }>(env.db, "SELECT indisvalid AS valid FROM pg_index WHERE indexrelid = 'index_app_files_on_storage_location'::regclass");
    expect(valid).toBe(true);
    for (const args of [['migrate', '--dry-run'], ['migrate', '--yes'], ['verify'], ['report'], ['finalize', '--yes'], ['verify', '--deep'], ['rollback', '--yes'], ['maintain', '--dry-run']]) {
      const run = await cli([...args, '--json'], env.cliEnv);
      expect(run.code, `${args.join(' ')}: ${run.stderr.slice(-1500)}`).toBe(0);
    }
    const [{ hybrid }] = await query<{ hybrid: number }>(env.db, "SELECT count(*)::int AS hybrid FROM app_files WHERE storage_location <> 'database'");
    expect(hybrid).toBe(0);
  }, 300_000);
});
