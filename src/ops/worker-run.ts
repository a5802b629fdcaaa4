import { setTimeout as sleep } from 'node:timers/promises';
import type { StorageContext } from '../context.ts';
import type { TableRunResult } from './batch-runner.ts';
import type { CommonRunOptions, WorkerRun } from './options.ts';
import { Limiter } from '../pool.ts';
import { RateLimiter } from '../pacing.ts';
import { expireLeasesOfDeadLocalWorkers, LEASE_SILENT_MS, startWorkerSession } from '../workers.ts';
import { assertSchemaReady, ensureStatistics } from './schema.ts';
import { claimsOfOtherWorkers, dropStaleClaims } from '../sql/claim-batch.ts';
import { dropExpiredLeases } from '../sql/worker-leases.ts';
import { mergeRuns } from './batch-runner.ts';
import { tagged, type Reporter } from '../reporter.ts';
import { openRun, type RunRecordSpec } from '../runs/open-run.ts';
import { RunWorker } from '../runs/run-worker.ts';
import type { RunState } from '../runs/states.ts';
import { LARGE_ITEM_CONCURRENCY } from './options.ts';
import { repairStrandedWrites } from './repair-stranded.ts';
import { WorkerActivity } from '../runs/activity.ts';
import { assertDbLoadProbe } from '../db-load.ts';
import type { TransportStats } from '../store/transport.ts';
import { describePace, type PaceSnapshot } from '../store/bucket-pace.ts';


export interface WorkerRunOutcome {
  tables: TableRunResult[];
  /** The operator asked to stop (Ctrl-C, SIGTERM). */
  interrupted: boolean;
  /** The run was cancelled from another terminal (`cancel`): why, and by whom. */
  cancelled?: string;
  /** The worker's database session died: the run stopped so no claim is used after it lapsed. */
  sessionLost?: string;
  /** The recorded run this process worked for, and the state it was in when this process left it. */
  run?: { id: string; joined: boolean; state?: RunState };
  /** App writes a save from an earlier load had left where no reader looks, put back before the walk (repair-stranded.ts). */
  repairedAppWrites: number;
  /** The HTTP pool over the run: requests, queue wait for a socket, deadlines hit, latency. */
  transport?: TransportStats;
  /** The pace the bucket's budget held the run to, and the share of requests it refused. */
  pace?: PaceSnapshot;
}

/**
 * The frame every row-walking write shares: schema check, a worker session (whose loss stops the run),
 * one concurrency limiter and rate limit for the whole run, a --limit budget across tables, and one
 * `perTable` call per chosen table. Before a table is walked, the app writes stranded in it by a stale
 * partial save are put back, so the walk meets every row as the app left it.
 */
