import type { StorageContext } from '../context.ts';
import type { TableRunResult } from './batch-runner.ts';
import type { CommonRunOptions } from './options.ts';
import { Limiter } from '../pool.ts';
import { RateLimiter } from '../pacing.ts';
import { startWorkerSession } from '../workers.ts';
import { assertSchemaReady, ensureStatistics } from './schema.ts';
import { dropStaleClaims } from '../sql/claim-batch.ts';
import type { Reporter } from '../reporter.ts';

export interface WorkerRun {
  workerId: string;
  options: CommonRunOptions;
  shared: { limiter: Limiter; rate?: RateLimiter };
  budget: { remaining: number };
}

export interface WorkerRunOutcome {
  tables: TableRunResult[];
  /** The operator asked to stop (Ctrl-C, SIGTERM). */
  interrupted: boolean;
  /** The worker's database session died: the run stopped so no claim is used after it lapsed. */
  sessionLost?: string;
}

/**
 * The frame every row-walking write shares: schema check, a worker session (whose loss stops the run),
 * one concurrency limiter and rate limit for the whole run, a --limit budget across tables, and one
 * `perTable` call per chosen table.
 */
export async function withWorker(
  context: StorageContext,
  options: CommonRunOptions,
  reporter: Reporter,
  stage: string,
  perTable: (run: WorkerRun, table: CommonRunOptions['tables'][number]) => Promise<TableRunResult>,
): Promise<WorkerRunOutcome> {
  await assertSchemaReady(context.db);
  await ensureStatistics(context.db, options.tables);
  await dropStaleClaims(context.db);
  const stop = new AbortController();
  const forward = () => stop.abort();
  options.signal?.addEventListener('abort', forward, { once: true });
  if (options.signal?.aborted) stop.abort();
  let sessionLost: string | undefined;
  const session = await startWorkerSession(context.databaseUrl, (error) => {
    sessionLost = `the database session holding this run's claims was lost (${error.message}); stopped so no row is worked on twice`;
    reporter.log?.('warn', sessionLost);
    stop.abort();
  });
  const run: WorkerRun = {
    workerId: session.id,
    options: { ...options, signal: stop.signal },
    shared: { limiter: new Limiter(options.concurrency), rate: options.maxRate ? new RateLimiter(options.maxRate) : undefined },
    budget: { remaining: options.limit ?? Number.POSITIVE_INFINITY },
  };
  const tables: TableRunResult[] = [];
  try {
    for (const table of options.tables) {
      if (stop.signal.aborted || run.budget.remaining <= 0) break;
      reporter.stage?.(`${stage} ${table.name}`);
      tables.push(await perTable(run, table));
      reporter.stageDone?.(`${stage} ${table.name}`);
    }
  } finally {
    options.signal?.removeEventListener('abort', forward);
    await session.close().catch(() => undefined);
  }
  return { tables, interrupted: (options.signal?.aborted ?? false) && !sessionLost, sessionLost };
}

export function countProblems(outcome: WorkerRunOutcome, extra = 0): number {
  return outcome.tables.reduce((sum, t) => sum + t.failed.length + t.skipped.length, 0) + extra + (outcome.sessionLost ? 1 : 0);
}

/** Rows flipped and their bytes, over every table of a run. */
export function runTotals(outcome: WorkerRunOutcome): { rows: number; bytes: number } {
  return {
    rows: outcome.tables.reduce((sum, t) => sum + t.flipped, 0),
    bytes: outcome.tables.reduce((sum, t) => sum + t.bytes, 0),
  };
}
