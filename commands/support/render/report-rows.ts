import type { StorageReport } from '../../../src/ops/report.ts';
import { formatBytes } from './format.ts';
import type { DescribedMetric } from './metric-text.ts';

/** The on-disk and metrics tables as rows, shared by the terminal, markdown and HTML renderings of `report`. */
export const DISK_HEADER = ['table', 'heap', 'TOAST', 'indexes', 'total', 'baseline', 'change', 'reusable after VACUUM', 'VACUUM FULL returns'];
export const METRIC_HEADER = ['metric', 'target', 'measured', 'met', 'next step'];

export function diskRows(report: Pick<StorageReport, 'disk' | 'baseline' | 'space'>): string[][] {
  return report.disk.map((d) => {
    const base = report.baseline.find((b) => b.table === d.table);
    const space = report.space.find((s) => s.table === d.table);
    const estimated = space?.method === 'estimate' ? ' (est.)' : '';
    return [
      d.table,
      formatBytes(d.heapBytes),
      formatBytes(d.toastBytes),
      formatBytes(d.indexBytes),
      formatBytes(d.totalBytes),
      base ? formatBytes(base.totalBytes) : '-',
      base ? `${base.changePercent > 0 ? '+' : ''}${base.changePercent}%` : '-',
      space ? formatBytes(space.reusableBytes) + estimated : '-',
      space ? formatBytes(space.returnableBytes) + estimated : '-',
    ];
  });
}

export function metricRows(report: { metrics: DescribedMetric[] }): string[][] {
  return report.metrics.map((m) => [m.metric, m.target, m.measuredText, m.met === null ? (m.measured === null ? 'not measured' : 'undecided') : m.met ? 'met' : 'not met', m.met ? '-' : (m.next ?? '-')]);
}

/** Under the metrics table: what each step left brings each metric to, and why a metric cannot be met. */
export function metricStepLines(report: { metrics: DescribedMetric[] }): string[] {
  const lines: string[] = [];
  for (const m of report.metrics) {
    if (m.met) continue;
    if (m.steps?.length) lines.push(`${m.metric}: ${m.steps.map((step) => step.text).join('; ')}`);
    if (m.shortfall) lines.push(`${m.metric}: cannot be met on this data: ${m.shortfall}`);
  }
  return lines;
}