export async function withWorker(
  context: StorageContext,
  options: CommonRunOptions,
  reporter: Reporter,
  stage: string,
  perTable: (run: WorkerRun, table: CommonRunOptions['tables'][number]) => Promise<TableRunResult>,
): Promise<WorkerRunOutcome> {
  if (!options.prepared) await assertSchemaReady(context.db);
  await ensureStatistics(context.db, options.tables);
  await expireLeasesOfDeadLocalWorkers(context.db);
  await dropStaleClaims(context.db);
  await dropExpiredLeases(context.db);
  // A probe that cannot say how loaded the database is must not let the run go unthrottled.
  if (!options.prepared) await assertDbLoadProbe(context.db, options.dbLoad);
  const stop = new AbortController();
  const forward = () => stop.abort();
  options.signal?.addEventListener('abort', forward, { once: true });
  if (options.signal?.aborted) stop.abort();
  let sessionLost: string | undefined;
  const session = await startWorkerSession(context.db, context.databaseUrl, (error) => {
    sessionLost = `this worker's lease on its claimed rows was lost: ${error.message}; it stopped, so no row is worked on twice`;
    reporter.log?.('warn', sessionLost);
    stop.abort();
  });
  let opened: WorkerRunOutcome['run'];
  // Every event of this worker names its run and its worker (log pipelines, metrics).
  reporter = tagged(reporter, () => ({ runId: opened?.id, worker: session.id }));
  const limiter = new Limiter(options.concurrency);
  const rate = new RateLimiter(options.maxRate);
  rate.onWait = (reason) => reporter.event?.({ type: 'wait', reason: reason ?? null });
  const { store } = context;
  const activity = new WorkerActivity(store.requestBoundMs, store.partSize);
  const unlisten = store.onLatency(() => activity.moved());
  const run: WorkerRun = {
    workerId: session.id,
    options: { ...options, signal: stop.signal, activity, claimsHeld: () => session.holds() },
    shared: { limiter, rate },
    budget: { remaining: options.limit ?? Number.POSITIVE_INFINITY },
    reporter,
  };
  let recorder: RunWorker | undefined;
  const tables: TableRunResult[] = [];
  const paceTold = tellPace(store, reporter);
  const large = new Limiter(Math.min(LARGE_ITEM_CONCURRENCY, options.concurrency));
  let repairedAppWrites = 0;
  let failure: unknown;
  try {
    if (options.record) {
      const record = await openRun(context.db, options.record, { worker: session.id, concurrency: options.concurrency, maxRate: options.maxRate });
      opened = { id: record.runId, joined: record.joined };
      recorder = new RunWorker(context.db, record.runId, session.id, {
          limiter,
          setRate: (perSecond) => rate.setRate(perSecond),
          cancel: () => stop.abort(),
          // A pause, resume or cancel from another terminal is told where this run is watched.
          onState: (state, reason) => reporter.event?.({ type: 'run.state', state, reason }),
        }, options.concurrency, options.maxRate, () => ({ activity: activity.snapshot(), transport: store.transportStats(), pace: store.paceSnapshot() }),
      );
      rate.onWait = (reason) => {
        recorder!.waiting(reason);
        reporter.event?.({ type: 'wait', reason: reason ?? null });
      };
      run.options.observer = recorder;
      recorder.start();
      // A run joined while paused (or already re-paced) must hold this worker before its first claim.
      await recorder.beat();
      reporter.event?.({ type: 'run.started', command: options.record.command, joined: record.joined, concurrency: options.concurrency });
      reporter.log?.('info', record.joined ? `joined run ${record.runId} (another process started it)` : `run ${record.runId} recorded; see it from another terminal with \`overskill-storage status\``);
    }
    for (const table of options.tables) {
      if (stop.signal.aborted || run.budget.remaining <= 0) break;
      const repair = await repairStrandedWrites(context, run, table, large, { log: reporter.log, event: reporter.event });
      if (stop.signal.aborted) break;
      reporter.stage?.(`${stage} ${table.name}`);
      const walked = await perTable(run, table);
      if (repair) {
        repairedAppWrites += repair.flipped;
        walked.failed.unshift(...repair.failed);
        walked.skipped.unshift(...repair.skipped);
      }
      tables.push(walked);
      reporter.stageDone?.(`${stage} ${table.name}`);
    }
    await takeOverSilentClaims(context, run, session.id, stop.signal, tables, perTable);
    // A save the app computed from a row it loaded before one of our flips lands after it, and can leave its
    // write where no reader looks. Once such saves have had time to land, the tables are looked at again.
    if (tables.some((walked) => walked.flipped > 0) && !stop.signal.aborted) {
      if (options.settleMs) {
        reporter.log?.('info', `waiting ${Math.round(options.settleMs / 100) / 10} s for the app's saves in flight to land, then checking the rows once more (--settle)`);
        await sleep(options.settleMs, undefined, { signal: stop.signal }).catch(() => undefined);
      }
      for (const walked of tables) {
        const table = options.tables.find((candidate) => candidate.name === walked.table);
        if (stop.signal.aborted || !table) break;
        const repair = await repairStrandedWrites(context, run, table, large, { log: reporter.log, event: reporter.event });
        if (!repair) continue;
        repairedAppWrites += repair.flipped;
        walked.failed.push(...repair.failed);
        walked.skipped.push(...repair.skipped);
      }
    }
  } catch (error) {
    failure = error;
    throw error;
  } finally {
    if (paceTold) clearInterval(paceTold);
    unlisten?.();
    options.signal?.removeEventListener('abort', forward);
    if (recorder && opened) {
      const end = failure !== undefined || sessionLost ? 'failed' : recorder.cancelledBy ? 'cancelled' : options.signal?.aborted ? 'interrupted' : 'done';
      opened.state = await recorder.finish(end, failure ?? sessionLost).catch(() => undefined);
      const failedItems = tables.reduce((sum, t) => sum + t.failed.length, 0);
      const refusedItems = tables.reduce((sum, t) => sum + t.skipped.length, 0);
      reporter.event?.({ type: 'run.ended', state: end, rows: tables.reduce((sum, t) => sum + t.flipped, 0), bytes: tables.reduce((sum, t) => sum + t.bytes, 0), failed: failedItems, refused: refusedItems });
    }
    await session.close().catch(() => undefined);
  }
  const cancelled = recorder?.cancelledBy && !options.signal?.aborted ? recorder.cancelledBy : undefined;
  return { tables, interrupted: (options.signal?.aborted ?? false) && !sessionLost, cancelled, sessionLost, run: opened, repairedAppWrites, transport: store.transportStats(), pace: store.paceSnapshot() };
}

