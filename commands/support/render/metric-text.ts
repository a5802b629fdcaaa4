import type { Prices } from '../../../src/cost.ts';
import type { HoldsUp, Lever, ProjectedStep, SuccessMetric } from '../../../src/ops/success-metrics.ts';
import type { StorageReport } from '../../../src/ops/report.ts';
import { formatBytes, formatCount } from './format.ts';

/** A success metric as `report` says it: its figures, and the sentences for the measured value, the method, each step and the shortfall. */
export type DescribedMetric = Omit<SuccessMetric, 'steps' | 'shortfall'> & {
  measuredText: string;
  note: string;
  steps?: (ProjectedStep & { text: string })[];
  shortfall?: string;
};

/** The report as every rendering of `report` takes it: the metrics said in words. */
export type DescribedReport = Omit<StorageReport, 'metrics'> & { metrics: DescribedMetric[] };

const dollars = (value: number) => `$${value.toFixed(4)}`;

/** The report with each metric said in words: what every rendering of `report` (terminal, markdown, HTML, JSON) shows. */
export function describeMetrics<Report extends { metrics: SuccessMetric[]; prices: Prices }>(report: Report): Omit<Report, 'metrics'> & { metrics: DescribedMetric[] } {
  return { ...report, metrics: report.metrics.map((metric) => describeMetric(metric, report.prices)) };
}

export function describeMetric(m: SuccessMetric, prices: Prices): DescribedMetric {
  const unit = m.kind === 'retrieval' ? ' ms' : '%';
  const steps = m.steps?.map((step) => ({ ...step, text: stepText(step, unit, m.kind === 'cost' ? m.compressionShare : undefined) }));
  const base = { ...m, steps, shortfall: undefined as string | undefined };
  switch (m.kind) {
    case 'table-size': {
      if (m.measured === null) return { ...base, shortfall: undefined, measuredText: 'no baseline recorded', note: 'the baseline is recorded by the first `schema --apply` or `migrate`' };
      const after = m.afterRewrite ? `; ${signed(m.afterRewrite.percent)} once reclaim returns the freed space (${m.afterRewrite.method})` : '';
      const parts = m.measures
        ? `app_files on disk (pg_total_relation_size): heap ${formatBytes(m.measures.heapBytes)} + TOAST ${formatBytes(m.measures.toastBytes)} + indexes ${formatBytes(m.measures.indexBytes)} = ${formatBytes(m.measures.totalBytes)}, against ${formatBytes(m.measures.baselineBytes)} before anything moved`
        : 'pg_total_relation_size (heap, TOAST, indexes) against the baseline';
      const floor = m.floor ? `; with no content at all (every content in R2) it would take about ${formatBytes(m.floor.bytes)}: no placement can cut more than ${m.floor.percent}%` : '';
      return {
        ...base,
        measuredText: `${signed(m.measured)} on disk now${after}`,
        note: `${parts}${floor}; space finalize frees is reused by PostgreSQL but returned to the disk only by a rewrite (\`reclaim\`)`,
        shortfall: m.shortfall
          ? [
              `even after every step left, app_files would be about ${m.shortfall.best}% smaller, ${m.shortfall.points} points short`,
              ...(m.holdsUp?.length ? [`what holds it up: ${m.holdsUp.map(holdsUpText).join(', ')}`] : []),
              ...(m.levers?.length ? [`levers: ${m.levers.map(leverText).join('; ')}`] : []),
            ].join('. ')
          : undefined,
      };
    }
    case 'retrieval':
      return m.probe
        ? {
            ...base,
            measuredText: `p50 ${round1(m.probe.p50Ms)} ms, p95 ${round1(m.probe.p95Ms)} ms over ${m.probe.reads} reads`,
            note: 'hybrid retrieval of R2-held app files from this machine (no cache); `npm run bench` measures it through a 50 ms proxy with and without the cache',
          }
        : { ...base, measuredText: 'not measured by this report', note: 'pass --probe-reads N (needs the R2 settings) to time N reads from here' };
    case 'availability': {
      const reads = m.reads;
      if (!reads || m.measured === null) {
        return { ...base, measuredText: 'no reads recorded', note: "measured from maintain's deep sample (each night's reads and failures) and --probe-reads; run `maintain --yes` nightly, or pass --probe-reads N" };
      }
      const period = reads.maintainRuns
        ? `${reads.maintainRuns} maintain run${reads.maintainRuns === 1 ? '' : 's'} from ${reads.from} to ${reads.to}${reads.probed ? " and this report's probe" : ''}`
        : "this report's probe";
      return {
        ...base,
        measuredText: `${m.measured.toString()}% of ${formatCount(reads.attempted)} reads (${formatCount(reads.failed)} failed) over ${period}`,
        note:
          reads.tooFew && reads.failed === 0
            ? `${formatCount(reads.attempted)} reads cannot tell ${m.target} apart from less (one failure in 1,000 is the line): more nights of maintain, or --probe-reads, settle it`
            : "reads that did not come back (an error or no answer) against all reads; bytes that came back wrong are verify's, not availability's",
      };
    }
    case 'cost': {
      if (!m.cost || m.measured === null) {
        return { ...base, shortfall: undefined, measuredText: m.unmeasured === 'no-price' ? 'no database price' : 'no baseline recorded', note: 'needs the baseline and --price-database' };
      }
      const { before, now, writes, firstMonthPercent } = m.cost;
      return {
        ...base,
        measuredText: `${m.measured}% (${dollars(before)} → ${dollars(now)}/month); ${firstMonthPercent}% in the first month, counting the migration's writes (${dollars(writes)})`,
        note: `the three tables on disk at $${prices.databasePerGbMonth}/GB-month (--price-database) before, against their size now plus R2 storage at $${prices.storagePerGbMonth}/GB-month; reads and the database's other costs are left out`,
        shortfall: m.shortfall
          ? `even after every step left, about ${m.shortfall.best}%, ${m.shortfall.points} points short: the database keeps about ${formatBytes(m.shortfall.floorBytes)} (small files, indexes, metadata), ${dollars(m.shortfall.floorCost)}/month at --price-database, and R2 holds ${formatBytes(m.shortfall.r2Bytes)} at ${dollars(m.shortfall.r2Cost)}/month, against ${dollars(m.shortfall.before)} before`
          : undefined,
      };
    }
  }
}

