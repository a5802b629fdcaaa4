import type { StorageContext } from '../context.ts';
import { TABLES, type StoredTable } from '../tables.ts';
import type { PlacementPolicy } from '../placement.ts';
import type { Prices } from '../cost.ts';
import type { Reporter } from '../reporter.ts';
import type { RunRecordSpec } from '../runs/open-run.ts';
import type { RunState } from '../runs/states.ts';
import { withRecordedRun } from '../runs/recorded.ts';
import { verify, type VerifyProblem, type VerifyResult } from './verify.ts';
import { cleanup, type CleanupResult } from './cleanup.ts';
import { buildReport, historySnapshot } from './report.ts';
import { recordHistory, type HistorySnapshot } from '../sql/report-history.ts';
import { objectItem, type RunItem } from '../sql/run-items.ts';
import { withWorker } from './worker-run.ts';
import { settleDatabaseHashes } from '../sql/settle-database-hashes.ts';
import { defaultRunOptions } from './options.ts';
import type { ItemProblem } from './batch-runner.ts';
import { describeLifecycle, readLifecycle, TOOL_KEY_PREFIX, type LifecycleCheck } from '../store/lifecycle.ts';

export interface MaintainOptions {
  tables: StoredTable[];
  policy: PlacementPolicy;
  prices: Prices;
  /** Orphans younger than this are left alone (cleanup's grace period). */
  graceMs: number;
  quarantinePrefix?: string;
  /** Percent of the stored rows downloaded and hashed each run; the window moves by one each day. */
  deepSamplePercent: number;
  concurrency: number;
  /** Record the run, delete orphans and keep the day's report; without it (a dry run) nothing is written. */
  record?: RunRecordSpec;
  signal?: AbortSignal;
  now?: Date;
}

export interface MaintainResult {
  /** Every stored row against the listings (sizes, ETags, flags, database copies). */
  verify: VerifyResult;
  /** Today's window of the rotating deep sample: downloaded and hashed. */
  deepSample: VerifyResult & { percent: number; window: number; daysPerCycle: number };
  cleanup: CleanupResult;
  snapshot: HistorySnapshot;
  /** Every problem, one sentence each: what verify found, and what cleanup could not do. */
  problems: string[];
  interrupted: boolean;
  run?: { id: string; joined: boolean; state?: RunState };
  /** False in a dry run: nothing deleted, no run and no history recorded. */
  applied: boolean;
  /** The app's writes a stale save had left where no reader looks, put back first (repair-stranded.ts; not in a dry run). */
  repairedAppWrites: number;
  /** Database-only rows whose content_hash was recorded anew from their content (settle-database-hashes.ts; not in a dry run). */
  hashesSettled: number;
  /** The bucket's lifecycle rules as read tonight, judged against the tool's keys. */
  lifecycle: LifecycleCheck;
}

const DAY_MS = 86_400_000;

/** A row both checks found wrong is one item of the run (the listing's problem first). */
function oncePerRow(problems: VerifyProblem[]): VerifyProblem[] {
  const seen = new Set<string>();
  return problems.filter((p) => !seen.has(`${p.table}:${p.id}`) && Boolean(seen.add(`${p.table}:${p.id}`)));
}

const describe = (p: VerifyProblem) => `${p.table} #${p.id}${p.path ? ` (${p.path})` : ''}${p.key ? ` ${p.key}` : ''}: ${p.problem}`;

/**
 * The plan's nightly job (its R2CleanupJob), as one recorded run: verify every stored row by listings,
 * download and hash a rotating sample (so every object is hashed once per 100 / percent days), delete our
 * orphans past the grace period through the guarded deletes, and keep the day's report figures.
 */