/**
 * Rows a killed worker claimed stay its own until its lease expires. A walk that ends while other workers'
 * claims are left looks whether those workers still renew their leases (waiting out one silence period if
 * none has fallen silent yet: a rerun right after a kill comes before its silence shows). The rows of a
 * silent worker are walked again once its lease has expired; a worker still renewing keeps its rows. So a
 * rerun leaves no row behind, and never takes a row from a live worker.
 */
async function takeOverSilentClaims(
  context: StorageContext,
  run: WorkerRun,
  worker: string,
  signal: AbortSignal,
  tables: TableRunResult[],
  perTable: (run: WorkerRun, table: CommonRunOptions['tables'][number]) => Promise<TableRunResult>,
): Promise<void> {
  const walked = run.options.tables.filter((table) => tables.some((done) => done.table === table.name));
  let lookedAgain = false;
  for (let round = 0; round < 4 && !signal.aborted && run.budget.remaining > 0; round++) {
    await expireLeasesOfDeadLocalWorkers(context.db);
    const others = await claimsOfOtherWorkers(context.db, walked.map((table) => table.table), worker, LEASE_SILENT_MS);
    if (!others.length) return;
    const silent = others.filter((entry) => entry.silent);
    if (!silent.length) {
      if (lookedAgain) return;
      lookedAgain = true;
      await sleep(LEASE_SILENT_MS + 500, undefined, { signal }).catch(() => undefined);
      continue;
    }
    const rows = silent.reduce((sum, entry) => sum + entry.rows, 0);
    const waitMs = Math.max(...silent.map((entry) => entry.expiresInMs)) + 250;
    run.reporter.log?.(
      'warn',
      `${rows} ${rows === 1 ? 'row is' : 'rows are'} claimed by a worker that stopped renewing its lease ${Math.max(...silent.map((entry) => entry.silentS))} s ago (killed, or cut off from the database); waiting ${Math.ceil(waitMs / 1000)} s for its lease to expire, then taking them`,
    );
    run.reporter.event?.({ type: 'wait', reason: "a silent worker's lease" });
    await sleep(waitMs, undefined, { signal }).catch(() => undefined);
    run.reporter.event?.({ type: 'wait', reason: null });
    for (const table of walked.filter((candidate) => silent.some((entry) => entry.table === candidate.table))) {
      const index = tables.findIndex((done) => done.table === table.name);
      if (signal.aborted || index < 0) return;
      tables[index] = mergeRuns(tables[index], await perTable(run, table));
    }
  }
}

const PACE_EVENT_EVERY_MS = 5000;

/** While the bucket throttles this process, an event every few seconds says the pace it keeps (logs, progress). */
function tellPace(store: StorageContext['store'], reporter: Reporter): NodeJS.Timeout {
  let told = 0;
  const timer = setInterval(() => {
    const pace = store.paceSnapshot();
    const throttled = pace.write.throttled + pace.read.throttled;
    if (throttled === told) return;
    told = throttled;
    reporter.event?.({ type: 'bucket.pace', limited: pace.write.bucketLimited || pace.read.bucketLimited, summary: describePace(pace) ?? '', write: pace.write, read: pace.read });
  }, PACE_EVENT_EVERY_MS);
  timer.unref();
  return timer;
}

export function countProblems(outcome: WorkerRunOutcome, extra = 0): number {
  return outcome.tables.reduce((sum, t) => sum + t.failed.length + t.skipped.length, 0) + extra + (outcome.sessionLost ? 1 : 0);
}

/** Rows flipped and their bytes, over every table of a run. */
export function runTotals(outcome: WorkerRunOutcome): { rows: number; bytes: number; storedBytes: number } {
  return {
    rows: outcome.tables.reduce((sum, t) => sum + t.flipped, 0),
    bytes: outcome.tables.reduce((sum, t) => sum + t.bytes, 0),
    storedBytes: outcome.tables.reduce((sum, t) => sum + t.storedBytes, 0),
  };
}
