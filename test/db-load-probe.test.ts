import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestEnv, ON_PGLITE, ADMIN_URL, type TestEnv } from './support/env.ts';
import { cli, spawnCli } from './support/cli.ts';
import { databaseFingerprint, insertApp, insertFile, text } from './support/seed.ts';
import { createDb, query } from '../src/db.ts';
import { readDbLoad } from '../src/db-load.ts';

/**
 * The database load throttle fails closed: the operator's probe runs read-only with a statement timeout,
 * is checked before anything starts (dry runs too), and a probe that stops answering a number during a run
 * holds the run, with the reason in `status`, exactly as a high load does.
 */
describe.skipIf(ON_PGLITE)('--db-load-probe', () => {
  let env: TestEnv;
  let app: string;

  beforeAll(async () => {
    env = await createTestEnv();
    app = await insertApp(env.db, 'probe');
    for (let i = 0; i < 30; i++) await insertFile(env.db, app, `src/p${i}.ts`, text(2000 + i, `p${i} `));
    await query(env.db, 'CREATE TABLE load_gauge (value numeric); INSERT INTO load_gauge VALUES (0); CREATE TABLE probe_writes (n int)');
  });
  afterAll(async () => {
    await env?.close();
  });

  const bad: [string, string, RegExp][] = [
    ['a write', 'WITH w AS (INSERT INTO probe_writes VALUES (1) RETURNING n) SELECT count(*) FROM w', /read-only transaction/],
    ['a second statement after the first', 'SELECT 1; DELETE FROM load_gauge', /multiple commands/],
    ['NULL', 'SELECT NULL::int', /returned NULL/],
    ['text', "SELECT 'busy'", /returned "busy", not a number/],
    ['no row', 'SELECT 1 WHERE false', /returned no row/],
    ['an error', 'SELECT value FROM no_such_gauge', /no_such_gauge.*does not exist/],
    ['a probe slower than its timeout', 'SELECT 1 FROM pg_sleep(3)', /statement timeout/],
    ["the old example on a primary (pg_last_xact_replay_timestamp() is NULL there)", 'SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())', /returned NULL/],
  ];

  for (const [label, probe, problem] of bad) {
    it(`refuses to start on ${label} (exit 2, dry run and real run alike), and changes nothing`, async () => {
      const before = await databaseFingerprint(env.db);
      for (const mode of ['--dry-run', '--yes']) {
        const run = await cli(['migrate', mode, '--app', app, '--max-db-load', '5', '--db-load-probe', probe, '--db-load-timeout', '500ms'], env.cliEnv);
        expect(run.code, `${mode}: ${run.stderr}`).toBe(2);
        expect(run.stderr).toContain(`--db-load-probe ${JSON.stringify(probe)}`);
        expect(run.stderr).toMatch(problem);
      }
      expect(await databaseFingerprint(env.db)).toBe(before);
      expect((await query<{ n: number }>(env.db, 'SELECT count(*)::int AS n FROM probe_writes'))[0].n).toBe(0);
    });
  }

  it('a probe that stops answering a number during a run holds it, with the reason in status, until it answers again', async () => {
    const child = spawnCli(
      ['migrate', '--yes', '--app', app, '--tables', 'files', '--batch-size', '2', '--concurrency', '1', '--max-rate', '4', '--max-db-load', '5', '--db-load-probe', 'SELECT value FROM load_gauge'],
      env.cliEnv,
    );
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
    const hybrid = async () => (await query<{ n: number }>(env.db, "SELECT count(*)::int AS n FROM app_files WHERE app_id = $1 AND storage_location = 'hybrid'", [app]))[0].n;
    for (let waited = 0; waited < 60_000 && (await hybrid()) < 4; waited += 100) await new Promise((r) => setTimeout(r, 100));
    await query(env.db, 'UPDATE load_gauge SET value = NULL');
    let reason = '';
    let worker: { health?: { transport?: { requests: number; queueWaitMs: { mean: number } } }; pool?: string } | undefined;
    for (let waited = 0; waited < 30_000 && !reason; waited += 250) {
      const status = await cli(['status', '--json'], env.cliEnv);
      reason = (status.json().active[0]?.waiting ?? []).find((w: string) => /returned NULL/.test(w)) ?? '';
      worker = status.json().active[0]?.workers.find((w: { live: boolean }) => w.live);
      if (!reason) await new Promise((r) => setTimeout(r, 250));
    }
    expect(reason).toMatch(/--db-load-probe returned NULL: holding until it answers a number/);
    // the worker's HTTP pool, as status shows it: a slow store and a starved pool look different there
    expect(worker?.health?.transport?.requests).toBeGreaterThan(0);
    expect(worker?.pool).toMatch(/requests, \d+ waited for a socket \(mean [\d.]+ ms, max [\d.]+ ms\); latency p50/);
    // held: nothing moves while the probe cannot say (a batch in flight may still land)
    const held = await hybrid();
    await new Promise((r) => setTimeout(r, 2500));
    expect(await hybrid()).toBeLessThanOrEqual(held + 2);
    const stillHeld = await hybrid();
    await new Promise((r) => setTimeout(r, 1500));
    expect(await hybrid()).toBe(stillHeld);
    await query(env.db, 'UPDATE load_gauge SET value = 1');
    expect(await exited).toBe(0);
    expect(await hybrid()).toBe(30);
    expect(stderr).toMatch(/probe returned NULL; pausing until it answers a number/);
  }, 180_000);

  describe('the examples in docs/operating.md', () => {
    const doc = readFileSync(join(import.meta.dirname, '..', 'docs', 'operating.md'), 'utf8');
    const examples = [...doc.matchAll(/--db-load-probe "([^"]+)"/g)].map((m) => m[1]);
    let replica: { url: string; primaryUrl: string; stop: () => Promise<void> } | undefined;

    beforeAll(async () => {
      replica = await startReplica();
    }, 120_000);
    afterAll(async () => {
      await replica?.stop();
    });

    it('are there', () => {
      expect(examples.length).toBeGreaterThanOrEqual(3);
    });

    it('each returns a number on a primary (this machine\'s server, and a primary with a streaming replica)', async () => {
      for (const url of [ADMIN_URL, replica!.primaryUrl]) {
        const db = createDb({ url, poolSize: 1 });
        try {
          for (const probe of examples) expect(await readDbLoad(db, { probeSql: probe, threshold: 1 }), `${probe} on ${url}`).toMatchObject({ ok: true });
        } finally {
          await db.destroy();
        }
      }
    });

    it('each returns a number on a streaming replica of it', async () => {
      expect(replica, 'a replica could not be started: PostgreSQL 15 binaries and the postgres OS user are needed').toBeDefined();
      const db = createDb({ url: replica!.url, poolSize: 1 });
      try {
        const [{ recovering }] = await query<{ recovering: boolean }>(db, 'SELECT pg_is_in_recovery() AS recovering');
        expect(recovering).toBe(true);
        for (const probe of examples) expect(await readDbLoad(db, { probeSql: probe, threshold: 1 }), probe).toMatchObject({ ok: true });
      } finally {
        await db.destroy();
      }
    });
  });
});

