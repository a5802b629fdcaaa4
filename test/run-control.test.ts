import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli, spawnCli, spawnCliAndWait } from './support/cli.ts';
import { insertApp, text } from './support/seed.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { checkConsistency } from './support/consistency.ts';
import { query } from '../src/db.ts';

// PGlite serves one transaction at a time and has no other sessions to kill: this suite needs a real PostgreSQL.
describe.skipIf(ON_PGLITE)('run control: Ctrl-C, pacing, the demo', () => {
  let env: TestEnv;
  let proxy: S3Proxy;
  beforeAll(async () => {
    env = await createTestEnv();
    proxy = await new S3Proxy(env.s3.port, env.s3.bucket).start();
  });
  afterAll(async () => {
    await proxy?.stop();
    await env?.close();
  });

  async function appWithFiles(count: number): Promise<string> {
    const app = await insertApp(env.db);
    await query(env.db, `INSERT INTO app_files (app_id, path, content) SELECT $1::bigint, 'p/' || i || '.txt', repeat('x' || i, 1000) FROM generate_series(1, $2::int) i`, [app, count]);
    return app;
  }

  it('Ctrl-C (SIGINT) stops after the batches in flight with exit 130, and a rerun resumes', async () => {
    const app = await appWithFiles(120);
    proxy.latencyMs = 30;
    const child = spawnCli(['migrate', '--yes', '--app', app, '--tables', 'files', '--batch-size', '5', '--concurrency', '2'], { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
    // Interrupt once the run is under way (a fixed delay would race the process's start on a busy machine).
    for (let waited = 0; waited < 60_000; waited += 100) {
      const [{ n }] = await query<{ n: number }>(env.db, "SELECT count(*)::int AS n FROM app_files WHERE app_id = $1 AND storage_location = 'hybrid'", [app]);
      if (n >= 10) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toMatch(/stopping after the batches in flight/);
    proxy.latencyMs = 0;
    const [{ done }] = await query<{ done: number }>(env.db, "SELECT count(*)::int AS done FROM app_files WHERE app_id = $1 AND storage_location = 'hybrid'", [app]);
    expect(done).toBeGreaterThan(0);
    expect(done).toBeLessThan(120);
    // nothing half-done: every claimed batch was flipped and released
    const [{ claims }] = await query<{ claims: number }>(env.db, 'SELECT count(*)::int AS claims FROM overskill_storage_claims');
    expect(claims).toBe(0);
    await checkConsistency(env);
    const rerun = await spawnCliAndWait(['migrate', '--yes', '--json', '--app', app, '--tables', 'files'], env.cliEnv);
    expect(rerun.code).toBe(0);
    expect(rerun.json().result.uploaded).toBe(120 - done);
  });

  it('--max-rate caps objects per second', async () => {
    const app = await appWithFiles(30);
    const started = Date.now();
    const run = await cli(['migrate', '--yes', '--app', app, '--tables', 'files', '--max-rate', '10', '--concurrency', '8'], env.cliEnv);
    expect(run.code).toBe(0);
    // a one-second burst of 10, then 20 more at 10 per second: it cannot finish in under 2 seconds
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
  });

  it('--max-db-load pauses while the probe is above the threshold, then resumes', async () => {
    const app = await appWithFiles(10);
    await query(env.db, 'CREATE TABLE load_gauge (value int); INSERT INTO load_gauge VALUES (10)');
    const child = spawnCli(['migrate', '--yes', '--app', app, '--tables', 'files', '--max-db-load', '5', '--db-load-probe', 'SELECT value FROM load_gauge'], env.cliEnv);
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
    // Until the run says it pauses (its start, store check included, takes a while on a loaded machine), then a moment more.
    for (let waited = 0; waited < 30_000 && !/pausing/.test(stderr); waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(stderr).toMatch(/pausing/);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const [{ moved }] = await query<{ moved: number }>(env.db, "SELECT count(*)::int AS moved FROM app_files WHERE app_id = $1 AND storage_location = 'hybrid'", [app]);
    expect(moved).toBe(0);
    await query(env.db, 'UPDATE load_gauge SET value = 0');
    expect(await exited).toBe(0);
    const [{ after }] = await query<{ after: number }>(env.db, "SELECT count(*)::int AS after FROM app_files WHERE app_id = $1 AND storage_location = 'hybrid'", [app]);
    expect(after).toBe(10);
  });

  it('the demo runs end to end on the embedded PostgreSQL and a local S3 server', async () => {
    const run = await spawnCliAndWait(['demo', '--apps', '2', '--files', '10', '--large-files', '1'], { PATH: process.env.PATH, NO_COLOR: '1' });
    expect(run.code, run.stderr.slice(-2000)).toBe(0);
    expect(run.stdout).toMatch(/byte-identical to where it started/);
    expect(run.stdout).toMatch(/\$ overskill-storage restore-version 1 1\.0\.0 --yes/);
    expect(run.stdout).toMatch(/Demo finished/);
    // A story in titled steps, each ending on a verdict, with the run watched and paused from a second terminal.
    expect(run.stdout.match(/^━━ Step \d+\/12: /gm)).toHaveLength(12);
    expect(run.stdout).toMatch(/^\$ overskill-storage status$/m);
    expect(run.stdout).toMatch(/^\$ overskill-storage pause --all --yes\nrun \d+: running → pausing\nrun \d+: paused/m);
    expect(run.stdout).toMatch(/^run \d+ migrate paused · /m);
    expect(run.stdout).toMatch(/^\$ overskill-storage resume --all --yes$/m);
    expect(run.stdout).toMatch(/^Run \d+ resumed at \d\d:\d\d:\d\d UTC \(resumed by /m);
    expect(run.stdout).toMatch(/^✓ After migrate → finalize → the hybrid band → reclaim → rollback every content is byte-identical/m);
    expect(run.stdout).toMatch(/^Now point it at your database:$/m);
    // The schema's SQL only on request (--sql), and printed once then.
    expect(run.stdout).not.toMatch(/ALTER TABLE/);
  }, 180_000);
});
