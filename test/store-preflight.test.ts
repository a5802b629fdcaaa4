import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { bucketFingerprint, databaseFingerprint, insertApp, insertFile, insertVersion, text } from './support/seed.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { R2Emulation } from '../src/local/r2-emulation.ts';
import { query } from '../src/db.ts';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { PROBE_PREFIX } from '../src/store/preflight.ts';

/**
 * Invariant 3 rests on the store refusing conditional writes that do not hold. `doctor` proves it, and so
 * does every command that writes or deletes objects before its first object write, against three stores:
 * the local server's R2 emulation (conditions honoured), bare s3rver (accepts both headers, ignores them),
 * and a proxy that honours If-None-Match but not If-Match.
 */
describe('knowing the store before trusting it', () => {
  let env: TestEnv;
  let halfProxy: S3Proxy;
  let stores: Record<'emulated' | 'bare' | 'half', string>;
  const envFor = (store: keyof typeof stores) => ({ ...env.cliEnv, R2_ENDPOINT: stores[store] });

  beforeAll(async () => {
    env = await createTestEnv();
    const half = new R2Emulation(env.s3.barePort);
    half.honour = { ...half.honour, ifNoneMatch: true, ifMatch: false };
    halfProxy = await new S3Proxy(env.s3.barePort, env.s3.bucket, half).start();
    stores = { emulated: env.s3.endpoint, bare: env.s3.bareEndpoint, half: halfProxy.endpoint };
  });
  afterAll(async () => {
    await halfProxy?.stop();
    await env?.close();
  });

  const everyKey = async () => (await bucketFingerprint(env.store)).map((line) => line.split(' ')[0]);
  const probesLeft = async () => (await everyKey()).filter((key) => key.startsWith(PROBE_PREFIX.split('/')[0]));

  it('doctor: one line per property, exit 0 where everything holds and 1 naming what does not; probes leave nothing', async () => {
    const expectations = {
      emulated: [],
      bare: ['createIfNoneMatch', 'replaceIfMatch', 'completeIfNoneMatch', 'completeIfMatch'],
      half: ['replaceIfMatch', 'completeIfMatch'],
    };
    for (const [store, failing] of Object.entries(expectations) as [keyof typeof stores, string[]][]) {
      const run = await cli(['doctor', '--json'], envFor(store));
      const document = run.json();
      expect(run.code, `${store}: ${run.stderr}`).toBe(failing.length ? 1 : 0);
      expect(document.ok).toBe(failing.length === 0);
      expect(document.failing.sort(), store).toEqual([...failing].sort());
      const ids = document.checks.map((check: { id: string }) => check.id);
      for (const id of ['connect', 'database', 'schema', 'createIfNoneMatch', 'replaceIfMatch', 'replaceIfMatchSame', 'completeIfNoneMatch', 'completeIfMatch', 'etagIsMd5', 'metadataRoundTrip', 'sameKeyWriteLimited', 'getDecompresses']) {
        expect(ids, `${store} checks ${id}`).toContain(id);
      }
      expect(document.checks.find((check: { id: string }) => check.id === 'sameKeyWriteLimited').required).toBe(false);
      expect(document.requests.classA).toBeGreaterThan(0);
      expect(document.leftBehind).toEqual([]);
      expect(document.checks.find((check: { id: string }) => check.id === 'database').seen).toMatch(/^PostgreSQL [0-9]+/);
      expect(await probesLeft(), `${store}: probe objects left`).toEqual([]);
      const table = await cli(['doctor'], envFor(store));
      expect(table.stdout).toMatch(/If-None-Match: \* is refused \(412\)/);
      if (failing.length) expect(table.stdout).toMatch(/Not safe for this tool/);
    }
    const unreachable = await cli(['doctor', '--json'], { ...env.cliEnv, DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none' });
    expect(unreachable.code).toBe(1);
    expect(unreachable.json().failing).toEqual(['connect']);
  }, 60_000);

  it('every command that writes or deletes objects refuses such a store with exit 2, before anything is uploaded, flipped or deleted', async () => {
    const app = await insertApp(env.db, 'preflight');
    for (let i = 0; i < 4; i++) await insertFile(env.db, app, `src/f${i}.ts`, text(15_000 + i, `preflight ${i} `));
    const stale = await insertApp(env.db, 'preflight-stale');
    await insertFile(env.db, stale, 'src/stale.ts', text(4_000, 'stale '));
    const version = await insertVersion(env.db, app, '1.0.0', JSON.stringify({ 'src/f0.ts': 'restored content '.repeat(200) }));
    // Work for every command: objects of ours no row names (cleanup), r2 and hybrid rows (rollback --purge),
    // a stale hybrid row (--refresh-stale), rows still in the database (migrate), a version to restore.
    const orphaned = await insertApp(env.db, 'preflight-orphans');
    await insertFile(env.db, orphaned, 'src/gone.ts', text(3_000, 'gone '));
    for (const args of [['migrate', '--app', orphaned], ['rollback', '--app', orphaned], ['migrate', '--app', stale], ['migrate', '--app', app, '--limit', '2'], ['finalize', '--app', app]]) {
      expect((await cli([...args, '--yes'], envFor('emulated'))).code, args.join(' ')).toBe(0);
    }
    await query(env.db, "UPDATE app_files SET content = content || ' edited' WHERE app_id = $1", [stale]);
    const commands = [
      ['migrate', '--yes', '--app', app],
      ['migrate', '--refresh-stale', '--yes', '--app', stale],
      ['rollback', '--purge', '--yes', '--app', app],
      ['cleanup', '--grace', '0s', '--yes'],
      ['restore-version', app, version, '--yes'],
    ];
    for (const store of ['bare', 'half'] as const) {
      for (const args of commands) {
        const database = await databaseFingerprint(env.db);
        const bucket = await bucketFingerprint(env.store);
        const run = await cli(args, envFor(store));
        expect(run.code, `${args.join(' ')} on ${store}: ${run.stderr}`).toBe(2);
        expect(run.stderr).toMatch(/does not hold what this tool's safety rests on; nothing was uploaded, changed or deleted/);
        expect(run.stderr).toMatch(/If-Match is refused \(412\) on a different ETag/);
        if (store === 'bare') expect(run.stderr).toMatch(/If-None-Match: \* is refused/);
        expect(run.stderr).toMatch(/--allow-unconditional-store/);
        expect(await databaseFingerprint(env.db), `${args.join(' ')} on ${store}: database`).toBe(database);
        expect(await bucketFingerprint(env.store), `${args.join(' ')} on ${store}: bucket`).toEqual(bucket);
      }
    }
    // A dry run never writes, and says the check was not done.
    const bucket = await bucketFingerprint(env.store);
    const dry = await cli(['migrate', '--dry-run', '--json', '--app', app], envFor('bare'));
    expect(dry.code).toBe(0);
    expect(dry.json().plan.notes.join('\n')).toMatch(/store check: not done \(a dry run writes nothing\)/);
    expect((await cli(['cleanup', '--grace', '0s', '--dry-run'], envFor('bare'))).stdout).toMatch(/store check: not done/);
    expect(await bucketFingerprint(env.store)).toEqual(bucket);

    // On the emulation each runs, and its run records what the store was proven to hold.
    for (const args of commands) expect((await cli(args, envFor('emulated'))).code, `${args.join(' ')} on the emulation`).toBeLessThan(2);
    const recorded = await query<{ command: string; store_check: { ok: boolean; overridden: boolean; properties: { id: string; holds: boolean }[] } }>(
      env.db,
      "SELECT command, store_check FROM overskill_storage_runs WHERE store_check IS NOT NULL ORDER BY id",
    );
    expect(new Set(recorded.map((r) => r.command))).toEqual(new Set(['migrate', 'rollback', 'cleanup', 'restore-version']));
    expect(recorded.every((r) => r.store_check.ok && !r.store_check.overridden)).toBe(true);
    // Rollback without --purge writes no object, and finalize only reads: neither probes the store.
    const before = (await everyKey()).length;
    const noProbe = await cli(['rollback', '--yes', '--app', app, '--json'], envFor('bare'));
    expect(noProbe.code, noProbe.stderr).toBe(0);
    expect((await everyKey()).length).toBe(before);
    expect(await probesLeft()).toEqual([]);
  }, 120_000);

  it('--allow-unconditional-store runs anyway, says so, and records the override', async () => {
    const app = await insertApp(env.db, 'override');
    await insertFile(env.db, app, 'src/a.ts', text(3_000, 'override '));
    const run = await cli(['migrate', '--yes', '--app', app, '--allow-unconditional-store'], envFor('bare'));
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/Running anyway \(--allow-unconditional-store\)/);
    const [row] = await query<{ store_check: { ok: boolean; overridden: boolean } }>(env.db, "SELECT store_check FROM overskill_storage_runs WHERE command = 'migrate' ORDER BY id DESC LIMIT 1");
    expect(row.store_check).toMatchObject({ ok: false, overridden: true });
    expect(await probesLeft()).toEqual([]);
  });

  it('probes are never listed by verify --orphans or cleanup, and --quarantine refuses their prefix', async () => {
    // A probe a killed run never deleted: still never an orphan of the app's layout.
    await env.store.client.send(new PutObjectCommand({ Bucket: env.s3.bucket, Key: `${PROBE_PREFIX}left-by-a-killed-run/conditions`, Body: 'probe' }));
    expect(await probesLeft()).toHaveLength(1);
    const verify = await cli(['verify', '--orphans', '--json'], envFor('emulated'));
    expect(verify.json().orphans.map((o: { key: string }) => o.key).filter((key: string) => key.startsWith('_overskill-storage'))).toEqual([]);
    const cleanup = await cli(['cleanup', '--grace', '0s', '--dry-run', '--json'], envFor('emulated'));
    expect(JSON.stringify(cleanup.json())).not.toMatch(/_overskill-storage/);
    const quarantine = await cli(['cleanup', '--quarantine', '_overskill-storage/q', '--yes'], envFor('emulated'));
    expect(quarantine.code).toBe(2);
    expect(quarantine.stderr).toMatch(/reserved for the store probes/);
  });
});
