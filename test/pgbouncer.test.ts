import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli, spawnCli, spawnCliAndWait } from './support/cli.ts';
import { databaseFingerprint, insertApp, insertFile, text } from './support/seed.ts';
import { PGBOUNCER, startPgBouncer } from './support/pgbouncer.ts';
import { query } from '../src/db.ts';
import { LEASE_TTL_MS } from '../src/workers.ts';

const required = process.env.REQUIRE_PGBOUNCER === '1';

type Bouncer = Awaited<ReturnType<typeof startPgBouncer>>;

/**
 * PgBouncer between the tool and PostgreSQL. In transaction mode a session's state does not survive between
 * transactions (PgBouncer's "Features"): no advisory lock, no SET. The tool's workers hold leases in a table
 * and its settings are made per transaction, so every run works through it; what needs a session of its own
 * (schema --apply, reclaim) takes a direct URL. In session mode each client keeps its server connection.
 */
describe.skipIf(ON_PGLITE || (!PGBOUNCER.available && !required))('behind PgBouncer', () => {
  let env: TestEnv;
  let transaction: Bouncer;
  let short: Bouncer;
  let session: Bouncer;
  let database: string;

  beforeAll(async () => {
    expect(PGBOUNCER.available, 'pgbouncer is installed').toBe(true);
    env = await createTestEnv();
    database = new URL(env.databaseUrl).pathname.slice(1);
    transaction = await startPgBouncer('transaction', { poolSize: 4 });
    short = await startPgBouncer('transaction', { serverLifetimeS: 1 });
    session = await startPgBouncer('session');
  });
  afterAll(async () => {
    transaction?.stop();
    short?.stop();
    session?.stop();
    await env?.close();
  });

  const seed = async (name: string, files: number, bytes = 3000) => {
    const app = await insertApp(env.db, name);
    await query(env.db, `INSERT INTO app_files (app_id, path, content) SELECT $1::bigint, 'src/' || $2 || '/' || i || '.ts', repeat(md5(i::text || $2), $3::int / 32 + 1) FROM generate_series(1, $4::int) i`, [app, name, bytes, files]);
    return app;
  };
  const locations = async (app: string) =>
    Object.fromEntries((await query<{ location: string; n: number }>(env.db, 'SELECT storage_location AS location, count(*)::int AS n FROM app_files WHERE app_id = $1 GROUP BY 1', [app])).map((r) => [r.location, r.n]));

  it("in transaction mode: doctor names it, every run works through it, and the role's timeouts neither cut a run nor are left behind", async () => {
    const app = await seed('pooled', 400);
    const viaPooler = { ...env.cliEnv, DATABASE_URL: transaction.url(database) };
    // Rails' timeouts, for every server connection of this database (each is opened after this).
    await query(env.db, `ALTER DATABASE ${database} SET statement_timeout = '30ms'`);
    await query(env.db, `ALTER DATABASE ${database} SET lock_timeout = '1s'`);
    await query(env.db, `ALTER DATABASE ${database} SET idle_in_transaction_session_timeout = '5s'`);
    const doctor = await cli(['doctor', '--json'], viaPooler);
    const named = doctor.json().checks.find((c: { id: string }) => c.id === 'sessionsKept');
    expect(named.seen).toMatch(new RegExp(`^transaction pooling: two statements of one connection ran on backends \\d+ and \\d+.*a pooler at port ${transaction.port}`));
    expect(named).toMatchObject({ required: false, holds: false });
    expect(doctor.json().failing ?? []).not.toContain('sessionsKept');
    try {
      await query(env.db, `INSERT INTO app_files (app_id, path, content) SELECT $1::bigint, 'src/bulk/' || i || '.ts', 'export const n = ' || i || ';' FROM generate_series(1, 150000) i`, [app]);
      await query(env.db, 'ANALYZE app_files');
      for (const args of [['migrate', '--yes', '--app', app, '--tables', 'files'], ['verify', '--app', app, '--tables', 'files'], ['finalize', '--yes', '--app', app, '--tables', 'files'], ['report', '--json'], ['rollback', '--yes', '--app', app, '--tables', 'files']]) {
        const run = await cli(args, viaPooler);
        expect(run.code, `${args[0]}: ${run.stderr}`).toBe(0);
        expect(run.stderr).not.toMatch(/statement timeout|advisory/i);
      }
      expect(await locations(app)).toEqual({ database: 150_400 });
      // Nothing of the tool's was left on the server connections the app's requests get next: four open
      // transactions at once hold all four of the pool's server connections, and each reads its settings.
      const clients = Array.from({ length: 4 }, () => new pg.Client({ connectionString: transaction.url(database) }));
      await Promise.all(clients.map((client) => client.connect()));
      for (const client of clients) await client.query('BEGIN');
      const seen = [];
      for (const client of clients) seen.push((await client.query("SELECT pg_backend_pid() AS pid, current_setting('statement_timeout') AS s, current_setting('lock_timeout') AS l, current_setting('idle_in_transaction_session_timeout') AS i")).rows[0]);
      await Promise.all(clients.map((client) => client.query('COMMIT').then(() => client.end())));
      expect(new Set(seen.map((row) => row.pid)).size, 'four server connections').toBe(4);
      for (const row of seen) expect({ s: row.s, l: row.l, i: row.i }).toEqual({ s: '30ms', l: '1s', i: '5s' });
    } finally {
      await query(env.db, `ALTER DATABASE ${database} RESET ALL`);
    }
  }, 240_000);

  it('in transaction mode: after kill -9 of a migrate on another machine, a rerun waits for its lease to expire and takes every row, and status names the silent worker, then shows it gone', async () => {
    // Few rows besides the killed worker's: the rerun's walk of them must end while that worker's lease still
    // lasts (a walk longer than the lease, on a loaded machine, takes the lapsed claims without waiting).
    const app = await seed('killed', 200);
    const viaPooler = { ...env.cliEnv, DATABASE_URL: transaction.url(database) };
    // Slowed so that a batch is nearly always claimed and in flight.
    const child = spawnCli(['migrate', '--yes', '--app', app, '--tables', 'files', '--batch-size', '50', '--concurrency', '4', '--max-rate', '150', '--log-format', 'json'], viaPooler);
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    await new Promise<void>((resolve) => {
      let seen = '';
      child.stderr.on('data', (chunk) => {
        seen += chunk;
        if ((seen.match(/"event":"batch.done"/g) ?? []).length >= 2) resolve();
      });
    });
    for (let waited = 0; waited < 10_000; waited += 20) {
      const [{ held }] = await query<{ held: number }>(env.db, 'SELECT count(*)::int AS held FROM overskill_storage_claims');
      if (held > 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    child.kill('SIGKILL');
    await exited;
    const [{ claimed }] = await query<{ claimed: number }>(env.db, 'SELECT count(*)::int AS claimed FROM overskill_storage_claims');
    expect(claimed, 'the kill left claimed rows').toBeGreaterThan(0);
    // As if killed on another machine: a process id here says nothing of it, only its lease does.
    await query(env.db, "UPDATE overskill_storage_worker_leases SET process_scope = 'another machine' WHERE expires_at > now()");
    // While its lease lasts, status names the silent worker and when its rows are free.
    await new Promise((resolve) => setTimeout(resolve, 4000));
    const silent = await cli(['status', '--json'], viaPooler);
    expect(silent.json().active[0].stalled.join('\n')).toMatch(/has not renewed its lease for \d+s \(killed, or cut off from the database\): its claimed rows are free for a rerun once the lease expires, in \d+s/);
    const started = Date.now();
    const rerun = await cli(['migrate', '--yes', '--app', app, '--tables', 'files'], viaPooler);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.stderr).toMatch(/claimed by a worker that stopped renewing its lease \d+ s ago .*waiting \d+ s for its lease to expire, then taking them/);
    expect(Date.now() - started).toBeLessThan(LEASE_TTL_MS + 60_000);
    expect(await locations(app)).toEqual({ hybrid: 200 });
    const status = await cli(['status', '--json'], viaPooler);
    expect(status.code).toBe(0);
    expect(status.json().active ?? []).toEqual([]);
    const [{ left }] = await query<{ left: number }>(env.db, "SELECT count(*)::int AS left FROM overskill_storage_claims c JOIN overskill_storage_worker_leases l ON l.worker = c.worker WHERE l.expires_at > now()");
    expect(left).toBe(0);
  }, 240_000);

  it('in transaction mode with server connections that last a second: two processes do each row once, with no refused write and nothing blamed on the app', async () => {
    const app = await seed('lifetime', 2500);
    const viaPooler = { ...env.cliEnv, DATABASE_URL: short.url(database) };
    const args = ['migrate', '--yes', '--app', app, '--tables', 'files', '--batch-size', '25', '--concurrency', '4', '--json'];
    const [a, b] = await Promise.all([spawnCliAndWait(args, viaPooler), spawnCliAndWait(args, viaPooler)]);
    for (const run of [a, b]) {
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).not.toMatch(/changed by the app|412|PreconditionFailed|lease/i);
    }
    const flipped = [a, b].map((run) => run.json().result.tables.reduce((sum: number, t: { flipped: number }) => sum + t.flipped, 0));
    expect(flipped[0] + flipped[1]).toBe(2500);
    expect(Math.min(...flipped), 'both processes did a share').toBeGreaterThan(0);
    for (const run of [a, b]) {
      for (const table of run.json().result.tables) expect([table.changedMeanwhile, table.skipped, table.failed].map((list: unknown[]) => list.length)).toEqual([0, 0, 0]);
    }
    expect(await locations(app)).toEqual({ hybrid: 2500 });
  }, 240_000);

  it('in transaction mode: schema --apply and reclaim need a session of their own, refuse without a direct URL, and run with one', async () => {
    const viaPooler = { ...env.cliEnv, DATABASE_URL: transaction.url(database) };
    const before = await databaseFingerprint(env.db);
    for (const args of [['schema', '--apply', '--yes'], ['reclaim', '--offline', '--yes', '--tables', 'files']]) {
      const refused = await cli(args, viaPooler);
      expect(refused.code, `${args[0]}: ${refused.stderr}`).toBe(2);
      expect(refused.stderr).toMatch(/needs a database session of its own, and DATABASE_URL reaches PostgreSQL through a pooler that does not keep sessions .* Nothing was changed\. Give PostgreSQL's own address with --direct-database-url \(or DIRECT_DATABASE_URL\)/);
    }
    expect(await databaseFingerprint(env.db)).toBe(before);
    // Dry runs read only: they work through the pooler.
    expect((await cli(['reclaim', '--offline', '--dry-run', '--tables', 'files'], viaPooler)).code).toBe(0);
    const withDirect = { ...viaPooler, DIRECT_DATABASE_URL: env.databaseUrl };
    const schema = await cli(['schema', '--apply', '--yes', '-v'], withDirect);
    expect(schema.code, schema.stderr).toBe(0);
    const reclaim = await cli(['reclaim', '--offline', '--yes', '--tables', 'files', '-v'], withDirect);
    expect(reclaim.code, reclaim.stderr).toBe(0);
    expect(reclaim.stderr).toMatch(/reclaim \(pg_repack, or VACUUM FULL with its lock timeout\): through the direct URL/);
    const flag = await cli(['reclaim', '--offline', '--yes', '--tables', 'files', '--direct-database-url', env.databaseUrl], viaPooler);
    expect(flag.code, flag.stderr).toBe(0);
  }, 240_000);

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
