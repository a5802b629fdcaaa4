import type { DatabaseContext } from '../context.ts';
import { Limiter } from '../pool.ts';
import { startWorkerSession } from '../workers.ts';
import { openRun, runTablesPresent, type RunRecordSpec } from './open-run.ts';
import { RunWorker } from './run-worker.ts';
import type { RunItem } from '../sql/run-items.ts';
import type { RunState } from './states.ts';

/** What a one-shot write reports to its run record when it ends. */
export interface RecordedOutcome {
  rows: number;
  bytes: number;
  items: RunItem[];
  /** Problems that name no row (objects cleanup left or could not delete). */
  unlogged?: { failed: number; refused: number };
  interrupted?: boolean;
}

/**
 * Records a write that is not a row walk (cleanup, restore-version, schema --apply): a run with one worker,
 * its heartbeat while it works, and its counts and failed items at the end. Such runs cannot be paused or
 * cancelled from another terminal (Ctrl-C in their own terminal stops them). Without the run tables (a
 * database before `schema --apply`), the work runs unrecorded.
 */
export async function withRecordedRun<T>(
  context: DatabaseContext,
  spec: RunRecordSpec,
  body: () => Promise<T>,
  outcomeOf: (result: T) => RecordedOutcome,
): Promise<{ result: T; run?: { id: string; joined: boolean; state?: RunState } }> {
  if (!(await runTablesPresent(context.db))) return { result: await body() };
  const session = await startWorkerSession(context.db, context.databaseUrl);
  try {
    const opened = await openRun(context.db, { ...spec, pausable: false }, { worker: session.id });
    const recorder = new RunWorker(context.db, opened.runId, session.id, { limiter: new Limiter(1), setRate: () => undefined, cancel: () => undefined }, 1, undefined);
    recorder.start();
    let result: T;
    try {
      result = await body();
    } catch (error) {
      await recorder.finish('failed', error).catch(() => undefined);
      throw error;
    }
    const outcome = outcomeOf(result);
    await recorder.afterBatch({ flipped: outcome.rows, bytes: outcome.bytes, items: outcome.items, unlogged: outcome.unlogged });
    const state = await recorder.finish(outcome.interrupted ? 'interrupted' : 'done').catch(() => undefined);
    return { result, run: { id: opened.runId, joined: opened.joined, state } };
  } finally {
    await session.close().catch(() => undefined);
  }
}
