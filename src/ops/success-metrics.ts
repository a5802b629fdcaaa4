/**
 * The plan's success metrics, measured: figures and reasons only (commands/support/render/metric-text.ts says
 * them in words).
 * - app_files table size: (baseline - now) / baseline of pg_total_relation_size. Space finalize freed stays in
 *   the files until VACUUM FULL or pg_repack rewrites them, so the figure after such a rewrite (now minus what
 *   it would return) is given too; "met" judges what the disk holds now.
 * - retrieval time: the p50 of reads the report took itself (`--probe-reads`), else not measured.
 * - R2 access availability: the reads the tool made itself (maintain's nightly sample, --probe-reads).
 * - monthly storage cost: the three tables' on-disk bytes at --price-database before, against their bytes now
 *   plus R2 storage; the migration's own Class A writes are one-off, shown spread over the first month.
 */
import type { TableDiskSize, ReclaimableSpace } from '../sql/table-sizes.ts';
import type { HistoryPoint } from '../sql/report-history.ts';
import { classACost, databaseCost, storageCost, type Prices } from '../cost.ts';
import { bytesOnceKeyed, keylessEntryBytes, type TableFootprint } from '../sql/table-footprint.ts';
import { FILES } from '../tables.ts';

/** The plan's targets ("Success Metrics"), each with the line a measured figure must pass. */
export const PLAN_TARGETS = {
  tableSize: { metric: 'app_files table size reduction', target: '70-80%', atLeastPercent: 70 },
  retrieval: { metric: 'file retrieval time', target: '< 100 ms', belowMs: 100 },
  availability: { metric: 'R2 access availability', target: '99.9%', atLeastPercent: 99.9 },
  cost: { metric: 'monthly storage cost reduction', target: '> 90%', abovePercent: 90 },
} as const;

/** Fewer reads than this cannot tell 99.9% apart from less (one failure in 1,000 is the line). */
const AVAILABILITY_READS = 1000;

/** What one step left would bring a metric to, cumulatively, in the order the steps are taken. */
export interface ProjectedStep {
  step: 'reclaim' | 'finalize, then reclaim' | 'finalize --hybrid-band, then reclaim' | 'stored compressed';
  brings: number;
}

interface MetricFigures {
  metric: string;
  target: string;
  /** The measured value in the metric's unit (percent, milliseconds), or null when this report did not measure it. */
  measured: number | null;
  met: boolean | null;
  /** What each step not taken yet would bring the figure to (cumulative, in order), and the step to take next. */
  steps?: ProjectedStep[];
  next?: string | null;
}

export type SuccessMetric =
  | (MetricFigures & {
      kind: 'table-size';
      /** Why it was not measured. */
      unmeasured?: 'no-baseline';
      /** The reduction once reclaim returns the freed space, and how that space was measured. */
      afterRewrite?: { percent: number; method: string };
      /** What the figure measures: app_files on disk now, by part, and its baseline. */
      measures?: { heapBytes: number; toastBytes: number; indexBytes: number; totalBytes: number; baselineBytes: number };
      /** The table with no content at all (every content in R2, each row with its key and hash): the most any placement can cut (estimated, as the steps are). */
      floor?: { bytes: number; percent: number };
      /** What holds the figure up once every step is taken, largest first. */
      holdsUp?: HoldsUp[];
      /** What moves the figure beyond the plan's steps, each with what it would bring it to. */
      levers?: Lever[];
      /** Why even every step left falls short (`holdsUp` says by what). */
      shortfall?: { best: number; points: number };
    })
  | (MetricFigures & { kind: 'retrieval'; probe?: ReadProbe })
  | (MetricFigures & {
      kind: 'availability';
      reads?: { attempted: number; failed: number; maintainRuns: number; from?: string; to?: string; probed: boolean; tooFew: boolean };
    })
  | (MetricFigures & {
      kind: 'cost';
      unmeasured?: 'no-baseline' | 'no-price';
      /** Monthly cost before, now, and the migration's one-off writes (dollars); the reduction in its first month. */
      cost?: { before: number; now: number; writes: number; firstMonthPercent: number };
      /** The share gzip saves on a sample, when a compressed step is projected. */
      compressionShare?: number;
      /** Why even every step left falls short: what the database and R2 keep, and at what cost. */
      shortfall?: { best: number; points: number; floorBytes: number; floorCost: number; r2Bytes: number; r2Cost: number; before: number };
    });

/** A part of app_files that stays whatever the plan's steps do. */
export type HoldsUp =
  | { part: 'rows-kept'; bytes: number; rows: number; belowBytes: number }
  | { part: 'plan-indexes'; bytes: number; names: string[] }
  | { part: 'tool-indexes'; bytes: number; names: string[] }
  | { part: 'new-columns'; bytes: number };

