/**
 * The app's side of Phase 3: a writer doing the app's saves (an UPDATE of one file's content and hash, or an
 * INSERT of a new file, one at a time, as a Rails request does) runs alone, then during `finalize`, then
 * during `reclaim` (pg_repack). Each phase gives the saves' p50, p99 and worst latency, and the longest lock
 * wait seen: a second session samples pg_stat_activity every 10 ms for the writer waiting on a lock.
 */
import { spawn } from 'node:child_process';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { scratchDatabase, settle, startBenchStore } from './fixture.ts';
import { cliEnvFor } from './processes.ts';
import { seedFiles, seedVersions } from './seed.ts';

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
  /** p99 over the writer's p99 alone. */
  p99Ratio?: number | null;
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

/** Where the tool's processes run: anywhere, or on the CPUs `taskset -c` names. */
let toolCpus: string | undefined;

function runCli(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve) => {
    const [file, argv] = toolCpus ? ['taskset', ['-c', toolCpus, process.execPath, 'bin/overskill-storage.js', ...args]] : [process.execPath, ['bin/overskill-storage.js', ...args]];
    const child = spawn(file, argv, { env, stdio: ['ignore', 'ignore', 'ignore'] });
    child.on('exit', (code) => resolve(code ?? -1));
  });
}

/**
 * The production layout on this one machine: PostgreSQL and the app (this process, the writer) on CPU 0, the
 * tool and the S3 server on the others, as the tool runs on a host of its own and R2 is not the database's
 * host. Every PostgreSQL process is pinned (backends started later inherit the postmaster's CPUs). Returns
 * the undo, or undefined where it cannot be done (one CPU, no taskset, no access to the server's processes).
 */
async function pinProductionLayout(url: string, s3Pid: number): Promise<(() => void) | undefined> {
  const count = cpus().length;
  if (count < 2 || spawnSync('taskset', ['-V']).status !== 0) return undefined;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  let postmaster: number;
  try {
    const dir = (await client.query("SELECT current_setting('data_directory') AS dir")).rows[0].dir as string;
    postmaster = Number(readFileSync(join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return undefined;
  } finally {
    await client.end();
  }
  const serverPids = () => [postmaster, ...spawnSync('ps', ['-o', 'pid=', '--ppid', String(postmaster)], { encoding: 'utf8' }).stdout.split(/\s+/).filter(Boolean).map(Number)];
  const all = `0-${count - 1}`;
  const others = `1-${count - 1}`;
  const pin = (pids: number[], cpuList: string) => pids.every((pid) => spawnSync('taskset', ['-a', '-pc', cpuList, String(pid)]).status === 0);
  if (!pin(serverPids(), '0') || !pin([process.pid], '0') || !pin([s3Pid], others)) {
    pin(serverPids(), all);
    pin([process.pid, s3Pid], all);
    return undefined;
  }
  toolCpus = others;
  return () => {
    toolCpus = undefined;
    pin(serverPids(), all);
    pin([process.pid, s3Pid], all);
  };
}

/** Each command the app lives with while it runs, at its default settings (the store's guard aside). */
const COMMANDS: { phase: string; args: string[] }[] = [
  { phase: 'migrate', args: ['migrate', '--yes', '--allow-unconditional-store'] },
  { phase: 'finalize', args: ['finalize', '--yes', '--allow-unconditional-store'] },
  { phase: 'finalize --hybrid-band', args: ['finalize', '--yes', '--hybrid-band', '--allow-unconditional-store'] },
  { phase: 'reclaim (pg_repack)', args: ['reclaim', '--yes'] },
  { phase: 'rollback', args: ['rollback', '--yes', '--allow-unconditional-store'] },
];

/**
 * The writer alone, then during each command in turn on a database not yet migrated: migrate, finalize (both
 * bands), reclaim and rollback. Each phase's p99 is also given as a ratio to the writer's p99 alone.
 */
export async function measureAppSide(url: string, cliEnv: NodeJS.ProcessEnv, idleSeconds = 5): Promise<AppSideResult> {
  const phases: SavePhase[] = [];
  phases.push(await writeDuring(url, 'idle', new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000))));
  let reclaimSkipped: string | undefined;
  for (const command of COMMANDS) {
    if (command.args[0] === 'reclaim') {
      if (spawnSync('pg_repack', ['--version']).status !== 0) {
        reclaimSkipped = 'pg_repack is not on the PATH';
        continue;
      }
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      await admin.query('CREATE EXTENSION IF NOT EXISTS pg_repack');
      await admin.end();
    }
    const ran = runCli(command.args, cliEnv);
    phases.push(await writeDuring(url, command.phase, ran));
    const code = await ran;
    if (code !== 0) throw new Error(`${command.args.join(' ')} exited ${code} during the app-side bench`);
  }
  const idle = phases[0].p99Ms;
  for (const phase of phases) phase.p99Ratio = idle > 0 ? Math.round((phase.p99Ms / idle) * 100) / 100 : null;
  return { phases, ...(reclaimSkipped ? { reclaimSkipped } : {}) };
}

export function describeAppSide(result: AppSideResult): string[] {
  return [
    "the app's saves (one UPDATE or INSERT at a time, 5 ms apart) alone and while the tool works (target: p99 at most 1.5x the app's own):",
    ...result.phases.map((p) => `  ${p.phase.padEnd(24)} ${String(p.saves).padStart(5)} saves in ${p.seconds.toFixed(1)} s, ${p.errors} errors: p50 ${p.p50Ms} ms, p99 ${p.p99Ms} ms (${p.p99Ratio ?? '-'}x), worst ${p.maxMs} ms; longest lock wait seen ${p.longestLockWaitMs} ms`),
    ...(result.reclaimSkipped ? [`  reclaim not measured: ${result.reclaimSkipped}`] : []),
  ];
}

/**
 * The app's saves alone and during each command, on a database and store of their own: 6,000 files shaped like
 * real apps' files, with their history (versions with full snapshots, version files), not yet migrated. Twice: every process sharing this machine's CPUs, and the production layout (the
 * database and the app on one CPU, the tool and the store on the others).
 */
export async function appSideBench(): Promise<{ shared: AppSideResult; layout?: AppSideResult; layoutSkipped?: string }> {
  const once = async (layout: boolean): Promise<AppSideResult | undefined> => {
    const scratch = await scratchDatabase();
    const s3 = await startBenchStore('app-side');
    let undo: (() => void) | undefined;
    try {
      await seedFiles(scratch.db, { count: 6000, largePercent: 0 });
      await seedVersions(scratch.db);
      await settle(scratch.db);
      if (layout) {
        undo = await pinProductionLayout(scratch.url, s3.pid);
        if (!undo) return undefined;
      }
      const result = await measureAppSide(scratch.url, cliEnvFor(scratch.url, s3));
      console.log(layout ? 'with the database and the app on CPU 0, the tool and the S3 server on the others:' : 'every process sharing the CPUs:');
      for (const line of describeAppSide(result)) console.log(line);
      return result;
    } finally {
      undo?.();
      await scratch.drop();
      await s3.stop();
    }
  };
  const shared = (await once(false))!;
  const layout = await once(true);
  return { shared, ...(layout ? { layout } : { layoutSkipped: 'fewer than two CPUs, no taskset, or the server\'s processes out of reach' }) };
}
