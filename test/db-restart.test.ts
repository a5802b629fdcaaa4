import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ON_PGLITE } from './support/env.ts';
import { cli, spawnCli } from './support/cli.ts';
import { PRIVATE_POSTGRES, startPrivatePostgres } from './support/private-postgres.ts';
import { createDb, query, type Db } from '../src/db.ts';
import { OVERSKILL_TABLES_SQL } from '../src/local/overskill-schema.ts';
import { applySchema } from '../src/ops/schema.ts';
import { startLocalS3, type LocalS3Server } from '../src/local/s3-server.ts';

/**
 * PostgreSQL restarted under a running migrate (a cluster of the test's own: a fast shutdown ends every
 * session, as a restart or a failover does, and new connections are refused until it is back). The run ends
 * in one sentence and the exact command that goes on; the rerun finishes the job, and every row is whole.
 */
describe.skipIf(ON_PGLITE || !PRIVATE_POSTGRES.available)('PostgreSQL restarted mid-run (migrate, then finalize)', () => {
  let server: Awaited<ReturnType<typeof startPrivatePostgres>>;
  let s3: LocalS3Server;
  let db: Db;
  let cliEnv: NodeJS.ProcessEnv;

  beforeAll(async () => {
    server = await startPrivatePostgres();
    const admin = createDb({ url: server.url('postgres'), poolSize: 1 });
    await query(admin, 'CREATE DATABASE overskill');
    await admin.destroy();
    db = createDb({ url: server.url('overskill'), poolSize: 2 });
    await db.raw(OVERSKILL_TABLES_SQL);
    await applySchema(db);
    const [{ id }] = await query<{ id: string }>(db, "INSERT INTO apps (name) VALUES ('restarted') RETURNING id");
    await query(db, `INSERT INTO app_files (app_id, path, content) SELECT $1::bigint, 'src/' || i || '.ts', repeat(md5(i::text), 100) FROM generate_series(1, 4000) i`, [id]);
    s3 = await startLocalS3();
    cliEnv = {
      PATH: process.env.PATH,
      DATABASE_URL: server.url('overskill'),
      R2_ENDPOINT: s3.endpoint,
      R2_ACCESS_KEY_ID: s3.accessKeyId,
      R2_SECRET_ACCESS_KEY: s3.secretAccessKey,
      R2_BUCKET: s3.bucket,
      NO_COLOR: '1',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      OVERSKILL_STORAGE_SETTLE: '0s',
    };
  }, 120_000);
  afterAll(async () => {
    await db?.destroy();
    await s3?.stop();
    server?.stop();
  });

  it.each([
    { command: 'migrate', from: 'database', to: 'hybrid', extra: [] },
    // The hybrid band: these 3.2 KB contents sit below the r2 threshold, above the hybrid one.
    { command: 'finalize', from: 'hybrid', to: 'r2', extra: ['--hybrid-band'] },
  ])('$command ends in one sentence and the command that goes on; the rerun converges', async ({ command, from, to, extra }) => {
    const args = [command, ...extra, '--yes', '--tables', 'files', '--batch-size', '40', '--concurrency', '4', '--max-rate', '400'];
    const child = spawnCli(args, cliEnv);
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.stdout.on('data', (chunk) => (stderr += chunk));
    let ended = false;
    const exited = new Promise<number>((resolve) => child.on('exit', (code) => ((ended = true), resolve(code ?? 1))));
    for (;;) {
      expect(ended, `${command} ended before the restart: ${stderr}`).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, 200));
      const [{ moved }] = await query<{ moved: number }>(db, "SELECT count(*)::int AS moved FROM app_files WHERE storage_location = $1", [to]);
      if (moved >= 400) break;
    }
    await db.destroy();
    await server.restart(3000);
    const code = await exited;
    db = createDb({ url: server.url('overskill'), poolSize: 2 });
    expect(code, stderr).toBe(1);
    const sentences = stderr.match(/The database connection was lost mid-command \([^)]*\): a restart, a failover or a terminated backend\. Nothing was left half-done; once the database answers, run the same command again to go on\./g) ?? [];
    expect(sentences, stderr).toHaveLength(1);
    expect(stderr).toContain(`To go on where it stopped:\n  overskill-storage ${args.join(' ')}`);
    // Nothing else in the driver's words: no raw error line, no item failed for it, no lease warning.
    const rest = stderr.replace(sentences[0] ?? '', '');
    expect(rest, stderr).not.toMatch(/Connection terminated|Connection ended|terminating connection|ECONN|not queryable|lease/i);
    const [{ left }] = await query<{ left: number }>(db, "SELECT count(*)::int AS left FROM app_files WHERE storage_location = $1", [from]);
    expect(left, 'the restart came before the run was done').toBeGreaterThan(0);
    const rerun = await cli(args, cliEnv);
    expect(rerun.code, rerun.stderr).toBe(0);
    const [{ done }] = await query<{ done: number }>(db, "SELECT count(*)::int AS done FROM app_files WHERE storage_location = $1", [to]);
    expect(done).toBe(4000);
    const verify = await cli(['verify', '--deep', '--tables', 'files'], cliEnv);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
  }, 240_000);
});
