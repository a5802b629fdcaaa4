import { spawn, spawnSync } from 'node:child_process';
import type { DatabaseContext } from '../context.ts';
import type { Db } from '../db.ts';
import { query } from '../db.ts';
import { ConfigError, errorMessage } from '../errors.ts';
import type { Reporter } from '../reporter.ts';
import type { StoredTable } from '../tables.ts';
import { reclaimableSpace, tableDiskSizes } from '../sql/table-sizes.ts';
import { openTransactions, type OpenTransaction } from '../sql/open-transactions.ts';
import { assertSchemaReady } from './schema.ts';

/**
 * Phase 3's last step: giving the space finalize freed back to the operating system, with the app live.
 * pg_repack rebuilds each table into a new file while the app reads and writes it (an ACCESS EXCLUSIVE lock
 * only for a moment at the start and the end, never killing the app's sessions), then swaps the files.
 * Without pg_repack the tool refuses; it never falls back to a blocking rewrite unless asked by name
 * (`--offline`: VACUUM FULL, under a lock timeout).
 */
export interface ReclaimOptions {
  tables: StoredTable[];
  /** VACUUM FULL instead of pg_repack: the table is locked (ACCESS EXCLUSIVE) for the whole rewrite. */
  offline: boolean;
  /** --offline: give up on a table whose lock is not had within this. */
  lockTimeoutMs: number;
  /** pg_repack: how long it waits for its short locks before it gives up on a table (it never kills the app's sessions). */
  waitTimeoutS: number;
  /** pg_repack on a managed database (no superuser): its own flag for that. */
  noSuperuserCheck: boolean;
  /** The pg_repack client to run (default: `pg_repack` on the PATH). */
  client?: string;
  /** How long to wait first for the transactions open when reclaim begins to end (see waitForOlderTransactions). */
  transactionWaitMs?: number;
  signal?: AbortSignal;
}

export interface RepackTool {
  usable: boolean;
  clientVersion?: string;
  extensionVersion?: string;
  /** Why it is not usable, with how to make it so. */
  problem?: string;
}

export interface ReclaimPlanTable {
  table: string;
  totalBytes: number;
  /** What the rewrite should give back (heap and TOAST beyond the live rows), and what should be left. */
  returnableBytes: number;
  expectedAfterBytes: number;
  method: 'pgstattuple' | 'estimate';
}

export interface ReclaimPlan {
  mode: 'pg_repack' | 'offline';
  tables: ReclaimPlanTable[];
  /** The rewrite builds a new copy of each table (and its indexes) before dropping the old: that much free disk, for the largest table. */
  freeDiskNeededBytes: number;
  /** The locks the rewrite takes, and how long it waits for them. */
  locks: { mode: 'offline'; lockTimeoutMs: number } | { mode: 'pg_repack'; waitTimeoutS: number };
  tool: RepackTool;
  notes: ReclaimNote[];
  /** Transactions open now, anywhere in the cluster: what was deleted after they began cannot be given back until they end. */
  openTransactions: OpenTransaction[];
}

/** What a reclaim plan must also make known (worded by commands/support/render/plan-notes.ts). */
export type ReclaimNote =
  | { note: 'vacuum-is-safe' }
  | { note: 'offline-blocks-the-app' }
  | { note: 'repack-never-kills' }
  | { note: 'no-superuser-check' }
  | { note: 'waits-for-open-transactions'; waitSeconds: number; open: number };

export interface ReclaimTableResult {
  table: string;
  beforeBytes: number;
  afterBytes: number;
  ok: boolean;
  error?: string;
  ms: number;
}

export interface ReclaimResult {
  mode: 'pg_repack' | 'offline';
  tables: ReclaimTableResult[];
  beforeBytes: number;
  afterBytes: number;
  interrupted: boolean;
  /** Transactions open since before the rewrite that had not ended when it began: they kept rows it could not drop. */
  heldBack: OpenTransaction[];
}

/** The pg_repack client's version (`pg_repack 1.4.8`), or undefined when there is none. */
function clientVersion(client: string): string | undefined {
  const probe = spawnSync(client, ['--version'], { encoding: 'utf8' });
  if (probe.status !== 0) return undefined;
  return /pg_repack\s+([0-9][^\s]*)/.exec(probe.stdout)?.[1];
}

