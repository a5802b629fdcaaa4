import type { Plan } from '../../../src/ops/plan.ts';
import type { TableRunResult } from '../../../src/ops/batch-runner.ts';
import type { Reporter } from '../../../src/reporter.ts';
import { confirmWrite } from '../input/confirm.ts';
import type { Output } from '../render/output.ts';
import { progressReporter } from '../render/progress.ts';
import { expectedStages, renderPlan, renderRunTables } from '../render/plans.ts';
import { describePlan } from '../render/plan-notes.ts';
import { formatDuration, plural } from '../render/format.ts';
import { EXIT } from './exit.ts';
import { appendStepSummary, planMarkdown } from '../render/step-summary.ts';
import type { CommandResult } from './command.ts';
import { renderTarget, type Target } from '../render/target.ts';
import type { OpenedContext } from '../input/context.ts';
import type { CommonRunOptions } from '../../../src/ops/options.ts';

/** The target of a row walk: the context's database and bucket, and the scope its filter takes. */
export async function scopedTarget(context: OpenedContext, options: Pick<CommonRunOptions, 'filter' | 'limit'>): Promise<Target> {
  const { describeScope } = await import('../../../src/ops/scope.ts');
  return { ...context.target, scope: await describeScope(context.db, options.filter, { limit: options.limit }) };
}

export interface RowRunSummary {
  tables: TableRunResult[];
  interrupted: boolean;
  cancelled?: string;
  sessionLost?: string;
  problems: number;
  run?: { id: string; joined: boolean; state?: string };
}

/**
 * The shape every row-walking write command shares: show the plan, stop there on --dry-run, ask, run with
 * a progress bar, show the outcome per table, and map it to an exit code.
 */
export async function planConfirmRun<R extends RowRunSummary>(flow: {
  output: Output;
  plan: Plan;
  /** What the plan acts on, printed first and named in the question. */
  target: Target;
  /** Whether the command touches the bucket (named in the plan) */
  usesBucket?: boolean;
  title: string;
  dryRun: boolean;
  yes: boolean;
  nothingToDo: string;
  question: (plan: Plan, target: Target) => string;
  stage: string;
  verb: string;
  run: (reporter: Reporter) => Promise<R>;
  summary: (result: R) => string[];
  /** After the confirmation, before the first write (the store check of commands that write objects). */
  beforeRun?: () => Promise<void>;
}): Promise<CommandResult> {
  const { output } = flow;
  const plan = describePlan(flow.plan);
  renderPlan(output, plan, flow.dryRun ? `${flow.title} (dry run: nothing will change)` : flow.title, () => renderTarget(output, flow.target, { bucket: flow.usesBucket ?? true }));
  if (flow.dryRun) {
    appendStepSummary(output.streams.env, planMarkdown(plan, `overskill-storage: ${flow.title} (dry run)`));
    output.result({ dryRun: true, plan });
    return { exitCode: EXIT.ok };
  }
  if (plan.rows === 0) {
    output.print(output.color.green(flow.nothingToDo));
    output.result({ dryRun: false, plan, result: null });
    return { exitCode: EXIT.ok };
  }
  await confirmWrite(output, flow.question(flow.plan, flow.target), { yes: flow.yes });
  await flow.beforeRun?.();
  const started = Date.now();
  const progress = progressReporter(output, expectedStages(plan, flow.stage));
  let result: R;
  try {
    result = await flow.run(progress);
  } finally {
    progress.stop();
  }
  renderRunTables(output, result.tables, flow.verb);
  const done = result.tables.reduce((sum, t) => sum + t.flipped, 0);
  const ending = result.cancelled ? output.color.yellow('Cancelled') : result.interrupted ? output.color.yellow('Interrupted') : output.color.green('Done');
  output.print(`\n${ending}: ${plural(done, 'row')} ${flow.verb} in ${formatDuration(Date.now() - started)}.`);
  if (result.cancelled) output.print(`Run ${result.run?.id ?? ''} was cancelled (${result.cancelled}); every batch in flight was finished first.`);
  if (result.run) {
    const state = result.run.state === undefined || ['running', 'pausing', 'paused', 'cancelling'].includes(result.run.state) ? 'its other workers are still at it' : result.run.state;
    output.print(output.color.dim(`Run ${result.run.id}${result.run.joined ? ' (joined)' : ''}: ${state}. History: \`overskill-storage report --runs\`.`));
  }
  for (const line of flow.summary(result)) output.print(line);
  if (result.sessionLost) output.error(`${result.sessionLost}. Run the command again to finish.`);
  if (result.problems) output.print(output.color.yellow(`${plural(result.problems, 'problem')}; see above.`));
  output.result({ dryRun: false, plan, result });
  return { exitCode: result.interrupted || result.cancelled ? EXIT.interrupted : result.problems ? EXIT.problems : EXIT.ok };
}
