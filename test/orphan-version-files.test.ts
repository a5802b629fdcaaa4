import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { insertApp, insertFile, insertVersion, insertVersionFile, objectText, text } from './support/seed.ts';
import { query } from '../src/db.ts';
import { readAppFile } from '../src/ops/read-content.ts';
import { versionOrphanKey, versionFileKey, pathOfVersionFileKey, versionRowKey } from '../src/keys.ts';

/**
 * History rows of deleted files: the app deletes an app_files row, clears app_file_id on its version-file
 * rows and keeps them (with their contents) as history. They must migrate, verify, finalize, roll back and
 * serve a restore like every other row.
 */
describe('version-file rows whose app_file was deleted', () => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => env?.close());

  const row = async (id: string) =>
    (await query<{ storage_location: string; r2_content_key: string | null; content: string | null; content_hash: string | null }>(
      env.db,
      'SELECT storage_location, r2_content_key, content, content_hash FROM app_version_files WHERE id = $1',
      [id],
    ))[0];

  it('migrate, verify, finalize and roll back, keyed by the row itself', async () => {
    const app = await insertApp(env.db);
    const kept = await insertFile(env.db, app, 'src/kept.ts', text(4000, 'kept '));
    const version = await insertVersion(env.db, app, '1.0.0', null);
    const normal = await insertVersionFile(env.db, version, kept, 'created', text(4000, 'kept '));
    const orphanSmall = await insertVersionFile(env.db, version, null, 'updated', text(3000, 'gone small '));
    const orphanLarge = await insertVersionFile(env.db, version, null, 'updated', text(40_000, 'gone large '));
    const args = ['--app', app, '--tables', 'version-files', '--json'];

    const migrated = await cli(['migrate', '--yes', ...args], env.cliEnv);
    expect(migrated.code, migrated.stdout + migrated.stderr).toBe(0);
    expect(migrated.json().result.uploaded).toBe(3);
    expect((await row(normal)).r2_content_key).toBe(`apps/${app}/versions/${version}/src/kept.ts`);
    for (const [id, content] of [[orphanSmall, text(3000, 'gone small ')], [orphanLarge, text(40_000, 'gone large ')]] as const) {
      const after = await row(id);
      expect(after.storage_location).toBe('hybrid');
      expect(after.r2_content_key).toBe(`apps/${app}/versions/${version}@${id}`);
      expect(await objectText(env.store, after.r2_content_key!)).toBe(content);
    }
    for (const command of [['verify'], ['verify', '--deep'], ['finalize', '--yes'], ['verify', '--deep']]) {
      const run = await cli([...command, ...args], env.cliEnv);
      expect(run.code, `${command.join(' ')}: ${run.stdout}${run.stderr}`).toBe(0);
    }
    expect((await row(orphanLarge)).storage_location).toBe('r2');
    expect((await row(orphanLarge)).content).toBeNull();
    const back = await cli(['rollback', '--yes', '--purge', ...args], env.cliEnv);
    expect(back.code, back.stderr).toBe(0);
    const restored = await row(orphanLarge);
    expect(restored.storage_location).toBe('database');
    expect(restored.content).toBe(text(40_000, 'gone large '));
    expect(await env.store.head(`apps/${app}/versions/${version}@${orphanLarge}`)).toBeUndefined();
  });

  it('restore-version rebuilds a version from history rows whose file was deleted after they were migrated', async () => {
    const app = await insertApp(env.db);
    const doomed = await insertFile(env.db, app, 'src/doomed.tsx', text(20_000, 'v1 doomed '));
    const stays = await insertFile(env.db, app, 'src/stays.tsx', text(2000, 'v1 stays '));
    const v1 = await insertVersion(env.db, app, '1.0.0', null);
    await insertVersionFile(env.db, v1, doomed, 'created', text(20_000, 'v1 doomed '));
    await insertVersionFile(env.db, v1, stays, 'created', text(2000, 'v1 stays '));
    expect((await cli(['migrate', '--yes', '--app', app], env.cliEnv)).code).toBe(0);
    expect((await cli(['finalize', '--yes', '--app', app], env.cliEnv)).code).toBe(0);
    // the app deletes the file in a later version, keeping the history rows
    const v2 = await insertVersion(env.db, app, '2.0.0', null);
    await query(env.db, 'UPDATE app_version_files SET app_file_id = NULL WHERE app_file_id = $1', [doomed]);
    await insertVersionFile(env.db, v2, null, 'deleted', null);
    await query(env.db, 'DELETE FROM app_files WHERE id = $1', [doomed]);

    const restore = await cli(['restore-version', app, '1.0.0', '--yes', '--json'], env.cliEnv);
    expect(restore.code, restore.stdout + restore.stderr).toBe(0);
    expect(await readAppFile(env.context, app, 'src/doomed.tsx')).toBe(text(20_000, 'v1 doomed '));
    expect(await readAppFile(env.context, app, 'src/stays.tsx')).toBe(text(2000, 'v1 stays '));
  });

  it('keys: the row key never meets a path key, and path keys give their path back', () => {
    expect(versionOrphanKey('1', '2', '3')).toEqual({ ok: true, key: 'apps/1/versions/2@3' });
    const pathKey = versionFileKey('1', '2', '3');
    expect(pathKey.ok && pathKey.key).toBe('apps/1/versions/2/3');
    expect(pathOfVersionFileKey('apps/1/versions/2/src/a b.ts')).toBe('src/a b.ts');
    const rowKey = versionRowKey('1', '2', '3', 'src/a.ts');
    expect(rowKey.ok && pathOfVersionFileKey(rowKey.key)).toBe('src/a.ts');
    expect(pathOfVersionFileKey('apps/1/versions/2@3')).toBeUndefined();
    expect(versionOrphanKey('1', 'x', '3').ok).toBe(false);
  });
});