/**
 * A primary and its hot standby of our own (initdb, then pg_basebackup -R), on free ports in a temporary
 * directory, run as the postgres OS user: the machine's own server is not set up for replication.
 */
async function startReplica(): Promise<{ url: string; primaryUrl: string; stop: () => Promise<void> } | undefined> {
  const bin = '/usr/lib/postgresql/15/bin';
  if (!existsSync(`${bin}/postgres`)) return undefined;
  const root = process.getuid?.() === 0;
  const asPostgres = (command: string, args: string[]) => (root ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args]) as [string, string[]];
  const dir = mkdtempSync(join(tmpdir(), 'oss-replica-'));
  chmodSync(dir, 0o755);
  if (root) execFileSync('chown', ['postgres:postgres', dir]);
  const servers: { process: ChildProcess; data: string }[] = [];
  const start = async (data: string, port: number) => {
    const server = spawn(...asPostgres(`${bin}/postgres`, ['-D', data, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'hot_standby=on', '-c', 'fsync=off']), { stdio: 'ignore' });
    servers.push({ process: server, data });
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    const probe = createDb({ url, poolSize: 1 });
    try {
      for (let waited = 0; ; waited += 200) {
        try {
          await query(probe, 'SELECT 1');
          return url;
        } catch (error) {
          if (waited > 60_000) throw error;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
    } finally {
      await probe.destroy();
    }
  };
  const primaryData = join(dir, 'primary');
  const replicaData = join(dir, 'replica');
  execFileSync(...asPostgres(`${bin}/initdb`, ['-D', primaryData, '-U', 'postgres', '--auth=trust']), { stdio: 'pipe' });
  writeFileSync(join(primaryData, 'pg_hba.conf'), 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n');
  const [primaryPort, replicaPort] = [await freePort(), await freePort()];
  const primaryUrl = await start(primaryData, primaryPort);
  execFileSync(...asPostgres(`${bin}/pg_basebackup`, ['-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', replicaData, '-R', '-X', 'stream']), { stdio: 'pipe' });
  const url = await start(replicaData, replicaPort);
  return {
    url,
    primaryUrl,
    stop: async () => {
      for (const server of servers.reverse()) {
        const exited = new Promise((resolve) => server.process.once('exit', resolve));
        execFileSync(...asPostgres(`${bin}/pg_ctl`, ['-D', server.data, '-m', 'immediate', '-w', 'stop']), { stdio: 'pipe' });
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function freePort(): Promise<number> {
  return new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