/** A change beyond the plan's steps, and the table-size reduction it would bring (after every step, with reclaim). */
export type Lever =
  | { lever: 'hybrid-band'; brings: number; bytes: number }
  | { lever: 'hybrid-threshold'; threshold: number; brings: number; bytes: number }
  | { lever: 'leaner-indexes'; brings: number; bytes: number; names: string[] };

/** Read timings for the retrieval metric, when the report was asked to take them (`--probe-reads`). */
export interface ReadProbe {
  /** Reads attempted, and those that did not give the content back. */
  reads: number;
  failed?: number;
  p50Ms: number;
  p95Ms: number;
}

/** A table's contents as the metrics need them: the rows in the database, and what migrate has still to move. */
export interface MetricTable {
  table: string;
  pendingBytes: number;
  /** The database rows migrate leaves (below the hybrid threshold), their bytes, and what they take stored. */
  stayingRows: number;
  stayingBytes: number;
  stayingStoredBytes: number;
}

export function successMetrics(input: {
  disk: TableDiskSize[];
  space: ReclaimableSpace[];
  baseline: { table: string; totalBytes: number }[];
  prices: Prices;
  r2Bytes: number;
  movedRows: number;
  probe?: ReadProbe;
  tables: MetricTable[];
  history: HistoryPoint[];
  hybridMin: number;
  hybridStored: Map<string, { finalizable: number; band: number }>;
  /** What gzip saves on a sample of the contents (compression-stats.ts), 0 when nothing was sampled. */
  compressionShare: number;
  /** app_files besides its contents: indexes, the migration's columns (table-footprint.ts). */
  footprint?: TableFootprint;
}): SuccessMetric[] {
  const left = stepsLeft(input.tables, input.space, input.hybridStored);
  return [tableSizeMetric(input, left), retrievalMetric(input.probe), availabilityMetric(input.history, input.probe), costMetric(input, left)];
}

function tableSizeMetric(input: Parameters<typeof successMetrics>[0], left: Map<string, StepsLeft>): SuccessMetric {
  const { metric, target, atLeastPercent } = PLAN_TARGETS.tableSize;
  const filesBase = input.baseline.find((b) => b.table === 'files');
  const filesNow = input.disk.find((d) => d.table === 'files');
  const filesSpace = input.space.find((s) => s.table === 'files');
  if (!filesBase || !filesNow || filesBase.totalBytes <= 0) return { kind: 'table-size', metric, target, measured: null, met: null, unmeasured: 'no-baseline' };
  const percentOf = (bytes: number) => round1(((filesBase.totalBytes - bytes) / filesBase.totalBytes) * 100);
  const reduction = ((filesBase.totalBytes - filesNow.totalBytes) / filesBase.totalBytes) * 100;
  const files = left.get('files');
  const steps = files ? projectSteps(filesNow.totalBytes, files, percentOf) : [];
  const best = steps.length ? steps[steps.length - 1].brings : round1(reduction);
  const stays = input.tables.find((t) => t.table === 'files');
  const footprint = input.footprint;
  // What app_files takes once every step is taken (as the last step projects it), and with no content at all.
  const bestBytes = filesNow.totalBytes - (files ? files.returnable + files.finalizable + files.band : 0);
  // The floor: every content in R2, none in the database; the rows stay, each with a key and hash.
  const keylessRows = footprint ? Math.max(0, footprint.rows - footprint.keyedRows) : 0;
  const hashedShare = footprint && keylessRows ? Math.min(1, footprint.keylessHashedRows / keylessRows) : 0;
  const gainedOnceKeyed = (rows: number) => (footprint ? rows * (hashedShare * bytesOnceKeyed(footprint, FILES, true) + (1 - hashedShare) * bytesOnceKeyed(footprint, FILES, false)) : 0);
  const floorBytes = footprint ? Math.max(0, Math.round(filesNow.totalBytes - (filesSpace?.returnableBytes ?? 0) - footprint.storedContentBytes + gainedOnceKeyed(keylessRows))) : undefined;
  const holdsUp: HoldsUp[] = [];
  const levers: Lever[] = [];
  if (footprint) {
    const indexes = (origin: 'plan' | 'tool') => footprint.indexes.filter((index) => index.origin === origin);
    const sumOf = (list: { bytes: number }[]) => list.reduce((sum, item) => sum + item.bytes, 0);
    holdsUp.push(
      { part: 'rows-kept', bytes: stays?.stayingStoredBytes ?? 0, rows: stays?.stayingRows ?? 0, belowBytes: input.hybridMin },
      { part: 'plan-indexes', bytes: sumOf(indexes('plan')), names: indexes('plan').map((index) => index.name) },
      { part: 'tool-indexes', bytes: sumOf(indexes('tool')), names: indexes('tool').map((index) => index.name) },
      { part: 'new-columns', bytes: footprint.newColumnBytes },
    );
    holdsUp.sort((a, b) => b.bytes - a.bytes);
    if (files && files.band > 0) levers.push({ lever: 'hybrid-band', bytes: files.band, brings: best });
    // Every content in R2: the kept rows' contents leave, and each row gains a key and hash and their index entries.
    const kept = Math.round((stays?.stayingStoredBytes ?? 0) - gainedOnceKeyed(stays?.stayingRows ?? 0));
    if (kept > 0) levers.push({ lever: 'hybrid-threshold', threshold: 0, bytes: kept, brings: percentOf(bestBytes - kept) });
    // Full key indexes (built by the plan's migration, or by an earlier version of this tool) hold an entry for every keyless row too.
    const leaner = keylessEntryBytes(footprint, FILES);
    if (leaner.bytes > 0) levers.push({ lever: 'leaner-indexes', bytes: leaner.bytes, names: leaner.names, brings: percentOf(bestBytes - leaner.bytes) });
  }
  return {
    kind: 'table-size',
    metric,
    target,
    measured: round1(reduction),
    met: reduction >= atLeastPercent,
    measures: { heapBytes: filesNow.heapBytes, toastBytes: filesNow.toastBytes, indexBytes: filesNow.indexBytes, totalBytes: filesNow.totalBytes, baselineBytes: filesBase.totalBytes },
    ...(floorBytes !== undefined ? { floor: { bytes: floorBytes, percent: percentOf(floorBytes) } } : {}),
    ...(filesSpace ? { afterRewrite: { percent: percentOf(filesNow.totalBytes - filesSpace.returnableBytes), method: filesSpace.method } } : {}),
    steps,
    next: reduction >= atLeastPercent || !files ? null : nextStep(files, filesNow.totalBytes),
    ...(holdsUp.length ? { holdsUp } : {}),
    ...(levers.length && best < atLeastPercent ? { levers } : {}),
    ...(best < atLeastPercent ? { shortfall: { best, points: round1(atLeastPercent - best) } } : {}),
  };
}

