import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeleteObjectCommand, HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { BIN, cli } from './support/cli.ts';
import { insertApp, insertFile, text } from './support/seed.ts';
import { checkConsistency } from './support/consistency.ts';
import { query } from '../src/db.ts';
import { sha256Hex } from '../src/hashing.ts';
import { verify } from '../src/ops/verify.ts';
import { TABLES } from '../src/tables.ts';

const EXAMPLES = join(import.meta.dirname, '..', 'examples');

/** Prometheus text format as node_exporter's textfile collector reads it: name{labels} value. */
function metricValue(body: string, name: string, labels = ''): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ' '}`));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

describe.skipIf(ON_PGLITE)('maintain: the nightly job', () => {
  let env: TestEnv;
  let dir: string;
  const rows: { id: string; path: string; key: string }[] = [];
  const contents = new Map<string, string>();

  beforeAll(async () => {
    env = await createTestEnv();
    dir = mkdtempSync(join(tmpdir(), 'oss-maintain-'));
    symlinkSync(BIN, join(dir, 'overskill-storage'));
    const app = await insertApp(env.db, 'nightly');
    for (let i = 0; i < 12; i++) contents.set(`src/n${i}.ts`, text(15_000 + i, `n${i} `));
    for (const [path, content] of contents) await insertFile(env.db, app, path, content);
    for (const args of [['migrate', '--yes'], ['finalize', '--yes']]) expect((await cli(args, env.cliEnv)).code).toBe(0);
    rows.push(...(await query<{ id: string; path: string; key: string }>(env.db, "SELECT id, path, r2_object_key AS key FROM app_files WHERE storage_location = 'r2' ORDER BY id")));
    expect(rows).toHaveLength(12);
  });
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await env?.close();
  });

  it('a clean bucket: exit 0, one recorded run, one day of history, the textfile written', async () => {
    const textfile = join(dir, 'clean.prom');
    const run = await cli(['maintain', '--yes', '--json', '--grace', '0s', '--textfile', textfile], env.cliEnv);
    expect(run.code, run.stderr).toBe(0);
    const { result } = run.json();
    expect(result.problems).toEqual([]);
    expect(result.verify.checked.files).toBe(12);
    expect(result.run.state).toBe('succeeded');
    const history = await query<{ run_id: string; snapshot: { bytesByLocation: { r2: number }; databaseStoredBytes: number } }>(env.db, 'SELECT run_id, snapshot FROM overskill_storage_report_history');
    expect(history).toHaveLength(1);
    expect(history[0].run_id).toBe(result.run.id);
    expect(history[0].snapshot.bytesByLocation.r2).toBeGreaterThan(12 * 15_000);
    // the database side as the disk has it, beside the contents' own bytes
    const [{ stored }] = await query<{ stored: number }>(
      env.db,
      `SELECT (SELECT coalesce(sum(pg_column_size(content)), 0) FROM app_files) + (SELECT coalesce(sum(pg_column_size(files_snapshot)), 0) FROM app_versions)
              + (SELECT coalesce(sum(pg_column_size(content)), 0) FROM app_version_files) AS stored`,
    );
    expect(history[0].snapshot.databaseStoredBytes).toBe(Number(stored));
    const body = readFileSync(textfile, 'utf8');
    expect(metricValue(body, 'overskill_storage_maintain_success')).toBe(1);
    expect(metricValue(body, 'overskill_storage_maintain_problems')).toBe(0);
    expect(metricValue(body, 'overskill_storage_maintain_rows_checked', 'check="listing"')).toBe(12);
  });

  it('finds a deleted object, a corrupted one (through the deep sample) and an orphan past the grace period; exit 1 naming each', async () => {
    const [gone, corrupted] = [rows[2], rows[5]];
    await env.store.client.send(new DeleteObjectCommand({ Bucket: env.s3.bucket, Key: gone.key }));
    // same length, same metadata (our marker, the old SHA-256), other bytes: only downloading it tells
    const head = await env.store.client.send(new HeadObjectCommand({ Bucket: env.s3.bucket, Key: corrupted.key }));
    await env.store.client.send(new PutObjectCommand({ Bucket: env.s3.bucket, Key: corrupted.key, Body: Buffer.alloc(head.ContentLength!, 'z'), Metadata: head.Metadata }));
    const orphanKey = `apps/${(await query<{ id: string }>(env.db, "SELECT id FROM apps WHERE name = 'nightly'"))[0].id}/files/src/left-behind.ts`;
    await env.store.putVerified({ key: orphanKey, body: Buffer.from('an interrupted run left this'), sha256: sha256Hex('an interrupted run left this'), contentType: 'text/plain' });
    await new Promise((r) => setTimeout(r, 1100));
    const textfile = join(dir, 'problems.prom');
    const run = await cli(['maintain', '--yes', '--json', '--grace', '1s', '--deep-sample', '100', '--textfile', textfile], env.cliEnv);
    // put the objects back (as from a backup) for the tests below, whatever this one finds
    for (const row of [gone, corrupted]) {
      const content = contents.get(row.path)!;
      await env.store.client.send(new DeleteObjectCommand({ Bucket: env.s3.bucket, Key: row.key }));
      await env.store.putVerified({ key: row.key, body: Buffer.from(content), sha256: sha256Hex(content), contentType: 'text/plain' });
    }
    expect((await cli(['verify', '--deep'], env.cliEnv)).code).toBe(0);
    expect(run.code, run.stderr).toBe(1);
    const { result } = run.json();
    const named = result.problems.join('\n');
    expect(named).toContain(`files #${gone.id} (${gone.path})`);
    expect(named).toMatch(/object is missing/);
    expect(named).toContain(`files #${corrupted.id} (${corrupted.path})`);
    expect(result.deepSample.problems.map((p: { id: string }) => p.id)).toContain(corrupted.id);
    expect(result.verify.problems.map((p: { id: string }) => p.id)).not.toContain(corrupted.id); // the listing cannot see it
    expect(result.cleanup.orphans).toBe(1);
    expect(result.cleanup.deleted).toBe(1);
    expect(await env.store.head(orphanKey)).toBeUndefined();
    // the run's item log names the rows, as every run's does
    const items = await query<{ row_id: string }>(env.db, 'SELECT row_id FROM overskill_storage_run_items WHERE run_id = $1 ORDER BY row_id', [result.run.id]);
    expect(items.map((i) => i.row_id).sort()).toEqual([gone.id, corrupted.id].sort());
    const body = readFileSync(textfile, 'utf8');
    expect(metricValue(body, 'overskill_storage_maintain_success')).toBe(0);
    expect(metricValue(body, 'overskill_storage_maintain_problems')).toBe(2);
    expect(metricValue(body, 'overskill_storage_maintain_orphans', 'state="removed"')).toBe(1);
  });

  it('--dry-run deletes and records nothing', async () => {
    const orphanKey = 'apps/999/files/dry.ts';
    await env.store.putVerified({ key: orphanKey, body: Buffer.from('dry'), sha256: sha256Hex('dry'), contentType: 'text/plain' });
    const [{ n: before }] = await query<{ n: number }>(env.db, 'SELECT count(*)::int AS n FROM overskill_storage_report_history');
    const run = await cli(['maintain', '--dry-run', '--json', '--grace', '0s'], env.cliEnv);
    expect(run.code, run.stderr).toBe(0);
    expect(run.json().result.cleanup.orphans).toBe(1);
    expect(await env.store.head(orphanKey)).toBeDefined();
    expect((await query<{ n: number }>(env.db, 'SELECT count(*)::int AS n FROM overskill_storage_report_history'))[0].n).toBe(before);
    await env.store.deleteIfOurs(orphanKey);
  });

  it('the deep sample rotates: consecutive windows take every row exactly once per cycle', async () => {
    const seen = new Map<number, number>();
    const percent = 20;
    let total = 0;
    for (let window = 0; window < 100 / percent; window++) {
      const result = await verify(env.context, { tables: [TABLES.files], filter: {}, deep: false, orphans: false, samplePercent: percent, sampleWindow: window, concurrency: 4 });
      seen.set(window, result.checked.files);
      total += result.checked.files;
    }
    expect(total).toBe(12);
    // and the next cycle starts over with the same windows
    const again = await verify(env.context, { tables: [TABLES.files], filter: {}, deep: false, orphans: false, samplePercent: percent, sampleWindow: 100 / percent, concurrency: 4 });
    expect(again.checked.files).toBe(seen.get(0));
  });

  describe('the examples, each command line run as written', () => {
    const bash = (script: string, extra: NodeJS.ProcessEnv = {}) =>
      spawnSync('bash', ['-e', '-c', script], { cwd: dir, env: { ...env.cliEnv, PATH: `${dir}:${process.env.PATH}`, HOME: dir, ...extra }, encoding: 'utf8' });

    it('examples/maintain.crontab', () => {
      const crontab = readFileSync(join(EXAMPLES, 'maintain.crontab'), 'utf8');
      const line = crontab.split('\n').find((l) => /^[0-9*]/.test(l))!;
      expect(line.split(/\s+/).slice(0, 5).join(' ')).toBe('0 2 * * *');
      const command = line.split(/\s+/).slice(5).join(' ');
      // the environment file the line sources, as an operator would keep it
      const envFile = ['DATABASE_URL', 'R2_ENDPOINT', 'R2_BUCKET', 'R2_ACCESS_KEY_ID', 'R2_SECRET_ACCESS_KEY'].map((k) => `export ${k}='${env.cliEnv[k]}'`).join('\n');
      const setup = `cat > "$HOME/.overskill-storage.env" <<'ENV'\n${envFile}\nENV\n`;
      const run = bash(`${setup}${command}`, { TEXTFILE_DIR: dir, LOG_FILE: join(dir, 'cron.log'), DATABASE_URL: '', R2_ENDPOINT: '' });
      expect(run.status, run.stderr + readFileSync(join(dir, 'cron.log'), 'utf8')).toBe(0);
      const log = readFileSync(join(dir, 'cron.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      expect(log.every((l) => l.command === 'maintain')).toBe(true);
      expect(metricValue(readFileSync(join(dir, 'overskill_storage.prom'), 'utf8'), 'overskill_storage_maintain_success')).toBe(1);
    });

    it('examples/maintain-cronjob.yaml (Kubernetes CronJob)', () => {
      const yaml = readFileSync(join(EXAMPLES, 'maintain-cronjob.yaml'), 'utf8');
      expect(yaml).toMatch(/schedule: "0 2 \* \* \*"/);
      const script = JSON.parse(/command: (\[.*\])/.exec(yaml)![1]) as string[];
      expect(script.slice(0, 2)).toEqual(['sh', '-c']);
      const run = spawnSync('sh', ['-c', script[2]], { cwd: dir, env: { ...env.cliEnv, PATH: `${dir}:${process.env.PATH}` }, encoding: 'utf8' });
      expect(run.status, run.stderr).toBe(0);
      expect(run.stderr.trim().split('\n').map((l) => JSON.parse(l).level)).not.toContain('error');
    });

    it('examples/maintain-schedule.yml (scheduled GitHub Actions workflow)', () => {
      const workflow = readFileSync(join(EXAMPLES, 'maintain-schedule.yml'), 'utf8');
      expect(workflow).toMatch(/cron: "0 2 \* \* \*"/);
      const block = /- name: maintain[\s\S]*?run: \|\n([\s\S]*?)\n\s*- name:/.exec(workflow)![1];
      const script = block.split('\n').map((line) => line.replace(/^ {10}/, '')).join('\n');
      const run = bash(script);
      expect(run.status, run.stderr).toBe(0);
      expect(JSON.parse(readFileSync(join(dir, 'maintain.json'), 'utf8')).result.problems).toEqual([]);
    });

    it('examples/migrate-indexed-job.yaml (Kubernetes Indexed Job): four shards, every row once', async () => {
      const yaml = readFileSync(join(EXAMPLES, 'migrate-indexed-job.yaml'), 'utf8');
      expect(yaml).toMatch(/completionMode: Indexed/);
      const completions = Number(/completions: (\d+)/.exec(yaml)![1]);
      const script = (JSON.parse(/command: (\[.*\])/.exec(yaml)![1]) as string[])[2];
      const app = await insertApp(env.db, 'sharded');
      for (let i = 0; i < 40; i++) await insertFile(env.db, app, `src/s${i}.ts`, text(3000 + i, `s${i} `));
      const codes = await Promise.all(
        Array.from({ length: completions }, (_, index) =>
          new Promise<number>((resolve) => {
            const child = spawn('sh', ['-c', script], { cwd: dir, env: { ...env.cliEnv, PATH: `${dir}:${process.env.PATH}`, JOB_COMPLETION_INDEX: String(index), METRICS_PORT: '0' }, stdio: 'ignore' });
            child.on('exit', (code) => resolve(code ?? -1));
          }),
        ),
      );
      expect(codes).toEqual(Array(completions).fill(0));
      const [{ hybrid }] = await query<{ hybrid: number }>(env.db, "SELECT count(*)::int AS hybrid FROM app_files WHERE app_id = $1 AND storage_location = 'hybrid'", [app]);
      expect(hybrid).toBe(40);
      await checkConsistency(env);
    });
  });
});
