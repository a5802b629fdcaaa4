import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CreateMultipartUploadCommand, DeleteBucketLifecycleCommand, PutBucketLifecycleConfigurationCommand, PutObjectCommand, type LifecycleRule } from '@aws-sdk/client-s3';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { databaseFingerprint, insertApp, insertFile, text } from './support/seed.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { storeAt } from './support/stores.ts';
import { R2Emulation } from '../src/local/r2-emulation.ts';
import { judgeLifecycle } from '../src/store/lifecycle.ts';
import { query } from '../src/db.ts';
import type { ObjectStore } from '../src/object-store.ts';

/**
 * What R2 documents and a client must not assume away: its own conditional delete
 * (`x-amz-if-match-last-modified-time`; If-Match is no condition on R2's DeleteObject), lifecycle rules that
 * delete and move objects behind every client's back ("Object lifecycles"), and incomplete multipart uploads
 * that are billed until aborted.
 */
describe("R2's rules: its conditional delete, lifecycle rules, incomplete uploads", () => {
  let env: TestEnv;
  let r2: R2Emulation;
  let proxy: S3Proxy;
  let admin: ObjectStore;
  let cliEnv: NodeJS.ProcessEnv;

  beforeAll(async () => {
    env = await createTestEnv();
    r2 = new R2Emulation(env.s3.barePort);
    proxy = await new S3Proxy(env.s3.barePort, env.s3.bucket, r2).start();
    admin = storeAt(env.s3, proxy.endpoint);
    cliEnv = { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint };
  });
  afterAll(async () => {
    admin?.destroy();
    await proxy?.stop();
    await env?.close();
  });
  beforeEach(async () => {
    r2.honour.deleteIfMatch = false;
    r2.honour.deleteIfLastModified = true;
    r2.lifecycle = undefined;
    r2.lifecycleImplemented = true;
    r2.writeIntervalMs = 1000;
  });

  const putLifecycle = (rules: LifecycleRule[]) => admin.client.send(new PutBucketLifecycleConfigurationCommand({ Bucket: env.s3.bucket, LifecycleConfiguration: { Rules: rules } }));
  const thirtyDays: LifecycleRule = { ID: 'expire-apps', Status: 'Enabled', Filter: { Prefix: 'apps/' }, Expiration: { Days: 30 } };

  async function migratedApp(name: string, files = 3): Promise<string> {
    const app = await insertApp(env.db, name);
    for (let i = 0; i < files; i++) await insertFile(env.db, app, `src/${name}-${i}.ts`, text(60_000 + i * 100, `${name} ${i} `));
    const run = await cli(['migrate', '--yes', '--app', app], cliEnv);
    expect(run.code, run.stderr).toBe(0);
    return app;
  }

  it("R2's delete mode: doctor proves the Last-Modified condition and names it the guard; If-Match is no condition there", async () => {
    const run = await cli(['doctor', '--json'], cliEnv);
    expect(run.code, run.stderr).toBe(0);
    const document = run.json();
    const check = (id: string) => document.checks.find((c: { id: string }) => c.id === id);
    expect(check('deleteIfLastModified').holds).toBe(true);
    expect(check('deleteIfLastModified').seen).toMatch(/wrong time refused \(412, the object kept\), the right one deleted/);
    expect(check('deleteIfMatch').holds).toBe(false);
    expect(document.guards.deletes).toBe('last-modified');
    expect((await cli(['doctor'], cliEnv)).stdout).toMatch(/x-amz-if-match-last-modified-time/);

    // Whole seconds guard a delete only where the store takes one write per key per second.
    r2.writeIntervalMs = 0;
    expect((await cli(['doctor', '--json'], cliEnv)).json().guards.deletes).toBe('tombstone');
    r2.writeIntervalMs = 1000;
    r2.honour.deleteIfMatch = true;
    expect((await cli(['doctor', '--json'], cliEnv)).json().guards.deletes).toBe('if-match');
    r2.honour.deleteIfMatch = false;
    r2.honour.deleteIfLastModified = false;
    expect((await cli(['doctor', '--json'], cliEnv)).json().guards.deletes).toBe('tombstone');
  });

  for (const mode of ['last-modified', 'if-match'] as const) {
    it(`every delete of a row's object carries the condition the store proved (${mode === 'last-modified' ? "R2's Last-Modified" : "S3's If-Match"}): cleanup and rollback --purge, two requests per orphan`, async () => {
      r2.honour.deleteIfMatch = mode === 'if-match';
      r2.honour.deleteIfLastModified = mode === 'last-modified';
      const app = await migratedApp(`deletes-${mode}`);
      // Orphans: objects of ours that no row names any more (the rows are gone).
      const orphanApp = await migratedApp(`orphans-${mode}`, 4);
      const orphanKeys = (await query<{ key: string }>(env.db, 'SELECT r2_object_key AS key FROM app_files WHERE app_id = $1', [orphanApp])).map((row) => row.key);
      await query(env.db, 'DELETE FROM app_files WHERE app_id = $1', [orphanApp]);
      const from = r2.journal.length;
      const seenFrom = proxy.seen.length;
      const cleanup = await cli(['cleanup', '--app', orphanApp, '--grace', '0s', '--yes', '--json'], cliEnv);
      expect(cleanup.code, cleanup.stderr).toBe(0);
      expect(cleanup.json().result.deleted).toBe(4);
      // HEAD and the conditional DELETE: no tombstone.
      const perOrphan = proxy.seen.slice(seenFrom).filter((request) => orphanKeys.includes(request.key));
      // A HEAD and a DELETE each, nothing else (a request the store failed may be sent again: an attempt, not a step).
      for (const key of orphanKeys) {
        const mine = perOrphan.filter((request) => request.key === key);
        expect(mine.filter((request) => request.method === 'HEAD').length, key).toBeGreaterThanOrEqual(1);
        expect(mine.filter((request) => request.method === 'DELETE').length, key).toBeGreaterThanOrEqual(1);
        expect(mine.filter((request) => request.method !== 'HEAD' && request.method !== 'DELETE'), key).toEqual([]);
      }

      const appKeys = (await query<{ key: string }>(env.db, 'SELECT r2_object_key AS key FROM app_files WHERE app_id = $1', [app])).map((row) => row.key);
      const purge = await cli(['rollback', '--yes', '--json', '--app', app, '--purge'], cliEnv);
      expect(purge.code, purge.stderr).toBe(0);
      const deletes = r2.journal.slice(from).filter((entry) => entry.kind === 'delete' && entry.key.startsWith('apps/'));
      expect(new Set(deletes.map((entry) => entry.key))).toEqual(new Set([...orphanKeys, ...appKeys]));
      for (const entry of deletes) expect(entry.condition, entry.key).toMatch(mode === 'if-match' ? /if-match: / : /x-amz-if-match-last-modified-time: /);
      expect(r2.journal.slice(from).filter((entry) => entry.kind === 'put' && entry.key.startsWith('apps/'))).toEqual([]);
    });
  }

  it('an expiration rule on apps/: doctor fails naming it, migrate and finalize refuse with nothing changed, maintain reports it', async () => {
    const app = await migratedApp('lifecycle');
    await putLifecycle([thirtyDays]);
    const doctor = await cli(['doctor', '--json'], cliEnv);
    expect(doctor.code).toBe(1);
    expect(doctor.json().failing).toEqual(['lifecycleKeepsObjects']);
    expect(doctor.json().checks.find((c: { id: string }) => c.id === 'lifecycleKeepsObjects').seen).toMatch(/"expire-apps" on apps\/\* after 30 days/);
    expect((await cli(['doctor'], cliEnv)).stdout).toMatch(/Not safe for this tool[\s\S]*lifecycle rule expires/);

    const before = await databaseFingerprint(env.db);
    const finalize = await cli(['finalize', '--yes', '--app', app, '--r2-threshold', '1KiB'], cliEnv);
    expect(finalize.code, finalize.stderr).toBe(2);
    expect(finalize.stderr).toMatch(/lifecycle rule[\s\S]*expire-apps/);
    const other = await insertApp(env.db, 'lifecycle-new');
    await insertFile(env.db, other, 'src/new.ts', text(40_000, 'new '));
    const afterInsert = await databaseFingerprint(env.db);
    const migrate = await cli(['migrate', '--yes', '--app', other], cliEnv);
    expect(migrate.code, migrate.stderr).toBe(2);
    expect(migrate.stderr).toMatch(/expire-apps/);
    expect(await databaseFingerprint(env.db)).toBe(afterInsert);
    expect(afterInsert).not.toBe(before);

    const maintain = await cli(['maintain', '--dry-run', '--json'], cliEnv);
    expect(maintain.code).toBe(1);
    expect(maintain.json().result.problems.join('\n')).toMatch(/bucket lifecycle: expiration: "expire-apps"/);

    // A rule on another prefix, or one filtered by a tag the tool never sets, does not touch the tool's keys.
    await putLifecycle([{ ID: 'logs', Status: 'Enabled', Filter: { Prefix: 'logs/' }, Expiration: { Days: 7 } }, { ...thirtyDays, ID: 'tagged', Filter: { Tag: { Key: 'temp', Value: '1' } } }]);
    const clean = await cli(['doctor', '--json'], cliEnv);
    expect(clean.code, clean.stdout).toBe(0);
    expect(clean.json().checks.find((c: { id: string }) => c.id === 'lifecycleKeepsObjects').seen).toMatch(/2 rules, none expiring or moving apps\//);
    expect((await cli(['finalize', '--yes', '--app', app, '--r2-threshold', '1KiB'], cliEnv)).code).toBe(0);
    await admin.client.send(new DeleteBucketLifecycleCommand({ Bucket: env.s3.bucket }));
  });

  it('a transition to Infrequent Access is named and priced; a store without the call is said to be unknown', async () => {
    await putLifecycle([{ ID: 'to-ia', Status: 'Enabled', Filter: { Prefix: '' }, Transitions: [{ Days: 30, StorageClass: 'STANDARD_IA' }] }]);
    const doctor = await cli(['doctor'], cliEnv);
    expect(doctor.code, doctor.stdout).toBe(0);
    expect(doctor.stdout).toMatch(/"to-ia" moves every key to STANDARD_IA after 30 days[\s\S]*pays \$0\.01\/GB/);
    expect(doctor.stdout).toMatch(/--storage-class infrequent-access/);
    r2.lifecycleImplemented = false;
    const unknown = (await cli(['doctor', '--json'], cliEnv)).json();
    const check = unknown.checks.find((c: { id: string }) => c.id === 'lifecycleKeepsObjects');
    expect(check.holds).toBe(true);
    expect(check.seen).toMatch(/^unknown: .*NotImplemented/);
  });

  it('judges rules by prefix, status, tag and action', () => {
    expect(judgeLifecycle([]).state).toBe('none');
    expect(judgeLifecycle([thirtyDays]).expiring).toHaveLength(1);
    expect(judgeLifecycle([{ ...thirtyDays, Status: 'Disabled' }]).expiring).toHaveLength(0);
    expect(judgeLifecycle([{ ...thirtyDays, Filter: undefined, Prefix: '' }]).expiring).toHaveLength(1);
    expect(judgeLifecycle([{ ...thirtyDays, Filter: { Prefix: 'apps/7/' } }]).expiring).toHaveLength(1);
    expect(judgeLifecycle([{ ...thirtyDays, Filter: { Prefix: 'ap' } }]).expiring).toHaveLength(1);
    expect(judgeLifecycle([{ ...thirtyDays, Filter: { Prefix: 'quarantine/' } }]).expiring).toHaveLength(0);
    expect(judgeLifecycle([{ ...thirtyDays, Filter: { And: { Prefix: 'apps/', Tags: [{ Key: 'a', Value: 'b' }] } } }]).expiring).toHaveLength(0);
    expect(judgeLifecycle([{ ...thirtyDays, Expiration: { ExpiredObjectDeleteMarker: true } }]).expiring).toHaveLength(0);
    expect(judgeLifecycle([{ ...thirtyDays, Expiration: { Date: new Date('2030-01-01T00:00:00Z') } }]).expiring[0].when).toBe('on 2030-01-01');
  });

  it('cleanup aborts incomplete multipart uploads under apps/ past the grace period, and leaves younger ones', async () => {
    const app = await insertApp(env.db, 'uploads');
    await insertFile(env.db, app, 'src/small.ts', 'small');
    const start = (key: string) => admin.client.send(new CreateMultipartUploadCommand({ Bucket: env.s3.bucket, Key: key }));
    const old = await start(`apps/${app}/files/abandoned.bin`);
    const young = await start(`apps/${app}/files/in-progress.bin`);
    const outside = await start('elsewhere/abandoned.bin');
    r2.openUploads.get(old.UploadId!)!.initiated = new Date(Date.now() - 3 * 86_400_000);
    r2.openUploads.get(outside.UploadId!)!.initiated = new Date(Date.now() - 3 * 86_400_000);
    const listing = await cli(['cleanup', '--app', app, '--json'], cliEnv);
    expect(listing.code, listing.stderr).toBe(0);
    expect(listing.json().listing.uploads).toMatchObject({ found: 2, tooYoung: 1, aborted: 0 });
    const run = await cli(['cleanup', '--app', app, '--yes', '--json'], cliEnv);
    expect(run.code, run.stderr).toBe(0);
    expect(run.json().result.uploads).toMatchObject({ found: 2, tooYoung: 1, aborted: 1, failed: [] });
    expect(r2.openUploads.has(old.UploadId!)).toBe(false);
    expect(r2.openUploads.has(young.UploadId!)).toBe(true);
    expect(r2.openUploads.has(outside.UploadId!)).toBe(true);
    // An app's finished object is no upload, and stays.
    await admin.client.send(new PutObjectCommand({ Bucket: env.s3.bucket, Key: `apps/${app}/files/app.txt`, Body: 'x' }));
  });
});