function retrievalMetric(probe?: ReadProbe): SuccessMetric {
  const { metric, target, belowMs } = PLAN_TARGETS.retrieval;
  if (!probe) return { kind: 'retrieval', metric, target, measured: null, met: null };
  return { kind: 'retrieval', metric, target, measured: round1(probe.p50Ms), met: probe.p50Ms < belowMs, probe };
}

/**
 * The plan's 99.9% availability of R2 access, from the reads the tool itself made: maintain's deep sample each
 * night (the report history keeps each day's reads and failures) and this report's --probe-reads.
 */
function availabilityMetric(history: HistoryPoint[], probe?: ReadProbe): SuccessMetric {
  const { metric, target, atLeastPercent } = PLAN_TARGETS.availability;
  const days = history.filter((point) => point.snapshot.reads && point.takenAt.getTime() > Date.now() - 30 * 86_400_000);
  const attempted = days.reduce((sum, p) => sum + p.snapshot.reads!.attempted, 0) + (probe?.reads ?? 0);
  const failed = days.reduce((sum, p) => sum + p.snapshot.reads!.failed, 0) + (probe?.failed ?? 0);
  if (!attempted) return { kind: 'availability', metric, target, measured: null, met: null };
  const share = ((attempted - failed) / attempted) * 100;
  const tooFew = attempted < AVAILABILITY_READS;
  return {
    kind: 'availability',
    metric,
    target,
    measured: Math.round(share * 1000) / 1000,
    met: tooFew && failed === 0 ? null : share >= atLeastPercent,
    reads: {
      attempted,
      failed,
      maintainRuns: days.length,
      ...(days.length ? { from: days[0].takenAt.toISOString().slice(0, 10), to: days[days.length - 1].takenAt.toISOString().slice(0, 10) } : {}),
      probed: Boolean(probe),
      tooFew,
    },
  };
}

