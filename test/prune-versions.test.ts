import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli, spawnCli } from './support/cli.ts';
import { bucketFingerprint, databaseFingerprint, insertApp, insertFile, insertVersion, insertVersionFile, text } from './support/seed.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { checkConsistency } from './support/consistency.ts';
import { query } from '../src/db.ts';

const DAY = 86_400_000;

/**
 * Retention of version history: both rules must let a version go, the newest never goes, a referenced
 * version stays (listed), a kept version without a snapshot keeps what it is rebuilt from, each app goes in
 * one transaction, and every kept version can still be restored.
 */
describe.skipIf(ON_PGLITE)('prune-versions', () => {
  let env: TestEnv;

  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => {
    await env?.close();
  });

  /** The R2 keys of these versions' snapshots and version files. */
  async function objectKeysOfVersions(versionIds: string[]): Promise<string[]> {
    const rows = await query<{ key: string }>(
      env.db,
      `SELECT r2_snapshot_key AS key FROM app_versions WHERE id = ANY($1::bigint[]) AND r2_snapshot_key IS NOT NULL
       UNION ALL SELECT r2_content_key FROM app_version_files WHERE app_version_id = ANY($1::bigint[]) AND r2_content_key IS NOT NULL`,
      [versionIds],
    );
    return rows.map((r) => r.key);
  }

  /** An app whose versions are `ageDays` old (newest last), each with a snapshot and two version files. */
  async function appWithVersions(name: string, ageDays: number[], options: { snapshot?: (i: number) => boolean; fileless?: boolean } = {}): Promise<{ app: string; versions: string[] }> {
    const app = await insertApp(env.db, name);
    const file = await insertFile(env.db, app, 'src/App.tsx', text(3000, `${name} `));
    const versions: string[] = [];
    for (const [i, age] of ageDays.entries()) {
      const snapshot = options.snapshot?.(i) === false ? null : JSON.stringify({ 'src/App.tsx': text(2500 + i, `${name} v${i} `) });
      const version = await insertVersion(env.db, app, `1.${i}.0`, snapshot);
      await insertVersionFile(env.db, version, file, i === 0 ? 'created' : 'updated', text(2500 + i, `${name} v${i} `));
      // a version file whose app file is gone (Rails leaves app_file_id NULL then)
      if (options.fileless !== false) await insertVersionFile(env.db, version, null, 'created', text(1500 + i, `${name} extra ${i} `));
      await query(env.db, `UPDATE app_versions SET created_at = now() - make_interval(secs => $2::float8 / 1000) WHERE id = $1`, [version, age * DAY]);
      versions.push(version);
    }
    return { app, versions };
  }

  const verdictOf = (plan: { heldBack: { id: string; reason: string }[] }, id: string) => plan.heldBack.find((h) => h.id === id)?.reason;
  const remaining = async (app: string) => (await query<{ id: string }>(env.db, 'SELECT id FROM app_versions WHERE app_id = $1 ORDER BY created_at, id', [app])).map((r) => r.id);

  it('both rules must allow it; the boundaries are exact; an app\'s newest never goes; the plan comes first and the dry run changes nothing', async () => {
    // ages, oldest first: 400, 60, 30 days + 1 minute, 30 days - 1 minute, 10, 1
    const minute = 1 / 1440;
    const a = await appWithVersions('rules', [400, 60, 30 + minute, 30 - minute, 10, 1]);
    const lonely = await appWithVersions('lonely', [400]);
    const few = await appWithVersions('few', [400, 300]);
    for (const args of [['migrate', '--yes'], ['finalize', '--yes']]) expect((await cli(args, env.cliEnv)).code).toBe(0);
    const args = ['prune-versions', '--keep-last', '2', '--keep-within', '30d', '--app', a.app, '--app', lonely.app, '--app', few.app];
    const beforeDb = await databaseFingerprint(env.db);
    const beforeBucket = await bucketFingerprint(env.store);
    const dry = await cli([...args, '--dry-run', '--json'], env.cliEnv);
    expect(dry.code, dry.stderr).toBe(0);
    const plan = dry.json().plan;
    // rules: the three older than 30 days that are not among the 2 newest; lonely keeps its only (newest) one; few keeps both (keep-last 2)
    expect(plan.prune).toBe(3);
    expect(plan.apps.find((x: { appId: string }) => x.appId === a.app)).toEqual({ appId: a.app, versions: 6, prune: 3 });
    expect(plan.apps.find((x: { appId: string }) => x.appId === lonely.app).prune).toBe(0);
    expect(plan.apps.find((x: { appId: string }) => x.appId === few.app).prune).toBe(0);
    expect(plan.versionFiles).toBe(6);
    expect(plan.dbBytes).toBeGreaterThan(0);
    expect(plan.objects).toBeGreaterThan(0); // their snapshots and version files went to R2
    expect(plan.requests.classA).toBe(plan.objects);
    expect(await databaseFingerprint(env.db)).toBe(beforeDb);
    expect(await bucketFingerprint(env.store)).toEqual(beforeBucket);
    // without a terminal and without --yes it refuses
    expect((await cli(args, env.cliEnv)).code).toBe(2);

    const objectsOfPruned = await objectKeysOfVersions(a.versions.slice(0, 3));
    expect(objectsOfPruned.length).toBe(plan.objects);
    const done = await cli([...args, '--yes', '--json'], env.cliEnv);
    expect(done.code, done.stderr).toBe(0);
    expect(done.json().result).toMatchObject({ versionsDeleted: 3, versionFilesDeleted: 6, appsPruned: 1, failedApps: [], objectsDeleted: plan.objects });
    expect(await remaining(a.app)).toEqual(a.versions.slice(3));
    expect(await remaining(lonely.app)).toEqual(lonely.versions);
    for (const key of objectsOfPruned) expect(await env.store.head(key), key).toBeUndefined();
    // every kept version can still be restored
    for (const version of [...a.versions.slice(3), ...lonely.versions, ...few.versions]) {
      const app = a.versions.includes(version) ? a.app : lonely.versions.includes(version) ? lonely.app : few.app;
      const restore = await cli(['restore-version', app, version, '--dry-run'], env.cliEnv);
      expect(restore.code, `${version}: ${restore.stderr}`).toBe(0);
    }
    expect((await cli(['restore-version', a.app, a.versions[3], '--yes'], env.cliEnv)).code).toBe(0);
    expect((await cli(['verify', '--deep'], env.cliEnv)).code).toBe(0);
    await checkConsistency(env);
    // --keep-within alone keeps each app's newest
    const only = await appWithVersions('only-age', [500, 400]);
    const age = await cli(['prune-versions', '--keep-within', '1d', '--app', only.app, '--yes', '--json'], env.cliEnv);
    expect(age.code, age.stderr).toBe(0);
    expect(await remaining(only.app)).toEqual([only.versions[1]]);
  }, 120_000);

  it('a version another table references is kept and listed, never forced; a kept version without a snapshot keeps what it is rebuilt from', async () => {
    const ref = await appWithVersions('referenced', [300, 200, 100, 1]);
    await query(env.db, 'CREATE TABLE deployments (id bigserial PRIMARY KEY, app_version_id bigint REFERENCES app_versions(id))');
    await query(env.db, 'INSERT INTO deployments (app_version_id) VALUES ($1)', [ref.versions[1]]);
    // no snapshot on its second version: restoring it replays the version files of the first
    const rebuilt = await appWithVersions('rebuilt', [300, 200, 100, 1], { snapshot: (i) => i !== 1, fileless: false });
    await query(env.db, 'INSERT INTO deployments (app_version_id) VALUES ($1)', [rebuilt.versions[1]]);
    const args = ['prune-versions', '--keep-last', '1', '--keep-within', '30d', '--app', ref.app, '--app', rebuilt.app];
    const plan = (await cli([...args, '--dry-run', '--json'], env.cliEnv)).json().plan;
    expect(verdictOf(plan, ref.versions[1])).toBe('referenced');
    expect(plan.heldBack.find((h: { id: string }) => h.id === ref.versions[1]).referencedBy).toEqual(['deployments.app_version_id']);
    expect(verdictOf(plan, rebuilt.versions[0])).toBe('needed-to-rebuild');
    const text = await cli([...args, '--dry-run'], env.cliEnv);
    expect(text.stdout).toMatch(new RegExp(`kept: app ${ref.app} version 1\\.1\\.0 \\(#${ref.versions[1]}\\): referenced by deployments\\.app_version_id`));
    const done = await cli([...args, '--yes'], env.cliEnv);
    expect(done.code, done.stderr).toBe(0);
    expect(await remaining(ref.app)).toEqual([ref.versions[1], ref.versions[3]]);
    expect(await remaining(rebuilt.app)).toEqual([rebuilt.versions[0], rebuilt.versions[1], rebuilt.versions[3]]);
    const restore = await cli(['restore-version', rebuilt.app, rebuilt.versions[1], '--dry-run', '--json'], env.cliEnv);
    expect(restore.code, restore.stderr).toBe(0);
    expect(restore.json().snapshotSource).toBe('version-files');
    await query(env.db, 'DROP TABLE deployments');
  }, 120_000);

  it('killed mid-prune, each app has lost all its prunable versions or none; a rerun finishes and cleanup takes the objects left', async () => {
    const proxy = await new S3Proxy(env.s3.port, env.s3.bucket).start();
    try {
      const apps: { app: string; versions: string[] }[] = [];
      for (let i = 0; i < 12; i++) apps.push(await appWithVersions(`killed-${i}`, [300, 250, 200, 150, 1]));
      for (const args of [['migrate', '--yes'], ['finalize', '--yes']]) expect((await cli(args, env.cliEnv)).code).toBe(0);
      proxy.latencyMs = 60;
      const appArgs = apps.flatMap((a) => ['--app', a.app]);
      const child = spawnCli(['prune-versions', '--keep-last', '1', '--keep-within', '30d', '--concurrency', '2', '--yes', ...appArgs], { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint });
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      const pruned = async () => {
        let count = 0;
        for (const a of apps) if ((await remaining(a.app)).length < 5) count++;
        return count;
      };
      for (let waited = 0; waited < 60_000 && (await pruned()) < 2; waited += 50) await new Promise((r) => setTimeout(r, 50));
      child.kill('SIGKILL');
      await exited;
      const partial = await pruned();
      expect(partial).toBeGreaterThanOrEqual(2);
      expect(partial).toBeLessThan(12);
      for (const a of apps) {
        const left = await remaining(a.app);
        expect([5, 1], `app ${a.app}`).toContain(left.length);
        if (left.length === 1) expect(left).toEqual([a.versions[4]]);
      }
      proxy.latencyMs = 0;
      const rerun = await cli(['prune-versions', '--keep-last', '1', '--keep-within', '30d', '--yes', ...appArgs], env.cliEnv);
      expect(rerun.code, rerun.stderr).toBe(0);
      for (const a of apps) expect(await remaining(a.app)).toEqual([a.versions[4]]);
      expect((await cli(['cleanup', '--grace', '0s', '--yes'], env.cliEnv)).code).toBe(0);
      const orphans = (await cli(['verify', '--orphans', '--json'], env.cliEnv)).json();
      expect(orphans.orphanCount).toBe(0);
      expect(orphans.problemCount).toBe(0);
      await checkConsistency(env);
    } finally {
      await proxy.stop();
    }
  }, 180_000);

  it('--quarantine moves the objects of pruned versions under the prefix instead of deleting them', async () => {
    const q = await appWithVersions('quarantined', [300, 200, 1]);
    for (const args of [['migrate', '--yes', '--app', q.app], ['finalize', '--yes', '--app', q.app]]) expect((await cli(args, env.cliEnv)).code).toBe(0);
    const keys = await objectKeysOfVersions(q.versions.slice(0, 2));
    expect(keys.some((key) => key.includes('@'))).toBe(true); // snapshot keys carry an @
    const run = await cli(['prune-versions', '--keep-last', '1', '--keep-within', '30d', '--app', q.app, '--quarantine', 'quarantine/prune', '--yes', '--json'], env.cliEnv);
    expect(run.code, JSON.stringify(run.json().result?.objectsFailed)).toBe(0);
    expect(run.json().result.objectsQuarantined).toBe(keys.length);
    for (const key of keys) {
      expect(await env.store.head(key), key).toBeUndefined();
      expect(await env.store.head(`quarantine/prune/${key}`), key).toBeDefined();
    }
    expect(await remaining(q.app)).toEqual([q.versions[2]]);
  }, 60_000);

  it('report shows version history bytes by age', async () => {
    await appWithVersions('aged', [400, 100, 20, 3]);
    const report = (await cli(['report', '--json'], env.cliEnv)).json();
    const ages = report.versionHistory.map((row: { age: string }) => row.age);
    expect(ages).toEqual(expect.arrayContaining(['0-7 days', '8-30 days', '91-365 days', 'over a year']));
    for (const row of report.versionHistory) expect(row.db_bytes + row.r2_bytes).toBeGreaterThan(0);
    const table = await cli(['report'], env.cliEnv);
    expect(table.stdout).toMatch(/Version history by age/);
    expect(table.stdout).toMatch(/over a year/);
  });
});