export async function maintain(context: StorageContext, options: MaintainOptions, reporter: Reporter = {}): Promise<MaintainResult> {
  const now = options.now ?? new Date();
  const window = Math.floor(now.getTime() / DAY_MS);
  const body = async (): Promise<Omit<MaintainResult, 'run' | 'applied'>> => {
    const base = { tables: options.tables, filter: {}, orphans: false, concurrency: options.concurrency, signal: options.signal };
    const repaired = options.record ? await repairAppWrites(context, options, reporter) : { count: 0, failed: [] };
    let hashesSettled = 0;
    if (options.record) for (const table of options.tables) hashesSettled += await settleDatabaseHashes(context.db, table);
    const listed = await verify(context, { ...base, deep: false }, reporter);
    const deep = await verify(context, { ...base, deep: true, samplePercent: options.deepSamplePercent, sampleWindow: window }, reporter);
    const swept = await cleanup(context, { graceMs: options.graceMs, quarantinePrefix: options.quarantinePrefix, apply: options.record !== undefined, concurrency: options.concurrency, signal: options.signal, now }, reporter);
    const seen = new Set<string>();
    const problems: string[] = [];
    for (const problem of [...listed.problems, ...deep.problems]) {
      const line = describe(problem);
      if (!seen.has(line)) problems.push(line);
      seen.add(line);
    }
    for (const failure of swept.failed) problems.push(`orphan ${failure.key} could not be removed: ${failure.reason}`);
    for (const failure of repaired.failed) problems.push(`${failure.table} #${failure.id}: ${failure.reason}`);
    // Each night the bucket's lifecycle rules are read again: one added since would delete what finalize cleared.
    const lifecycle = await readLifecycle(context.store.client, context.store.bucket);
    if (lifecycle.expiring.length) problems.push(`bucket lifecycle: ${describeLifecycle(lifecycle)}; remove the rule or narrow its prefix away from ${TOOL_KEY_PREFIX} (finalize refuses while it stands)`);
    const report = await buildReport(context.db, options.tables, options.policy, options.prices, {});
    return {
      verify: listed,
      deepSample: { ...deep, percent: options.deepSamplePercent, window, daysPerCycle: Math.ceil(100 / options.deepSamplePercent) },
      cleanup: swept,
      snapshot: { ...historySnapshot(report, problems.length), reads: deep.reads },
      problems,
      interrupted: listed.interrupted || deep.interrupted || swept.interrupted,
      repairedAppWrites: repaired.count,
      hashesSettled,
      lifecycle,
    };
  };
  if (!options.record) return { ...(await body()), applied: false };
  const recorded = await withRecordedRun(context, options.record, body, (done) => ({
    rows: done.cleanup.deleted + done.cleanup.quarantined,
    bytes: 0,
    items: [
      ...oncePerRow([...done.verify.problems, ...done.deepSample.problems]).map(
        (p): RunItem => ({ table: TABLES[p.table].table, rowId: p.id, appId: p.appId, path: p.path, key: p.key, outcome: 'failed', errorClass: 'VerifyProblem', message: p.problem }),
      ),
      ...done.cleanup.failed.map((f) => objectItem(f.key, 'failed', f.reason)),
    ],
    interrupted: done.interrupted,
  }));
  if (!recorded.result.interrupted) await recordHistory(context.db, recorded.result.snapshot, recorded.run?.id);
  return { ...recorded.result, run: recorded.run, applied: true };
}

/**
 * The repair every flipping command runs (repair-stranded.ts), over every row: a save of the app's that landed
 * after the last command's settle period is put back tonight, on the same evidence (the row's content, or the
 * object at the plan key proven by its hash).
 */
async function repairAppWrites(context: StorageContext, options: MaintainOptions, reporter: Reporter): Promise<{ count: number; failed: ItemProblem[] }> {
  const outcome = await withWorker(
    context,
    defaultRunOptions({ tables: options.tables, policy: options.policy, concurrency: options.concurrency, signal: options.signal }),
    { log: reporter.log, event: reporter.event },
    'maintain: repair',
    async (_run, table) => ({ table: table.name, attempted: 0, flipped: 0, bytes: 0, storedBytes: 0, changedMeanwhile: [], abandoned: 0, failed: [], skipped: [] }),
  );
  return { count: outcome.repairedAppWrites, failed: outcome.tables.flatMap((table) => [...table.failed, ...table.skipped]) };
}