function costMetric(input: Parameters<typeof successMetrics>[0], left: Map<string, StepsLeft>): SuccessMetric {
  const { metric, target, abovePercent } = PLAN_TARGETS.cost;
  const baseBytes = input.baseline.reduce((sum, b) => sum + b.totalBytes, 0);
  const nowBytes = input.disk.filter((d) => input.baseline.some((b) => b.table === d.table)).reduce((sum, d) => sum + d.totalBytes, 0);
  if (baseBytes <= 0) return { kind: 'cost', metric, target, measured: null, met: null, unmeasured: 'no-baseline' };
  if (input.prices.databasePerGbMonth <= 0) return { kind: 'cost', metric, target, measured: null, met: null, unmeasured: 'no-price' };
  const before = databaseCost(baseBytes, input.prices);
  const now = databaseCost(nowBytes, input.prices) + storageCost(input.r2Bytes, input.prices);
  const writes = classACost(input.movedRows, input.prices);
  const reduction = ((before - now) / before) * 100;
  const all = [...left.values()].reduce(
    (sum, t) => ({ finalizable: sum.finalizable + t.finalizable, band: sum.band + t.band, returnable: sum.returnable + t.returnable, pending: sum.pending + t.pending }),
    { finalizable: 0, band: 0, returnable: 0, pending: 0 },
  );
  const costAt = (dbBytes: number, r2Bytes = input.r2Bytes) => round1(((before - (databaseCost(dbBytes, input.prices) + storageCost(r2Bytes, input.prices))) / before) * 100);
  const steps = projectSteps(nowBytes, all, (bytes) => costAt(bytes));
  const floorBytes = Math.max(0, nowBytes - all.returnable - all.finalizable - all.band);
  // R2 storage is the cost left once the database is small: gzip shrinks it by the sampled share.
  const compressed = input.compressionShare > 0.05 && input.r2Bytes > 0;
  if (compressed) steps.push({ step: 'stored compressed', brings: costAt(floorBytes, input.r2Bytes * (1 - input.compressionShare)) });
  const best = steps.length ? steps[steps.length - 1].brings : round1(reduction);
  return {
    kind: 'cost',
    metric,
    target,
    measured: round1(reduction),
    met: reduction > abovePercent,
    steps,
    next: reduction > abovePercent ? null : nextStep(all, nowBytes),
    cost: { before, now, writes, firstMonthPercent: round1(((before - now - writes) / before) * 100) },
    ...(compressed ? { compressionShare: input.compressionShare } : {}),
    ...(best <= abovePercent
      ? { shortfall: { best, points: round1(abovePercent - best), floorBytes, floorCost: databaseCost(floorBytes, input.prices), r2Bytes: input.r2Bytes, r2Cost: storageCost(input.r2Bytes, input.prices), before } }
      : {}),
  };
}

const round1 = (value: number) => Math.round(value * 10) / 10;

/** Per table, what the steps not taken yet would free: finalize, the hybrid band, and what a rewrite returns. */
interface StepsLeft {
  pending: number;
  finalizable: number;
  band: number;
  returnable: number;
}

/** The step to take next, in the plan's order; a rewrite that would give back under 5% of `ofBytes` is not worth naming. */
function nextStep(left: StepsLeft, ofBytes: number): string | null {
  if (left.pending > 0) return 'migrate';
  if (left.finalizable > 0) return 'finalize';
  if (left.band > 0) return 'finalize --hybrid-band';
  return left.returnable >= 0.05 * ofBytes && left.returnable > 0 ? 'reclaim' : null;
}

function stepsLeft(tables: MetricTable[], space: ReclaimableSpace[], stored: Map<string, { finalizable: number; band: number }>): Map<string, StepsLeft> {
  const out = new Map<string, StepsLeft>();
  for (const table of tables) {
    // What the contents take where they are stored (compressed in TOAST, or inline), not their length.
    const finalizable = stored.get(table.table)?.finalizable ?? 0;
    const band = stored.get(table.table)?.band ?? 0;
    const returnable = space.find((s) => s.table === table.table)?.returnableBytes ?? 0;
    out.set(table.table, { pending: table.pendingBytes, finalizable, band, returnable });
  }
  return out;
}

/**
 * The figure after each step left, cumulatively: space freed inside the tables comes back to the disk only
 * with the rewrite, so each step is shown with `reclaim` after it. Each content counts for what it takes
 * where it is stored (pg_column_size: compressed or not); a page's own overhead is left out, so the figures
 * are estimates.
 */
function projectSteps(nowBytes: number, left: StepsLeft, figure: (bytesOnDisk: number) => number): ProjectedStep[] {
  const steps: ProjectedStep[] = [];
  let bytes = nowBytes - left.returnable;
  if (left.returnable > 0) steps.push({ step: 'reclaim', brings: figure(bytes) });
  if (left.finalizable > 0) {
    bytes -= left.finalizable;
    steps.push({ step: 'finalize, then reclaim', brings: figure(bytes) });
  }
  if (left.band > 0) {
    bytes -= left.band;
    steps.push({ step: 'finalize --hybrid-band, then reclaim', brings: figure(bytes) });
  }
  return steps;
}