/** Whether pg_repack can run here: the extension in this database, the client on the PATH, the same version of both. */
export async function repackTool(db: Db, client = 'pg_repack'): Promise<RepackTool> {
  const [row] = await query<{ installed: string | null; available: string | null }>(
    db,
    `SELECT (SELECT extversion FROM pg_extension WHERE extname = 'pg_repack') AS installed,
            (SELECT default_version FROM pg_available_extensions WHERE name = 'pg_repack') AS available`,
  );
  const client_ = clientVersion(client);
  const install = 'Debian and Ubuntu: apt-get install postgresql-$VERSION-repack (the extension and its client); managed databases: the provider\'s extension list';
  if (!row.installed) {
    return {
      usable: false,
      clientVersion: client_,
      problem: row.available
        ? `the pg_repack extension is not created in this database: run CREATE EXTENSION pg_repack; as a superuser (or the provider's admin role)`
        : `the pg_repack extension is not installed on the database server (${install})`,
    };
  }
  if (!client_) return { usable: false, extensionVersion: row.installed, problem: `the pg_repack client is not on the PATH (${install}; it must be version ${row.installed}, as the extension is)` };
  if (client_ !== row.installed) {
    return {
      usable: false,
      clientVersion: client_,
      extensionVersion: row.installed,
      problem: `the pg_repack client is ${client_} and the extension in the database is ${row.installed}: pg_repack runs only when they are the same (install the client of version ${row.installed}, or ALTER EXTENSION pg_repack UPDATE)`,
    };
  }
  return { usable: true, clientVersion: client_, extensionVersion: row.installed };
}

export async function planReclaim(db: Db, options: ReclaimOptions): Promise<ReclaimPlan> {
  await assertSchemaReady(db);
  const sizes = await tableDiskSizes(db, options.tables);
  const spare = await reclaimableSpace(db, options.tables);
  const tables = sizes.map((size) => {
    const found = spare.find((s) => s.table === size.table);
    const returnable = found?.returnableBytes ?? 0;
    return { table: size.table, totalBytes: size.totalBytes, returnableBytes: returnable, expectedAfterBytes: Math.max(0, size.totalBytes - returnable), method: found?.method ?? 'estimate' };
  });
  const tool = options.offline ? { usable: true } : await repackTool(db, options.client);
  const notes: ReclaimNote[] = [{ note: 'vacuum-is-safe' }, { note: options.offline ? 'offline-blocks-the-app' : 'repack-never-kills' }];
  if (!options.offline && options.noSuperuserCheck) notes.push({ note: 'no-superuser-check' });
  const open = await openTransactions(db);
  if (open.length) notes.push({ note: 'waits-for-open-transactions', waitSeconds: Math.round((options.transactionWaitMs ?? DEFAULT_TRANSACTION_WAIT_MS) / 1000), open: open.length });
  return {
    mode: options.offline ? 'offline' : 'pg_repack',
    tables,
    freeDiskNeededBytes: Math.max(0, ...tables.map((t) => t.expectedAfterBytes)),
    locks: options.offline ? { mode: 'offline', lockTimeoutMs: options.lockTimeoutMs } : { mode: 'pg_repack', waitTimeoutS: options.waitTimeoutS },
    tool,
    notes,
    openTransactions: open,
  };
}

