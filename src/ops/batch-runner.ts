import type { Db } from '../db.ts';
import type { StoredTable } from '../tables.ts';
import { claimBatch, releaseClaims, SIZE_BANDS, type ClaimedRow, type Cursor } from '../sql/claim-batch.ts';
import type { RowMove } from '../sql/row-moves.ts';
import type { WorkerRun } from './options.ts';
import { waitForDbLoad } from '../db-load.ts';
import { connectionLost, errorMessage } from '../errors.ts';
import type { RunItem } from '../sql/run-items.ts';

/** The error class of an item that made no progress within the bound its requests allow. */
export const STALLED = 'stalled';

export type ItemOutcome<Done> =
  | { kind: 'done'; value: Done; bytes: number }
  | { kind: 'failed'; reason: string; key?: string; errorClass?: string }
  | { kind: 'skipped'; reason: string; errorClass?: string }
  /** Not done because the run is stopping: the claim is released, the row is left for the next run. */
  | { kind: 'abandoned' };

export interface ItemProblem {
  table: string;
  id: string;
  appId: string;
  path: string | null;
  key?: string;
  reason: string;
  /** The kind of error (its class name), kept with the item in the run's log. */
  errorClass?: string;
}

export interface TableRunResult {
  table: string;
  attempted: number;
  flipped: number;
  bytes: number;
  /** What the flipped rows' contents took in the database when claimed (pg_column_size: as TOAST keeps them, compressed or not). */
  storedBytes: number;
  /** Rows the app changed between our read and our flip: left for the next run, not overwritten. */
  changedMeanwhile: ItemProblem[];
  /** Rows claimed but not worked on because the run was asked to stop: left for the next run. */
  abandoned: number;
  failed: ItemProblem[];
  skipped: ItemProblem[];
}

/** One table walked by one move: the move says which rows and how they flip; `work` does each row's part. */
export interface TableWalk<Done> {
  table: StoredTable;
  move: RowMove<Done>;
  /** The per-row work (uploads, downloads); runs under the concurrency limit. */
  work(row: ClaimedRow): Promise<ItemOutcome<Done>>;
  /**
   * After a batch's flip committed, with the ids it flipped (rollback --purge deletes their objects then). It
   * records its own failures and does not throw: the rows are flipped whatever it meets.
   */
  afterFlip?(done: Done[], flipped: string[]): Promise<void>;
}

const MAX_PASSES = 3;
const BATCHES_IN_FLIGHT = 2;

/**
 * Walks one table in claimed batches: claim (one statement) → per-row work under a shared concurrency
 * limit → flip (one statement). Two batches are in flight so the upload pool never drains while a batch
 * is claimed or flipped. A second and third pass pick up rows that were locked by the app the first time.
 * Stops claiming when the signal aborts; batches in flight finish and flip.
 */
