import { appendFileSync } from 'node:fs';
import type { DescribedPlan } from './plan-notes.ts';
import { formatBytes, formatCount, formatMoney, renderMarkdownTable } from './format.ts';

/**
 * In a GitHub Actions job (GITHUB_STEP_SUMMARY set), dry-runs and reports also append themselves as markdown
 * to the job's summary page. Elsewhere this does nothing.
 */
export function appendStepSummary(env: NodeJS.ProcessEnv, markdown: string): void {
  const file = env.GITHUB_STEP_SUMMARY;
  if (!file) return;
  appendFileSync(file, `${markdown.trimEnd()}\n\n`);
}

export function planMarkdown(plan: DescribedPlan, title: string): string {
  const lines = plan.lines.filter((line) => line.rows > 0);
  return [
    `### ${title}`,
    '',
    lines.length ? renderMarkdownTable(['table', 'action', 'rows', 'bytes'], lines.map((line) => [line.table, line.action, formatCount(line.rows), formatBytes(line.bytes)])) : '_Nothing to do._',
    '',
    renderMarkdownTable(
      ['measure', 'value'],
      [
        ['rows to change', `${formatCount(plan.rows)} (${formatBytes(plan.bytes)})`],
        ['S3 requests', `${formatCount(plan.requests.classA)} Class A, ${formatCount(plan.requests.classB)} Class B, ${formatCount(plan.requests.free)} free ≈ ${formatMoney(plan.cost.requests)}`],
        ['R2 storage change', `${formatMoney(plan.cost.storagePerMonth)}/month`],
        ['database bytes freed (on disk)', `${formatBytes(plan.databaseBytesFreed)} (${formatBytes(plan.contentBytesFreed)} of content)`],
        ['freed later by finalize (on disk)', `${formatBytes(plan.databaseBytesFreedLater)} (${formatBytes(plan.contentBytesFreedLater)} of content)`],
      ],
    ),
    ...plan.notes.map((note) => `\n> ${note}`),
  ].join('\n');
}
