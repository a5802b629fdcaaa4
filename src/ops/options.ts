import type { PlacementPolicy } from '../placement.ts';
import { DEFAULT_POLICY } from '../placement.ts';
import type { RowFilter } from '../sql/filters.ts';
import type { ClaimOrder } from '../sql/claim-batch.ts';
import type { DbLoadGuard } from '../db-load.ts';
import type { BatchObserver } from '../runs/run-worker.ts';
import type { WorkerActivity } from '../runs/activity.ts';
import type { StoredTable } from '../tables.ts';
import type { RunRecordSpec } from '../runs/open-run.ts';
import type { Limiter } from '../pool.ts';
import type { RateLimiter } from '../pacing.ts';
import type { Reporter } from '../reporter.ts';
import { TABLE_NAMES, TABLES } from '../tables.ts';

/** What the operator chose about which rows, how many and how fast: shared by every row-walking command. */
export interface WalkOptions {
  filter: RowFilter;
  /** Stop after this many rows have been attempted (per run, over all tables). */
  limit?: number;
  batchSize: number;
  /** Inline content per batch is capped at this many bytes. */
  batchBytes: number;
  concurrency: number;
  /** Objects per second, over the whole run. */
  maxRate?: number;
  dbLoad?: DbLoadGuard;
  order?: ClaimOrder;
  signal?: AbortSignal;
  /** The recorded run this walk belongs to: it may hold the walk (pause), and is told what each batch did. */
  observer?: BatchObserver;
  /** Items in flight and their bounds: an item that outlives its bound fails as `stalled` (activity.ts). */
  activity?: WorkerActivity;
  /** False once this worker's lease may have expired: its claims may be another's, so nothing more is flipped. */
  claimsHeld?: () => boolean;
}

export const DEFAULT_WALK: Omit<WalkOptions, 'filter'> = {
  batchSize: 200,
  batchBytes: 8 * 1024 * 1024,
  concurrency: 16,
};

/**
 * Contents above this size are streamed in slices instead of being fetched with their batch: a batch then
 * holds at most its byte budget plus one such content, whatever its rows hold.
 */
export const DEFAULT_INLINE_MAX = 1024 * 1024;
/**
 * At most this many streamed (large) contents move at once, whatever the concurrency: one holds about two
 * 5 MiB multipart parts (the one filling, the one sending). A second stream in parallel was 10-15% faster on
 * 1-20 MB rows but put the CLI's peak RSS at 186-197 MB against its 200 MB bound; one keeps it near 180.
 */
export const LARGE_ITEM_CONCURRENCY = 1;

export interface CommonRunOptions extends WalkOptions {
  tables: StoredTable[];
  policy: PlacementPolicy;
  inlineMaxBytes: number;
  /** Record this run (and let other terminals see, pause, tune and cancel it); the command fills it in. */
  record?: RunRecordSpec;
  /**
   * How long a run that flipped rows waits before its closing repair pass, so that the app's saves computed
   * from rows loaded before a flip have landed (repair-stranded.ts). 0: the pass runs at once.
   */
  settleMs?: number;
  /** Checked by prepareWalk already (schema, load probe, scope): the run does not check again. */
  prepared?: boolean;
}

export function defaultRunOptions(overrides: Partial<CommonRunOptions> = {}): CommonRunOptions {
  return {
    ...DEFAULT_WALK,
    filter: {},
    tables: TABLE_NAMES.map((name) => TABLES[name]),
    policy: DEFAULT_POLICY,
    inlineMaxBytes: DEFAULT_INLINE_MAX,
    ...overrides,
  };
}

/**
 * R2 reads in flight for the library's `exportApp` when the caller names none: an app's files (85 on average, in
 * the plan) in one wave. The CLI passes its own `--concurrency`, whose default is the same in every command.
 */
export const EXPORT_CONCURRENCY = 128;

/** What one worker's walk of a table is given: its session id, its options, the run's shared limits and budget. */
export interface WorkerRun {
  workerId: string;
  options: CommonRunOptions;
  shared: { limiter: Limiter; rate?: RateLimiter };
  budget: { remaining: number };
  /** The command's reporter, its events tagged with this run and worker. */
  reporter: Reporter;
}