/** A reduction as the plan reads it: a cut is positive; a table that grew says so, not "-49.8%". */
function signed(percent: number): string {
  return percent < 0 ? `grew ${-percent}%` : `${percent}%`;
}

function holdsUpText(part: HoldsUp): string {
  switch (part.part) {
    case 'rows-kept':
      return `${formatCount(part.rows)} files below ${part.belowBytes} bytes kept in the database by the size strategy (${formatBytes(part.bytes)})`;
    case 'plan-indexes':
      return `the plan's indexes (${formatBytes(part.bytes)}: ${part.names.join(', ')})`;
    case 'tool-indexes':
      return `this tool's indexes (${formatBytes(part.bytes)}: ${part.names.join(', ')})`;
    case 'new-columns':
      return `the new columns (${formatBytes(part.bytes)})`;
  }
}

function leverText(lever: Lever): string {
  switch (lever.lever) {
    case 'hybrid-band':
      return `the hybrid band (\`finalize --hybrid-band\`, ${formatBytes(lever.bytes)}) is counted above: about ${lever.brings}%`;
    case 'hybrid-threshold':
      return `every content in R2 (\`--hybrid-threshold ${lever.threshold}\`, ${formatBytes(lever.bytes)} more): about ${lever.brings}%`;
    case 'leaner-indexes':
      return `key indexes only over rows with an object (\`schema --apply\` rebuilds them partial, about ${formatBytes(lever.bytes)} less): about ${lever.brings}%`;
  }
}

function stepText(step: ProjectedStep, unit: string, compressionShare?: number): string {
  switch (step.step) {
    case 'reclaim':
      return `reclaim alone: ${step.brings}${unit}`;
    case 'finalize, then reclaim':
      return `finalize, then reclaim: about ${step.brings}${unit}`;
    case 'finalize --hybrid-band, then reclaim':
      return `the hybrid band, then reclaim: about ${step.brings}${unit}`;
    case 'stored compressed':
      return `and stored compressed (migrate --compress gzip; objects already stored only by rolling back and migrating again; ${Math.round((compressionShare ?? 0) * 100)}% smaller on a sample): about ${step.brings}${unit}`;
  }
}

const round1 = (value: number) => Math.round(value * 10) / 10;