export async function runBatches<Done>(db: Db, run: WorkerRun, walkOf: TableWalk<Done>): Promise<TableRunResult> {
  const { table, move } = walkOf;
  const { workerId: worker, options, budget, reporter, shared } = run;
  const result: TableRunResult = { table: table.name, attempted: 0, flipped: 0, bytes: 0, storedBytes: 0, changedMeanwhile: [], abandoned: 0, failed: [], skipped: [] };
  const activity = options.activity;
  const exclude = new Set<string>();
  const problem = (row: ClaimedRow, reason: string, key?: string, errorClass?: string): ItemProblem => ({
    table: table.name,
    id: row.id,
    appId: row.app_id,
    path: row.path,
    key: key ?? row.key ?? undefined,
    reason,
    errorClass,
  });
  const logged = (item: ItemProblem, outcome: RunItem['outcome']): RunItem => ({
    table: table.table,
    rowId: item.id,
    appId: item.appId,
    path: item.path,
    key: item.key ?? null,
    outcome,
    errorClass: item.errorClass ?? (outcome === 'refused' ? 'Refused' : 'Error'),
    message: item.reason,
  });

  /** The database connection was lost under a flip: the walk ends with it (see processBatch). */
  let lost: unknown;
  const processBatch = async (rows: ClaimedRow[]) => {
    const batchStarted = performance.now();
    const claimedIds = rows.map((row) => row.id);
    const before = { failed: result.failed.length, skipped: result.skipped.length, abandoned: result.abandoned, changed: result.changedMeanwhile.length };
    const outcomes = await Promise.all(
      rows.map((row) =>
        shared.limiter.run(async (): Promise<ItemOutcome<Done>> => {
          // A stop asked for while the item waited for its turn: it is not started.
          if (options.signal?.aborted) return { kind: 'abandoned' };
          await shared.rate?.take();
          if (options.signal?.aborted) return { kind: 'abandoned' };
          activity?.itemStarted();
          try {
            const outcome = await withinBound(walkOf.work(row), activity?.itemBoundMs(row.bytes));
            reporter.worked?.(1, row.bytes ?? 0);
            return outcome;
          } catch (error) {
            // A request cut short by the stop is not a failure of the item: the next run does it.
            if (options.signal?.aborted) return { kind: 'abandoned' };
            return { kind: 'failed', reason: errorMessage(error), errorClass: error instanceof Error ? error.name : undefined };
          } finally {
            activity?.itemEnded();
          }
        }),
      ),
    );
    const done: Done[] = [];
    const doneRows = new Map<string, { row: ClaimedRow; bytes: number }>();
    const items: RunItem[] = [];
    let flippedHere = 0;
    let bytesHere = 0;
    outcomes.forEach((outcome, index) => {
      const row = rows[index];
      if (outcome.kind === 'done') {
        done.push(outcome.value);
        doneRows.set(row.id, { row, bytes: outcome.bytes });
      } else if (outcome.kind === 'abandoned') {
        result.abandoned++;
      } else {
        exclude.add(row.id);
        const item = problem(row, outcome.reason, outcome.kind === 'failed' ? outcome.key : undefined, outcome.errorClass);
        (outcome.kind === 'failed' ? result.failed : result.skipped).push(item);
        items.push(logged(item, outcome.kind === 'failed' ? 'failed' : 'refused'));
        reporter.advance?.(1, row.bytes ?? 0);
      }
    });
    const told = () => {
      for (const item of items) {
        reporter.event?.({ type: item.outcome === 'failed' ? 'item.failed' : 'item.refused', table: item.table, rowId: item.rowId, appId: item.appId, path: item.path, key: item.key, errorClass: item.errorClass, message: item.message });
      }
      reporter.event?.({
        type: 'batch.done',
        table: table.table,
        claimed: rows.length,
        flipped: flippedHere,
        bytes: bytesHere,
        failed: result.failed.length - before.failed,
        refused: result.skipped.length - before.skipped,
        abandoned: result.abandoned - before.abandoned,
        changedMeanwhile: result.changedMeanwhile.length - before.changed,
        ms: Math.round(performance.now() - batchStarted),
      });
      return options.observer?.afterBatch({ flipped: flippedHere, bytes: bytesHere, items });
    };
    if (options.claimsHeld && !options.claimsHeld()) {
      // The rows may be another worker's by now: they are left as they are (the objects written are named by
      // key, so the next run finds them) and the claims are left to lapse.
      result.abandoned += doneRows.size;
      for (const { row } of doneRows.values()) reporter.advance?.(1, row.bytes ?? 0);
      await told();
      return;
    }
    let flipped: string[];
    try {
      flipped = await move.flip(db, table, worker, done, claimedIds);
    } catch (error) {
      if (connectionLost(error)) {
        // Not the items' failure: the database went away (a restart, a failover). The flip either committed
        // or did not, so nothing is half-done; the walk stops and the whole command fails in one sentence.
        lost ??= error;
        result.abandoned += doneRows.size;
        for (const { row } of doneRows.values()) reporter.advance?.(1, row.bytes ?? 0);
        await told();
        return;
      }
      await releaseClaims(db, table, worker, claimedIds).catch(() => undefined);
      for (const { row } of doneRows.values()) {
        exclude.add(row.id);
        const item = problem(row, `database update failed: ${errorMessage(error)}`, undefined, error instanceof Error ? error.name : undefined);
        result.failed.push(item);
        items.push(logged(item, 'failed'));
        reporter.advance?.(1, row.bytes ?? 0);
      }
      await told();
      return;
    }
    // Outside the flip's error handling: the flip has committed, so nothing after it may call its rows failed.
    if (walkOf.afterFlip && flipped.length) await walkOf.afterFlip(done, flipped);
    const flippedSet = new Set(flipped);
    for (const [id, { row, bytes }] of doneRows) {
      if (flippedSet.has(id)) {
        result.flipped++;
        result.bytes += bytes;
        result.storedBytes += row.stored_bytes ?? 0;
        flippedHere++;
        bytesHere += bytes;
      } else {
        exclude.add(id);
        result.changedMeanwhile.push(problem(row, 'the row changed while it was being processed; left as it is for the next run'));
      }
      reporter.advance?.(1, row.bytes ?? 0);
    }
    await told();
  };

  /** One keyset walk by id (within a size band for --largest-first), repeated for rows locked the first time. */
  const walk = async (band: (typeof SIZE_BANDS)[number] | undefined): Promise<void> => {
    for (let pass = 1; pass <= MAX_PASSES; pass++) {
      let cursor: Cursor | undefined;
      let claimedThisPass = 0;
      const inFlight = new Set<Promise<void>>();
      try {
        while (!options.signal?.aborted && budget.remaining > 0 && !lost) {
          while (inFlight.size >= BATCHES_IN_FLIGHT) await Promise.race(inFlight);
          if (options.signal?.aborted || lost) break;
          await options.observer?.beforeClaim(async () => {
            await Promise.all(inFlight);
          });
          if (options.signal?.aborted) break;
          await waitForDbLoad(db, options.dbLoad, reporter, options.signal, (reason) => {
            options.observer?.waiting(reason);
            reporter.event?.({ type: 'wait', reason: reason ?? null });
          });
          if (options.signal?.aborted) break;
          const batch = await claimBatch(db, {
            table,
            worker,
            eligible: (params) => move.takes(table, params),
            filter: options.filter,
            band,
            cursor,
            excludeIds: [...exclude],
            maxRows: Math.min(options.batchSize, budget.remaining),
            inlineMaxBytes: options.inlineMaxBytes,
            maxBatchBytes: options.batchBytes,
            withContent: move.reads.content,
            withDbHash: move.reads.dbHash,
          });
          if (batch.rows.length === 0) break;
          cursor = batch.cursor;
          const won = batch.rows.filter((row) => row.won);
          if (won.length === 0) continue;
          claimedThisPass += won.length;
          budget.remaining -= won.length;
          result.attempted += won.length;
          const job: Promise<void> = processBatch(won).finally(() => inFlight.delete(job));
          inFlight.add(job);
        }
      } finally {
        await Promise.all(inFlight);
      }
      if (lost) throw lost;
      if (claimedThisPass === 0 || options.signal?.aborted || budget.remaining <= 0) break;
    }
  };

  for (const band of options.order === 'size-desc' ? SIZE_BANDS : [undefined]) {
    if (options.signal?.aborted || budget.remaining <= 0) break;
    await walk(band);
  }
  return result;
}

