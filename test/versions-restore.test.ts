import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, mkdirSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { bucketFingerprint, databaseFingerprint, insertApp, insertFile, insertVersion, insertVersionFile, text } from './support/seed.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { storeAt } from './support/stores.ts';
import { migrate } from '../src/ops/migrate.ts';
import { finalize } from '../src/ops/finalize.ts';
import { applyRestore, prepareRestore } from '../src/ops/restore-version.ts';
import { defaultRunOptions } from '../src/ops/options.ts';
import { DEFAULT_POLICY } from '../src/placement.ts';
import { query } from '../src/db.ts';
import { readAppFile } from '../src/ops/read-content.ts';

const sha = (s: string) => createHash('sha256').update(Buffer.from(s, 'utf8')).digest('hex');

async function filesOf(env: TestEnv, app: string): Promise<Record<string, string>> {
  const rows = await query<{ path: string }>(env.db, 'SELECT path FROM app_files WHERE app_id = $1 ORDER BY path', [app]);
  const files: Record<string, string> = {};
  for (const row of rows) files[row.path] = await readAppFile(env.context, app, row.path);
  return files;
}

describe('version history, restore-version and export', () => {
  let env: TestEnv;
  let app: string;
  let v1: string;
  const original: Record<string, string> = {
    'index.html': text(1500, '<p>hi</p>'),
    'src/App.tsx': text(30_000, 'export const App = 1;\n'),
    'src/tiny.ts': 'export {}',
    'src/ü ñ/名前.tsx': text(2500, 'ü'),
  };

  beforeAll(async () => {
    env = await createTestEnv();
    app = await insertApp(env.db, 'restorable');
    const fileIds: Record<string, string> = {};
    for (const [path, content] of Object.entries(original)) fileIds[path] = await insertFile(env.db, app, path, content);
    v1 = await insertVersion(env.db, app, '1.0.0', JSON.stringify(original), 'first');
    for (const [path, content] of Object.entries(original)) await insertVersionFile(env.db, v1, fileIds[path], 'created', content);
  });
  afterAll(async () => env?.close());

  it('migrate moves snapshots and version-file contents, keyed by the plan layout, and --tables chooses', async () => {
    const onlyFiles = await cli(['migrate', '--yes', '--json', '--tables', 'files'], env.cliEnv);
    expect(onlyFiles.code).toBe(0);
    expect(onlyFiles.json().result.tables.map((t: { table: string }) => t.table)).toEqual(['files']);
    const all = await cli(['migrate', '--yes', '--json'], env.cliEnv);
    expect(all.code).toBe(0);
    const plan = all.json().plan;
    expect(new Set(plan.lines.map((l: { table: string }) => l.table))).toEqual(new Set(['files', 'snapshots', 'version-files']));
    const [version] = await query<{ storage_strategy: string; r2_snapshot_key: string; snapshot_hash: string; files_snapshot: string }>(
      env.db,
      'SELECT storage_strategy, r2_snapshot_key, snapshot_hash, files_snapshot FROM app_versions WHERE id = $1',
      [v1],
    );
    expect(version.storage_strategy).toBe('hybrid');
    expect(version.r2_snapshot_key).toBe(`apps/${app}/snapshots/${v1}/snapshot.json`);
    expect(version.snapshot_hash).toBe(sha(version.files_snapshot));
    const versionFiles = await query<{ r2_content_key: string | null; storage_location: string }>(env.db, 'SELECT r2_content_key, storage_location FROM app_version_files WHERE app_version_id = $1 ORDER BY id', [v1]);
    expect(versionFiles.map((row) => row.r2_content_key)).toEqual([
      `apps/${app}/versions/${v1}/index.html`,
      `apps/${app}/versions/${v1}/src/App.tsx`,
      null,
      `apps/${app}/versions/${v1}/src/ü ñ/名前.tsx`,
    ]);
    const verify = await cli(['verify', '--deep', '--json'], env.cliEnv);
    expect(verify.code).toBe(0);
    expect(verify.json().checked).toEqual({ files: 3, snapshots: 1, 'version-files': 3 });
    const report = await cli(['report', '--format', 'json'], env.cliEnv);
    expect(report.json().tables.map((t: { table: string }) => t.table)).toEqual(['files', 'snapshots', 'version-files']);
  });

  it('restore-version --dry-run shows the diff and changes nothing', async () => {
    await query(env.db, "UPDATE app_files SET content = 'broken', storage_location = 'database', r2_object_key = NULL WHERE app_id = $1 AND path = 'index.html'", [app]);
    await insertFile(env.db, app, 'stray.log', text(1200, 'log '));
    const dbBefore = await databaseFingerprint(env.db);
    const bucketBefore = await bucketFingerprint(env.store);
    const run = await cli(['restore-version', app, '1.0.0', '--dry-run', '--json'], env.cliEnv);
    expect(run.code).toBe(0);
    const diff = run.json().diff;
    expect(diff.changed.map((e: { path: string }) => e.path)).toEqual(['index.html']);
    expect(diff.deleted.map((e: { path: string }) => e.path)).toEqual(['stray.log']);
    expect(diff.added).toEqual([]);
    expect(diff.unchanged).toBe(3);
    const human = await cli(['restore-version', app, '1.0.0', '--dry-run'], env.cliEnv);
    expect(human.stdout).toMatch(/~ index\.html \(6 B → 1\.46 KiB\)/);
    expect(human.stdout).toMatch(/- stray\.log/);
    expect(await databaseFingerprint(env.db)).toBe(dbBefore);
    expect(await bucketFingerprint(env.store)).toEqual(bucketBefore);
  });

  it('restores byte for byte when contents live only in R2, records a new version, and export matches', async () => {
    await finalize(env.context, defaultRunOptions());
    const [{ r2 }] = await query<{ r2: number }>(env.db, "SELECT count(*)::int AS r2 FROM app_versions WHERE storage_strategy = 'r2' AND files_snapshot IS NULL");
    expect(r2).toBe(1);
    const run = await cli(['restore-version', app, v1, '--yes', '--json'], env.cliEnv);
    expect(run.code).toBe(0);
    const result = run.json().result;
    expect(await filesOf(env, app)).toEqual(original);
    const [version] = await query<{ changelog: string; version_number: string }>(env.db, 'SELECT changelog, version_number FROM app_versions WHERE id = $1', [result.newVersionId]);
    expect(version.changelog).toMatch(/Restored from version 1\.0\.0/);
    const restoredRows = await query<{ action: string }>(env.db, 'SELECT action FROM app_version_files WHERE app_version_id = $1', [result.newVersionId]);
    expect(restoredRows.map((r) => r.action)).toEqual(['restored']);
    const verify = await cli(['verify', '--deep'], env.cliEnv);
    expect(verify.code).toBe(0);
    const out = mkdtempSync(join(tmpdir(), 'oss-export-'));
    try {
      const exported = await cli(['export', app, '--out', out, '--json'], env.cliEnv);
      expect(exported.code).toBe(0);
      for (const [path, content] of Object.entries(original)) expect(readFileSync(join(out, path), 'utf8')).toBe(content);
      expect(exported.json().written).toHaveLength(4);
      const cat = await cli(['cat', app, '/src/App.tsx'], env.cliEnv);
      expect(cat.stdout).toBe(original['src/App.tsx']);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('rebuilds a version from its version-file rows when the snapshot is gone', async () => {
    await query(env.db, "UPDATE app_versions SET files_snapshot = NULL, r2_snapshot_key = NULL, storage_strategy = 'database' WHERE id = $1", [v1]);
    await query(env.db, "UPDATE app_files SET content = 'changed again', storage_location = 'database', r2_object_key = NULL WHERE app_id = $1 AND path = 'src/tiny.ts'", [app]);
    const run = await cli(['restore-version', app, '1.0.0', '--yes', '--json'], env.cliEnv);
    expect(run.code).toBe(0);
    expect(run.json().snapshotSource).toBe('version-files');
    expect(await filesOf(env, app)).toEqual(original);
  });

  it('an S3 failure during the uploads leaves app_files exactly as before', async () => {
    await query(env.db, "UPDATE app_files SET content = $2, storage_location = 'database', r2_object_key = NULL WHERE app_id = $1 AND path = 'src/App.tsx'", [app, text(40_000, 'bad deploy ')]);
    const before = await query(env.db, 'SELECT * FROM app_files WHERE app_id = $1 ORDER BY id', [app]);
    const versionsBefore = await query(env.db, 'SELECT count(*)::int AS n FROM app_versions');
    const proxy = await new S3Proxy(env.s3.port, env.s3.bucket).start();
    proxy.inject((request) => request.method === 'PUT' && request.key.startsWith('apps/'), { kind: 'status', status: 500 }, 1000);
    const store = storeAt(env.s3, proxy.endpoint, { maxAttempts: 2 });
    try {
      const prepared = await prepareRestore({ ...env.context, store }, app, '1.0.0');
      await expect(applyRestore({ ...env.context, store }, prepared, DEFAULT_POLICY)).rejects.toThrow(/upload/);
    } finally {
      store.destroy();
      await proxy.stop();
    }
    expect(await query(env.db, 'SELECT * FROM app_files WHERE app_id = $1 ORDER BY id', [app])).toEqual(before);
    expect(await query(env.db, 'SELECT count(*)::int AS n FROM app_versions')).toEqual(versionsBefore);
  });

  it('missing app, missing or ambiguous version, and a corrupt snapshot are clear errors that change nothing', async () => {
    await insertVersion(env.db, app, '2.0.0', '{"a.js": "x"}');
    await insertVersion(env.db, app, '2.0.0', '{"a.js": "y"}');
    const corrupt = await insertVersion(env.db, app, '3.0.0', '{"a.js": "trunc');
    const before = await databaseFingerprint(env.db);
    const noApp = await cli(['restore-version', '987654', '1.0.0', '--yes'], env.cliEnv);
    expect(noApp.code).toBe(2);
    expect(noApp.stderr).toMatch(/App 987654 does not exist/);
    const noVersion = await cli(['restore-version', app, '9.9.9', '--yes'], env.cliEnv);
    expect(noVersion.code).toBe(2);
    expect(noVersion.stderr).toMatch(/no version/);
    const ambiguous = await cli(['restore-version', app, '2.0.0', '--yes'], env.cliEnv);
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toMatch(/ambiguous/);
    const bad = await cli(['restore-version', app, corrupt, '--yes'], env.cliEnv);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/not valid JSON/);
    expect(await databaseFingerprint(env.db)).toBe(before);
  });

  it('export refuses paths that would escape the directory, and symlinks already in it', async () => {
    const evil = await insertApp(env.db, 'evil');
    await insertFile(env.db, evil, '../../escape.txt', 'x');
    await insertFile(env.db, evil, 'a/../../escape2.txt', 'x');
    await insertFile(env.db, evil, 'link/inside.txt', 'x');
    await insertFile(env.db, evil, '/etc-like/ok.txt', 'fine');
    const out = mkdtempSync(join(tmpdir(), 'oss-export-'));
    const outside = mkdtempSync(join(tmpdir(), 'oss-outside-'));
    try {
      symlinkSync(outside, join(out, 'link'));
      mkdirSync(join(out, 'sub'));
      const run = await cli(['export', evil, '--out', out, '--json'], env.cliEnv);
      expect(run.code).toBe(1);
      const result = run.json();
      expect(result.refused.map((r: { path: string }) => r.path).sort()).toEqual(['../../escape.txt', 'a/../../escape2.txt', 'link/inside.txt']);
      expect(result.written.map((w: { path: string }) => w.path)).toEqual(['/etc-like/ok.txt']);
      expect(readdirSync(outside)).toEqual([]);
      expect(existsSync(join(out, '..', 'escape.txt'))).toBe(false);
      expect(readFileSync(join(out, 'etc-like', 'ok.txt'), 'utf8')).toBe('fine');
    } finally {
      rmSync(out, { recursive: true, force: true });
      rmSync(outside, { recursive: true, force: true });
    }
  });

  it('export of a never-migrated app says nothing of content_hash (there is none to disagree with); a changed row is still named', async () => {
    const fresh = await insertApp(env.db, 'never-migrated');
    for (let i = 0; i < 3; i++) await insertFile(env.db, fresh, `src/fresh${i}.ts`, `export const fresh = ${i};\n`);
    const out = mkdtempSync(join(tmpdir(), 'oss-export-'));
    try {
      const run = await cli(['export', fresh, '--out', out], env.cliEnv);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toMatch(/Wrote 3 files/);
      expect(run.stdout).not.toMatch(/no longer matches content_hash/);
      const json = await cli(['export', fresh, '--out', out, '--json'], env.cliEnv);
      expect(json.json().written.map((w: { verified: boolean | null }) => w.verified)).toEqual([null, null, null]);
      // A row whose recorded hash is not its content's is still named.
      await query(env.db, "UPDATE app_files SET content_hash = repeat('0', 64) WHERE app_id = $1 AND path = 'src/fresh1.ts'", [fresh]);
      const changed = await cli(['export', fresh, '--out', out], env.cliEnv);
      expect(changed.stdout).toMatch(/1 file came from database content that no longer matches content_hash/);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
