import type { DescribedPlan } from './plan-notes.ts';
import type { ItemProblem, TableRunResult } from '../../../src/ops/batch-runner.ts';
import type { Output } from './output.ts';
import { formatBytes, formatCount, formatMoney } from './format.ts';

export function renderPlan(output: Output, plan: DescribedPlan, title: string, target?: () => void): void {
  const c = output.color;
  output.print(c.bold(title));
  target?.();
  const lines = plan.lines.filter((line) => line.rows > 0 || /^(upload|read back|download)/.test(line.action));
  output.print(
    output.table(
      ['table', 'action', 'rows', 'bytes'],
      lines.map((line) => [line.table, line.action, formatCount(line.rows), formatBytes(line.bytes)]),
    ),
  );
  const requests = [
    plan.requests.classA ? `${formatCount(plan.requests.classA)} Class A` : '',
    plan.requests.classB ? `${formatCount(plan.requests.classB)} Class B` : '',
    plan.requests.free ? `${formatCount(plan.requests.free)} free (deletes)` : '',
  ].filter(Boolean);
  output.print('');
  output.print(`Rows to change:      ${c.bold(formatCount(plan.rows))} (${formatBytes(plan.bytes)})`);
  output.print(`S3 requests:         ${requests.length ? requests.join(', ') : 'none'} ≈ ${formatMoney(plan.cost.requests)}`);
  if (plan.cost.storagePerMonth !== 0) output.print(`R2 storage change:   ${formatMoney(plan.cost.storagePerMonth)}/month`);
  if (plan.cost.retrieval) output.print(`Retrieval fees:      ${formatMoney(plan.cost.retrieval)} (Infrequent Access)`);
  if (plan.databaseBytesFreed) output.print(`Database bytes freed: ${c.bold(formatBytes(plan.databaseBytesFreed))} on disk (${formatBytes(plan.contentBytesFreed)} of content)`);
  if (plan.databaseBytesFreedLater) output.print(`Freed later by finalize: ${formatBytes(plan.databaseBytesFreedLater)} on disk (${formatBytes(plan.contentBytesFreedLater)} of content)`);
  for (const note of plan.notes) output.print(c.dim(`note: ${note}`));
  output.print('');
}

export function renderProblems(output: Output, title: string, problems: ItemProblem[], limit = 50): void {
  if (!problems.length) return;
  const c = output.color;
  output.print(c.yellow(`${title} (${formatCount(problems.length)}):`));
  for (const problem of problems.slice(0, limit)) {
    output.print(`  ${problem.table} #${problem.id} app ${problem.appId}${problem.path !== null ? ` ${JSON.stringify(problem.path)}` : ''}${problem.key ? ` [${problem.key}]` : ''}: ${problem.reason}`);
  }
  if (problems.length > limit) output.print(`  … and ${formatCount(problems.length - limit)} more (use --json for the full list)`);
}

export function renderRunTables(output: Output, tables: TableRunResult[], verb: string): void {
  const c = output.color;
  output.print(
    output.table(
      ['table', 'rows taken', verb, 'bytes', 'changed meanwhile', 'refused', 'failed'],
      tables.map((t) => [t.table, formatCount(t.attempted), formatCount(t.flipped), formatBytes(t.bytes), formatCount(t.changedMeanwhile.length), formatCount(t.skipped.length), formatCount(t.failed.length)]),
    ),
  );
  renderProblems(output, 'Refused', tables.flatMap((t) => t.skipped));
  renderProblems(output, 'Failed', tables.flatMap((t) => t.failed));
  renderProblems(output, 'Changed by the app during the run (left for the next run)', tables.flatMap((t) => t.changedMeanwhile), 10);
}

/** Plan lines as expected totals for the progress bar, keyed by the core's stage names. */
export function expectedStages(plan: DescribedPlan, stagePrefix: string): Record<string, { items: number; bytes: number }> {
  const stages: Record<string, { items: number; bytes: number }> = {};
  for (const line of plan.lines) {
    if (/^(stays|already)/.test(line.action)) continue;
    const name = `${stagePrefix} ${line.table}`;
    stages[name] ??= { items: 0, bytes: 0 };
    stages[name].items += line.rows;
    stages[name].bytes += line.bytes;
  }
  return stages;
}