/** The item's own work, or a `stalled` failure once it has run past `boundMs` (its late result is ignored). */
async function withinBound<Done>(work: Promise<ItemOutcome<Done>>, boundMs: number | undefined): Promise<ItemOutcome<Done>> {
  if (boundMs === undefined) return work;
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<ItemOutcome<Done>>((resolve) => {
    timer = setTimeout(
      () => resolve({ kind: 'failed', errorClass: STALLED, reason: `no progress within ${Math.round(boundMs / 1000)}s, the longest its requests can take (--request-timeout × --max-attempts, with backoff, per request); its claim is released and a rerun tries it again` }),
      boundMs,
    );
  });
  // The abandoned work may still fail later: that must not surface as an unhandled rejection.
  work.catch(() => undefined);
  try {
    return await Promise.race([work, stalled]);
  } finally {
    clearTimeout(timer);
  }
}

/** Two walks of one table (e.g. new rows, then stale ones) reported as one. */
export function mergeRuns(first: TableRunResult, second: TableRunResult): TableRunResult {
  return {
    table: first.table,
    attempted: first.attempted + second.attempted,
    flipped: first.flipped + second.flipped,
    bytes: first.bytes + second.bytes,
    storedBytes: first.storedBytes + second.storedBytes,
    changedMeanwhile: [...first.changedMeanwhile, ...second.changedMeanwhile],
    abandoned: first.abandoned + second.abandoned,
    failed: [...first.failed, ...second.failed],
    skipped: [...first.skipped, ...second.skipped],
  };
}
