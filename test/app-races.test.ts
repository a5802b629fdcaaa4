import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli, spawnCli } from './support/cli.ts';
import { insertApp, insertFile, objectText, text } from './support/seed.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { R2Emulation } from '../src/local/r2-emulation.ts';
import { checkConsistency, hybridRowsWithStaleObjects } from './support/consistency.ts';
import { mulberry32 } from '../src/local/dataset.ts';
import { query } from '../src/db.ts';
import { sha256Hex } from '../src/hashing.ts';

/**
 * Invariant 3 against the plan's own Phase 1 model code (test/support/plan-writer.ts): the app uploads new
 * contents to the same keys this tool uses, then saves the row, while migrate, migrate --refresh-stale,
 * rollback --purge and cleanup --grace 0s run. The tool's requests go through a proxy that delays each one by
 * 60-260 ms, so its uploads of older contents really do arrive after the app's; the app's requests go straight
 * through. Both proxies share one R2 emulation (conditional writes, one write per key per second). After each
 * race, every row the app wrote must yield the app's last content, from the database or from its object.
 * RACE_SEED replays a race; RESILIENCE=long (npm run test:resilience) runs more and longer races.
 */
const LONG = process.env.RESILIENCE === 'long';
// RACE_ROUNDS and RACE_SECONDS override both (the stall soak: `RACE_ROUNDS=50 RACE_SECONDS=4 npm run test:resilience -- -t 'purge|cleanup'`).
const ROUNDS = Number(process.env.RACE_ROUNDS ?? (LONG ? 5 : 1));
const SECONDS = Number(process.env.RACE_SECONDS ?? (LONG ? 12 : 4));
const FILES_PER_APP = 60;
/** Per race test: a few rounds of writer time plus the tool runs, with room for a loaded CI machine. */
const RACE_TIMEOUT = Math.max(LONG ? 1_200_000 : 300_000, ROUNDS * (SECONDS + 60) * 1000);

interface WriterReport {
  writes: number;
  database: number;
  hybrid: number;
  r2: number;
  legacy: number;
  failedUploads: number;
  last: Record<string, string>;
  history: Record<string, string[]>;
}

