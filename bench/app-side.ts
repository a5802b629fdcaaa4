/**
 * The app's side of Phase 3: a writer doing the app's saves (an UPDATE of one file's content and hash, or an
 * INSERT of a new file, one at a time, as a Rails request does) runs alone, then during `finalize`, then
 * during `reclaim` (pg_repack). Each phase gives the saves' p50, p99 and worst latency, and the longest lock
 * wait seen: a second session samples pg_stat_activity every 10 ms for the writer waiting on a lock.
 */
import { spawn } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { scratchDatabase, settle, startBenchStore } from './fixture.ts';
import { UNCONDITIONAL } from './options.ts';
import { cliEnvFor, timeNode } from './processes.ts';
import { seedFiles } from './seed.ts';

export interface SavePhase {
  phase: string;
  saves: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The longest a save was seen waiting on a lock (sampled every 10 ms; 0: never seen waiting). */
  longestLockWaitMs: number;
  seconds: number;
}

export interface AppSideResult {
  phases: SavePhase[];
  /** Why reclaim was not measured, when it was not (no pg_repack here). */
  reclaimSkipped?: string;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

function quantile(sorted: number[], q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : 0;
}

/** Saves until `until` resolves; returns the phase's figures. */
async function writeDuring(url: string, phase: string, until: Promise<unknown>): Promise<SavePhase> {
  const writer = new pg.Client({ connectionString: url });
  const watcher = new pg.Client({ connectionString: url });
  await writer.connect();
  await watcher.connect();
  const pid = (await writer.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
  const app = (await writer.query('SELECT min(app_id) AS id FROM app_files')).rows[0].id as string;
  const ids = (await writer.query('SELECT id FROM app_files ORDER BY id')).rows.map((row) => row.id as string);
  let done = false;
  void until.finally(() => (done = true));
  const times: number[] = [];
  let errors = 0;
  let longestLockWaitMs = 0;
  const sampling = (async () => {
    while (!done) {
      const row = (await watcher.query("SELECT extract(epoch FROM now() - query_start) * 1000 AS ms FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", [pid])).rows[0];
      if (row) longestLockWaitMs = Math.max(longestLockWaitMs, Number(row.ms));
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  const started = performance.now();
  for (let i = 0; !done; i++) {
    const content = `// saved by the app, ${phase} ${i}\n${randomBytes(600).toString('base64')}`;
    const begun = performance.now();
    try {
      if (i % 4 === 3) {
        await writer.query('INSERT INTO app_files (app_id, path, content, size_bytes, content_hash) VALUES ($1, $2, $3, octet_length($3), $4)', [app, `src/app-side/${phase}-${i}-${randomBytes(3).toString('hex')}.ts`, content, sha256(content)]);
      } else {
        const id = ids[Math.floor(Math.random() * ids.length)];
        await writer.query("UPDATE app_files SET content = $2, size_bytes = octet_length($2), content_hash = $3, storage_location = 'database', updated_at = now() WHERE id = $1", [id, content, sha256(content)]);
      }
      times.push(performance.now() - begun);
    } catch {
      errors++;
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const seconds = (performance.now() - started) / 1000;
  await sampling;
  await writer.end();
  await watcher.end();
  times.sort((a, b) => a - b);
  const round = (ms: number) => Math.round(ms * 10) / 10;
  return { phase, saves: times.length, errors, p50Ms: round(quantile(times, 0.5)), p99Ms: round(quantile(times, 0.99)), maxMs: round(times[times.length - 1] ?? 0), longestLockWaitMs: round(longestLockWaitMs), seconds: round(seconds) };
}

function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/overskill-storage.js', ...args], { env, stdio: ['ignore', 'ignore', 'ignore'] });
    child.on('exit', (code) => resolve(code ?? -1));
  });
}

/** The writer alone, during finalize (and the hybrid band), and during reclaim, on a database already migrated. */
export async function measureAppSide(url: string, cliEnv: NodeJS.ProcessEnv, idleSeconds = 5): Promise<AppSideResult> {
  const phases: SavePhase[] = [];
  phases.push(await writeDuring(url, 'idle', new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000))));
  const finalized = runCli(['finalize', '--yes', '--hybrid-band', '--allow-unconditional-store'], cliEnv);
  phases.push(await writeDuring(url, 'finalize --hybrid-band', finalized));
  if ((await finalized) !== 0) throw new Error('finalize failed during the app-side bench');
  if (spawnSync('pg_repack', ['--version']).status !== 0) return { phases, reclaimSkipped: 'pg_repack is not on the PATH' };
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query('CREATE EXTENSION IF NOT EXISTS pg_repack');
  await admin.end();
  const reclaimed = runCli(['reclaim', '--yes'], cliEnv);
  phases.push(await writeDuring(url, 'reclaim (pg_repack)', reclaimed));
  if ((await reclaimed) !== 0) throw new Error('reclaim failed during the app-side bench');
  return { phases };
}

export function describeAppSide(result: AppSideResult): string[] {
  return [
    "the app's saves (one UPDATE or INSERT at a time, 5 ms apart) alone and while the tool works:",
    ...result.phases.map((p) => `  ${p.phase.padEnd(24)} ${String(p.saves).padStart(5)} saves in ${p.seconds.toFixed(1)} s, ${p.errors} errors: p50 ${p.p50Ms} ms, p99 ${p.p99Ms} ms, worst ${p.maxMs} ms; longest lock wait seen ${p.longestLockWaitMs} ms`),
    ...(result.reclaimSkipped ? [`  reclaim not measured: ${result.reclaimSkipped}`] : []),
  ];
}

/**
 * The app's saves alone, during finalize --hybrid-band and during reclaim, on a database and store of their
 * own: 6,000 files around 8 KB, migrated first.
 */
export async function appSideBench(): Promise<AppSideResult> {
  const scratch = await scratchDatabase();
  const s3 = await startBenchStore('app-side');
  try {
    await seedFiles(scratch.db, { count: 6000, meanBytes: 8000, largePercent: 0 });
    await settle(scratch.db);
    const cliEnv = cliEnvFor(scratch.url, s3);
    const migrated = await timeNode(['bin/overskill-storage.js', 'migrate', '--yes', ...UNCONDITIONAL, '--json', '--concurrency', '16'], cliEnv);
    if (migrated.code !== 0) throw new Error('migrate failed before the app-side bench');
    await settle(scratch.db);
    const result = await measureAppSide(scratch.url, cliEnv);
    for (const line of describeAppSide(result)) console.log(line);
    return result;
  } finally {
    await scratch.drop();
    await s3.stop();
  }
}