/** Runs one table's pg_repack as a child process; its password goes by the environment, never the command line. */
function runRepack(databaseUrl: string, table: string, options: ReclaimOptions): Promise<void> {
  const url = new URL(databaseUrl);
  const args = [
    '--no-kill-backend',
    `--wait-timeout=${options.waitTimeoutS}`,
    `--table=${table}`,
    `--host=${url.hostname}`,
    `--port=${url.port || '5432'}`,
    `--username=${decodeURIComponent(url.username)}`,
    `--dbname=${decodeURIComponent(url.pathname.slice(1))}`,
    ...(options.noSuperuserCheck ? ['--no-superuser-check'] : []),
  ];
  const env = { ...process.env, PGPASSWORD: decodeURIComponent(url.password), PGSSLMODE: url.searchParams.get('sslmode') ?? process.env.PGSSLMODE ?? 'prefer' };
  return new Promise((resolve, reject) => {
    const child = spawn(options.client ?? 'pg_repack', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const stop = () => child.kill('SIGINT');
    options.signal?.addEventListener('abort', stop, { once: true });
    child.on('error', reject);
    child.on('exit', (code) => {
      options.signal?.removeEventListener('abort', stop);
      // pg_repack says "WARNING: timed out, do not cancel conflicting backends" and skips the table, exit 0.
      if (code === 0 && !/timed out|skipping/i.test(output)) resolve();
      else reject(new Error(`pg_repack on ${table} ${code === 0 ? 'skipped it' : `exited ${code}`}: ${output.trim().split('\n').slice(-3).join(' ')}`));
    });
  });
}

/**
 * VACUUM FULL on a session of its own (VACUUM runs outside any transaction), whose lock_timeout is SET before it:
 * not a startup option, which a pooler refuses. The role's statement_timeout does not cut the rewrite.
 */
async function vacuumFull(context: DatabaseContext, table: string, lockTimeoutMs: number): Promise<void> {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: context.databaseUrl, application_name: 'overskill-storage reclaim' });
  await client.connect();
  try {
    await client.query("SELECT set_config('lock_timeout', $1, false), set_config('statement_timeout', '0', false), set_config('idle_in_transaction_session_timeout', '0', false)", [String(Math.max(1, Math.round(lockTimeoutMs)))]);
    await client.query(`VACUUM (FULL, ANALYZE) ${table}`);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export const DEFAULT_TRANSACTION_WAIT_MS = 60_000;

/**
 * Waits, up to `waitMs`, until every transaction open now has ended (a session that began a new one since
 * does not count: its snapshot already sees the deletes). A rewrite started while one of them is open copies
 * every row that transaction can still see, so the space finalize freed would stay on disk; returns those
 * still open when the wait ran out, so the result can name them.
 */
async function waitForOlderTransactions(db: Db, waitMs: number, signal: AbortSignal | undefined, reporter: Reporter): Promise<OpenTransaction[]> {
  const sameTransaction = (a: OpenTransaction, b: OpenTransaction) => a.pid === b.pid && a.started === b.started;
  let older = await openTransactions(db);
  if (!older.length) return [];
  const deadline = Date.now() + waitMs;
  const stage = 'waiting for the transactions open since before reclaim to end';
  reporter.stage?.(stage, { items: older.length });
  while (older.length && Date.now() < deadline && !signal?.aborted) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    const now = await openTransactions(db);
    older = older.filter((transaction) => now.some((current) => sameTransaction(current, transaction)));
  }
  reporter.stageDone?.(stage);
  return older;
}

/** Rewrites each table, one at a time, measuring it before and after. Refuses (exit 2) when pg_repack is not usable. */
export async function reclaim(context: DatabaseContext, options: ReclaimOptions, reporter: Reporter = {}): Promise<ReclaimResult> {
  await assertSchemaReady(context.db);
  if (!options.offline) {
    const tool = await repackTool(context.db, options.client);
    if (!tool.usable) throw new ConfigError(`reclaim needs pg_repack, and ${tool.problem}. Nothing was rewritten. (--offline rewrites with VACUUM FULL instead, locking each table for the whole rewrite.)`);
  }
  const heldBack = await waitForOlderTransactions(context.db, options.transactionWaitMs ?? DEFAULT_TRANSACTION_WAIT_MS, options.signal, reporter);
  const result: ReclaimResult = { mode: options.offline ? 'offline' : 'pg_repack', tables: [], beforeBytes: 0, afterBytes: 0, interrupted: false, heldBack };
  for (const table of options.tables) {
    if (options.signal?.aborted) {
      result.interrupted = true;
      break;
    }
    const stage = `reclaim ${table.table}`;
    const [before] = await tableDiskSizes(context.db, [table]);
    reporter.stage?.(stage, { items: 1, bytes: before.totalBytes, unit: 'table' });
    const started = Date.now();
    let error: string | undefined;
    try {
      if (options.offline) await vacuumFull(context, table.table, options.lockTimeoutMs);
      else await runRepack(context.databaseUrl, table.table, options);
    } catch (failure) {
      error = /lock timeout/i.test(errorMessage(failure)) ? `could not get the lock on ${table.table} within ${options.lockTimeoutMs} ms; nothing was rewritten` : errorMessage(failure);
    }
    const [after] = await tableDiskSizes(context.db, [table]);
    result.tables.push({ table: table.table, beforeBytes: before.totalBytes, afterBytes: after.totalBytes, ok: !error, error, ms: Date.now() - started });
    result.beforeBytes += before.totalBytes;
    result.afterBytes += after.totalBytes;
    reporter.advance?.(1, before.totalBytes);
    reporter.stageDone?.(stage);
  }
  return result;
}