describe.skipIf(ON_PGLITE)('the app writing through the plan\'s Phase 1 model while the tool runs', () => {
  let env: TestEnv;
  let r2: R2Emulation;
  let toolProxy: S3Proxy;
  let appProxy: S3Proxy;
  let cliEnv: NodeJS.ProcessEnv;
  const tally: string[] = [];

  beforeAll(async () => {
    env = await createTestEnv();
    r2 = new R2Emulation(env.s3.barePort);
    r2.writeIntervalMs = 1000;
    toolProxy = await new S3Proxy(env.s3.barePort, env.s3.bucket, r2).start();
    toolProxy.lane = 'tool';
    toolProxy.latencyMs = 60;
    toolProxy.jitterMs = 200;
    appProxy = await new S3Proxy(env.s3.barePort, env.s3.bucket, r2).start();
    appProxy.lane = 'app';
    // The app writes throughout: each flipping run waits a second for its saves in flight, then repairs what they stranded.
    cliEnv = { ...env.cliEnv, R2_ENDPOINT: toolProxy.endpoint, OVERSKILL_STORAGE_SETTLE: '1s' };
  });
  afterAll(async () => {
    // eslint-disable-next-line no-console
    if (tally.length) console.log(`app races:\n${tally.join('\n')}\n  longest tool run: ${(longestToolRunMs / 1000).toFixed(1)} s`);
    await toolProxy?.stop();
    await appProxy?.stop();
    await env?.close();
  });

  /** The longest single tool run so far: a stall would show here long before the test's own timeout. */
  let longestToolRunMs = 0;
  const tool = async (args: string[]) => {
    const pace = args[0] === 'cleanup' ? ['--concurrency', '8'] : ['--concurrency', '8', '--batch-size', '8'];
    const started = Date.now();
    const run = await cli([...args, '--json', ...pace, '--request-timeout', '5s'], cliEnv);
    longestToolRunMs = Math.max(longestToolRunMs, Date.now() - started);
    expect([0, 1], `${args.join(' ')}: ${run.stderr}`).toContain(run.code);
    return run;
  };

  async function seedApps(seed: number): Promise<string[]> {
    const random = mulberry32(seed);
    const apps = [await insertApp(env.db, `race-${seed}-a`), await insertApp(env.db, `race-${seed}-b`)];
    for (const app of apps) {
      for (let i = 0; i < FILES_PER_APP; i++) {
        await insertFile(env.db, app, `${i % 7 === 0 ? '/' : ''}src/part ${i}.tsx`, text(1100 + Math.floor(random() * 28_000), `${app}:${i}:seed `));
      }
    }
    return apps;
  }

  /** Runs the writer for SECONDS while `cycle` runs over and over; returns what the writer wrote. */
  async function race(label: string, apps: string[], seed: number, cycle: string[][], legacy = 0.2, runOne: (args: string[]) => Promise<unknown> = tool): Promise<WriterReport> {
    const writerConfig = {
      databaseUrl: env.databaseUrl,
      endpoint: appProxy.endpoint,
      bucket: env.s3.bucket,
      accessKeyId: env.s3.accessKeyId,
      secretAccessKey: env.s3.secretAccessKey,
      appIds: apps,
      seconds: SECONDS,
      seed,
      legacy,
      loops: 4,
      pauseMs: 4,
    };
    const writer = spawn(process.execPath, ['--import', 'tsx', 'test/support/plan-writer.ts', JSON.stringify(writerConfig)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    writer.stdout.on('data', (chunk) => (out += chunk));
    let finished = false;
    const done = new Promise<void>((resolve) => writer.on('exit', () => resolve()));
    void done.then(() => (finished = true));
    let runs = 0;
    while (!finished) await runOne([...cycle[runs++ % cycle.length], ...apps.flatMap((app) => ['--app', app])]);
    await done;
    const report = JSON.parse(out.trim()) as WriterReport;
    tally.push(
      `  ${label} (seed ${seed}): ${report.writes} app writes (${report.database} database, ${report.hybrid} hybrid, ${report.r2} r2, ${report.legacy} pre-plan), ${runs} tool runs, 412s so far ${r2.stats.preconditionFailed}, 429s so far ${r2.stats.throttled}`,
    );
    return report;
  }

  /** Every row the app wrote yields the app's last content; no hybrid or r2 row names a missing or different object. */
  async function expectNothingLost(report: WriterReport): Promise<void> {
    expect(report.writes).toBeGreaterThan(20);
    const lost: string[] = [];
    const rows = await query<{ id: string; location: string; key: string | null; content: string | null }>(
      env.db,
      'SELECT id, storage_location AS location, r2_object_key AS key, content FROM app_files WHERE id = ANY($1::bigint[])',
      [Object.keys(report.last)],
    );
    for (const row of rows) {
      const readable = row.content ?? (row.key ? await objectText(env.store, row.key).catch(() => '<missing object>') : '<nothing>');
      if (sha256Hex(readable) !== report.last[row.id]) lost.push(`app_files #${row.id} (${row.location}, ${row.key})`);
    }
    const stale = await hybridRowsWithStaleObjects(env);
    if (lost.length || stale.length) {
      // Tell what happened to each such row: the app's last writes and every write to its key.
      const ids = [...lost, ...stale].map((label) => /#([0-9]+)/.exec(label)![1]);
      for (const id of ids) {
        const [row] = await query<{ key: string | null }>(env.db, 'SELECT r2_object_key AS key FROM app_files WHERE id = $1', [id]);
        // eslint-disable-next-line no-console
        console.log(`row ${id}: app ${JSON.stringify(report.history[id] ?? [])}\n  key ${row?.key}: ${JSON.stringify(r2.journal.filter((entry) => entry.key === row?.key).slice(-12))}`);
      }
    }
    expect(lost, `rows whose last write by the app was lost (of ${rows.length})`).toEqual([]);
    expect(stale, 'hybrid rows whose object holds other bytes than their content').toEqual([]);
    await checkConsistency(env, { leftoverKeys: true });
  }

  const seeds = () => {
    const base = Number(process.env.RACE_SEED ?? Math.floor(Math.random() * 1_000_000));
    return Array.from({ length: ROUNDS }, (_, round) => base + round);
  };

  it('migrate (and the rollbacks that give it work again) racing the app', async () => {
    for (const seed of seeds()) {
      const apps = await seedApps(seed);
      await expectNothingLost(await race('migrate', apps, seed, [['migrate', '--yes'], ['rollback', '--yes']]));
    }
  }, RACE_TIMEOUT);

  it('migrate --refresh-stale racing the app', async () => {
    for (const seed of seeds()) {
      const apps = await seedApps(seed);
      await tool(['migrate', '--yes', ...apps.flatMap((app) => ['--app', app])]);
      // pre-plan code rewrote half the contents in the database only: their objects are stale
      await query(env.db, "UPDATE app_files SET content = content || ' (edited by old code)' WHERE app_id = ANY($1::bigint[]) AND id % 2 = 0 AND storage_location = 'hybrid'", [apps]);
      await expectNothingLost(await race('migrate --refresh-stale', apps, seed, [['migrate', '--refresh-stale', '--yes']], 0.4));
    }
  }, RACE_TIMEOUT);

  it('rollback --purge racing the app', async () => {
    for (const seed of seeds()) {
      const apps = await seedApps(seed);
      for (const args of [['migrate', '--yes'], ['finalize', '--yes']]) await tool([...args, ...apps.flatMap((app) => ['--app', app])]);
      await expectNothingLost(await race('rollback --purge', apps, seed, [['rollback', '--purge', '--yes'], ['migrate', '--yes'], ['finalize', '--yes']]));
    }
  }, RACE_TIMEOUT);

  it('migrate killed at random moments while the app writes, then rerun', async () => {
    for (const seed of seeds()) {
      const apps = await seedApps(seed);
      const random = mulberry32(seed);
      let kills = 0;
      // each run of the real executable is SIGKILLed after 0.2-1.5 s (or finishes first); the next one resumes
      const killedRun = (args: string[]) =>
        new Promise<void>((resolve) => {
          const child = spawnCli([...args, '--json', '--concurrency', '8', '--batch-size', '8', '--request-timeout', '5s'], cliEnv);
          child.stdout.resume();
          child.stderr.resume();
          const timer = setTimeout(() => {
            kills++;
            child.kill('SIGKILL');
          }, 200 + random() * 1300);
          child.on('exit', () => {
            clearTimeout(timer);
            resolve();
          });
        });
      const report = await race('migrate, SIGKILLed', apps, seed, [['migrate', '--yes'], ['rollback', '--yes']], 0.2, killedRun);
      tally.push(`    (${kills} of those runs were SIGKILLed)`);
      await tool(['migrate', '--yes', ...apps.flatMap((app) => ['--app', app])]);
      await expectNothingLost(report);
    }
  }, RACE_TIMEOUT);

  it('cleanup --grace 0s racing the app', async () => {
    for (const seed of seeds()) {
      const apps = await seedApps(seed);
      // rolled back without --purge: every row's object is an orphan of ours at the very key the app writes to
      for (const args of [['migrate', '--yes'], ['rollback', '--yes']]) await tool([...args, ...apps.flatMap((app) => ['--app', app])]);
      await expectNothingLost(await race('cleanup --grace 0s', apps, seed, [['cleanup', '--grace', '0s', '--yes'], ['migrate', '--yes'], ['rollback', '--yes']]));
    }
  }, RACE_TIMEOUT);

  // Last: it switches this database to the content-addressed layout (non-unique key indexes).
  it('the content-addressed layout: migrate, finalize, rollback --purge and cleanup racing the app', async () => {
    expect((await cli(['schema', '--apply', '--yes', '--key-layout', 'content-addressed'], cliEnv)).code).toBe(0);
    for (const seed of seeds()) {
      const apps = await seedApps(seed);
      const cycle = [['migrate', '--yes', '--key-layout', 'content-addressed'], ['finalize', '--yes'], ['rollback', '--purge', '--yes'], ['migrate', '--yes', '--key-layout', 'content-addressed'], ['rollback', '--yes'], ['cleanup', '--grace', '0s', '--yes']];
      await expectNothingLost(await race('content-addressed cycle', apps, seed, cycle));
    }
  }, RACE_TIMEOUT);
});
