import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { databaseFingerprint, insertApp, insertFile, text } from './support/seed.ts';
import { query } from '../src/db.ts';
import { FILES } from '../src/tables.ts';
import { tableDiskSizes } from '../src/sql/table-sizes.ts';

/** Whether this machine has pg_repack (Debian: postgresql-15-repack); CI installs it and sets REQUIRE_PG_REPACK=1. */
const PG_REPACK = (() => {
  const available = spawnSync('pg_repack', ['--version']).status === 0;
  if (!available && process.env.REQUIRE_PG_REPACK === '1') throw new Error('REQUIRE_PG_REPACK=1 but pg_repack is not on the PATH');
  if (!available) process.stderr.write('\npg_repack (Debian: postgresql-15-repack) is not here; the reclaim tests that run it do not run.\n\n');
  return available;
})();

/**
 * `reclaim`: the space finalize freed goes back to the operating system with the app live (pg_repack), planned
 * first; refused without pg_repack or with a client of another version than the extension; VACUUM FULL only
 * when asked (--offline), under its lock timeout.
 */
describe.skipIf(ON_PGLITE)('reclaim', () => {
  let env: TestEnv;
  let appId: string;
  const run = (args: string[], extra: NodeJS.ProcessEnv = {}) => cli([...args, '--json'], { ...env.cliEnv, ...extra });

  beforeAll(async () => {
    env = await createTestEnv();
    appId = await insertApp(env.db, 'reclaim');
    for (let i = 0; i < 300; i++) await insertFile(env.db, appId, `src/r${i}.ts`, text(12_000 + i, `reclaim ${i} `));
    expect((await run(['migrate', '--yes'])).code).toBe(0);
    expect((await run(['finalize', '--yes'])).code).toBe(0);
  }, 120_000);
  afterAll(async () => env?.close());

  it('refuses without the pg_repack extension (exit 2), naming it and how to add it; --dry-run says so and changes nothing', async () => {
    const before = await databaseFingerprint(env.db);
    const sizes = await tableDiskSizes(env.db, [FILES]);
    const planned = await run(['reclaim', '--dry-run']);
    expect(planned.code).toBe(0);
    expect(planned.json().plan.tool).toMatchObject({ usable: false });
    expect(planned.json().plan.tables.map((t: { table: string }) => t.table)).toEqual(['files', 'snapshots', 'version-files']);
    expect(planned.json().plan.freeDiskNeededBytes).toBeGreaterThan(0);
    const refused = await run(['reclaim', '--yes']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/pg_repack extension is not (created in|installed on)/);
    expect(await databaseFingerprint(env.db)).toBe(before);
    expect(await tableDiskSizes(env.db, [FILES])).toEqual(sizes);
  });

  it.skipIf(!PG_REPACK)('refuses a client whose version is not the extension\'s (exit 2), naming both', async () => {
    await query(env.db, 'CREATE EXTENSION IF NOT EXISTS pg_repack');
    const dir = mkdtempSync(join(tmpdir(), 'oss-fake-repack-'));
    try {
      const fake = join(dir, 'pg_repack');
      writeFileSync(fake, '#!/bin/sh\necho "pg_repack 1.4.7"\n');
      chmodSync(fake, 0o755);
      const refused = await run(['reclaim', '--yes'], { OVERSKILL_STORAGE_PG_REPACK: fake });
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/client is 1\.4\.7 and the extension in the database is 1\.4\.\d+/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!PG_REPACK)('with pg_repack, a concurrent writer loses nothing and sees no error, and app_files shrinks', async () => {
    await query(env.db, 'CREATE EXTENSION IF NOT EXISTS pg_repack');
    const before = (await tableDiskSizes(env.db, [FILES]))[0].totalBytes;
    const writer = new pg.Client({ connectionString: env.databaseUrl });
    await writer.connect();
    const written = new Map<string, string>();
    const saves: number[] = [];
    const errors: string[] = [];
    let stop = false;
    const writing = (async () => {
      for (let i = 0; !stop; i++) {
        const started = performance.now();
        try {
          // New files only at first: a reclaim that waits out other sessions' transactions (other test files')
          // must not watch the table outgrow what it gives back.
          if (i % 2 === 0 && written.size < 40) {
            const content = `new file ${i}`;
            const { rows } = await writer.query('INSERT INTO app_files (app_id, path, content, size_bytes) VALUES ($1, $2, $3, octet_length($3)) RETURNING id', [appId, `src/new-${i}.ts`, content]);
            written.set(String(rows[0].id), content);
          } else {
            const id = [...written.keys()][Math.floor(i / 2) % written.size];
            const content = `edited ${i}`;
            await writer.query('UPDATE app_files SET content = $2, size_bytes = octet_length($2) WHERE id = $1', [id, content]);
            written.set(id, content);
          }
        } catch (error) {
          errors.push((error as Error).message);
        }
        saves.push(performance.now() - started);
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    })();
    const reclaimed = await run(['reclaim', '--yes', '--tables', 'files']);
    stop = true;
    await writing;
    await writer.end();
    expect(reclaimed.code, reclaimed.stderr).toBe(0);
    expect(errors).toEqual([]);
    expect(saves.length).toBeGreaterThan(20);
    const result = reclaimed.json().result;
    expect(result.tables[0]).toMatchObject({ table: 'app_files', ok: true });
    expect(result.afterBytes).toBeLessThan(before);
    expect((await tableDiskSizes(env.db, [FILES]))[0].totalBytes).toBeLessThan(before);
    const rows = await query<{ id: string; content: string }>(env.db, 'SELECT id::text, content FROM app_files WHERE id = ANY($1::bigint[])', [[...written.keys()]]);
    expect(new Map(rows.map((row) => [row.id, row.content]))).toEqual(written);
    expect((await run(['verify'])).code).toBe(0);
  }, 120_000);

  it('--offline runs VACUUM FULL only under its lock timeout: a table another session holds is given up, named, and left as it was', async () => {
    const holder = new pg.Client({ connectionString: env.databaseUrl });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT count(*) FROM app_files');
      const started = Date.now();
      const held = await run(['reclaim', '--offline', '--tables', 'files', '--lock-timeout', '1s', '--wait-for-transactions', '2s', '--yes']);
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(held.code).toBe(1);
      expect(held.json().result.tables[0]).toMatchObject({ table: 'app_files', ok: false });
      expect(held.json().result.tables[0].error).toMatch(/could not get the lock on app_files within 1000 ms/);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    const free = await run(['reclaim', '--offline', '--tables', 'files', '--yes']);
    expect(free.code).toBe(0);
    expect((await run(['verify'])).code).toBe(0);
  });

  it('waits for transactions open since before it began, in any database of the cluster, and names one that outlasts the wait', async () => {
    // A transaction with an id, in another database: ids are cluster-wide, so rows deleted here after it began
    // stay on disk through VACUUM FULL (and pg_repack) until it ends.
    const otherDatabase = `oss_reclaim_other_${Math.random().toString(36).slice(2, 8)}`;
    await query(env.db, `CREATE DATABASE ${otherDatabase}`);
    const other = new pg.Client({ connectionString: env.databaseUrl.replace(/\/[^/]+$/, `/${otherDatabase}`) });
    await other.connect();
    try {
      await other.query('BEGIN');
      const [{ pid }] = (await other.query('SELECT pg_backend_pid() AS pid, txid_current()')).rows;
      const dead = await insertApp(env.db, 'deleted later');
      // Random hex, which TOAST cannot squeeze to nothing: about 2 MB on disk once stored.
      await query(env.db, `INSERT INTO app_files (app_id, path, content, size_bytes)
                           SELECT $1::bigint, 'src/d' || i || '.ts', c, octet_length(c)
                             FROM generate_series(1, 200) i, LATERAL (SELECT string_agg(md5(random()::text || i || j), '') AS c FROM generate_series(1, 625) j) r`, [dead]);
      await query(env.db, 'DELETE FROM app_files WHERE app_id = $1', [dead]);

      const planned = await run(['reclaim', '--offline', '--tables', 'files', '--dry-run']);
      expect(planned.json().plan.openTransactions).toEqual(expect.arrayContaining([expect.objectContaining({ pid, database: otherDatabase })]));
      // Another tenant's session on a shared server is counted; -v names it.
      const counted = await cli(['reclaim', '--offline', '--tables', 'files', '--dry-run'], env.cliEnv);
      expect(counted.stdout).toMatch(/[0-9]+ open transactions? of other databases or roles, the oldest open for .*-v names them/);
      expect(counted.stdout).not.toContain(otherDatabase);
      const said = await cli(['reclaim', '--offline', '--tables', 'files', '--dry-run', '-v'], env.cliEnv);
      expect(said.stdout).toMatch(new RegExp(`Open transaction: pid ${pid} \\(database "${otherDatabase}"`));

      const before = (await tableDiskSizes(env.db, [FILES]))[0].totalBytes;
      const outlasted = await cli(['reclaim', '--offline', '--tables', 'files', '--wait-for-transactions', '1s', '--yes', '-v'], env.cliEnv);
      expect(outlasted.code, outlasted.stderr).toBe(0);
      expect(outlasted.stdout).toMatch(new RegExp(`Still open when the rewrite began: pid ${pid} \\(database "${otherDatabase}".*run reclaim again once it has ended`));
      const kept = (await tableDiskSizes(env.db, [FILES]))[0].totalBytes;
      expect(kept, 'the deleted rows are still on disk').toBeGreaterThan(before * 0.8);

      // The same transaction ends while reclaim waits for it: then every deleted row goes.
      setTimeout(() => void other.query('COMMIT'), 1500);
      const started = Date.now();
      const waited = await run(['reclaim', '--offline', '--tables', 'files', '--yes']);
      expect(waited.code, waited.stderr).toBe(0);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1500);
      expect(waited.json().result.heldBack.filter((t: { pid: number }) => t.pid === pid)).toEqual([]);
      const after = (await tableDiskSizes(env.db, [FILES]))[0].totalBytes;
      expect(after, 'the deleted rows (about 2 MB on disk) are gone').toBeLessThan(kept - 1_500_000);
      expect((await run(['verify'])).code).toBe(0);
    } finally {
      await other.end().catch(() => undefined);
      await query(env.db, `DROP DATABASE IF EXISTS ${otherDatabase} WITH (FORCE)`);
    }
  });
});
