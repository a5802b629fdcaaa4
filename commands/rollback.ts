import { Command } from 'commander';
import type { RollbackOptions } from '../src/ops/rollback.ts';
import { addPacingOptions, addPriceOptions, addWalkOptions, makeOutput, openContext, pricesFrom, runOptionsFrom, type GlobalOptions, type Runtime } from './support/input/context.ts';
import { planConfirmRun, scopedTarget } from './support/flow/write-flow.ts';
import { gateStore } from './support/flow/store-gate.ts';
import { addConflictOption, recordFor } from './support/flow/run-record.ts';
import { formatBytes, formatCount, plural } from './support/render/format.ts';
import type { CommandResult } from './support/flow/command.ts';
import { confirmWrite } from './support/input/confirm.ts';
import { withProgress } from './support/render/progress.ts';
import { EXIT } from './support/flow/exit.ts';
import { withStore } from '../src/context.ts';

export function rollbackCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  const command = new Command('rollback')
    .option('--dry-run', 'print what would be restored; change nothing')
    .option('--keep-hybrid', 'stop at hybrid: content back in the database, objects kept')
    .option('--purge', 'then delete the objects of rows that were rolled back, or, with nothing left to roll back, those an earlier rollback left (never one a row still names)');
  addWalkOptions(command);
  addPacingOptions(command);
  addPriceOptions(command);
  addConflictOption(command);
  return command
    .addHelpText('after', '\nExamples:\n  $ overskill-storage rollback --app 42 --dry-run\n  $ overskill-storage rollback --keep-hybrid --yes\n  $ overskill-storage rollback --purge --yes')
    .action(async (opts, cmd: Command) =>
      run(async () => {
        const [{ rollback, planRollbackRun }, { prepareWalk }] = await Promise.all([import('../src/ops/rollback.ts'), import('../src/ops/prepare-walk.ts')]);
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const output = makeOutput(globals, runtime);
        const walk: RollbackOptions = { ...runOptionsFrom(opts, runtime.signal, runtime.streams.env), keepHybrid: opts.keepHybrid ?? false, purge: opts.purge ?? false };
        const context = await openContext(globals, runtime, { store: !opts.dryRun, concurrency: walk.concurrency, database: opts.dryRun ? 'read' : 'write' });
        try {
          const options = await prepareWalk(context.db, walk);
          const record = recordFor(runtime, globals, opts, options, { identityExtra: { keepHybrid: options.keepHybrid, purge: options.purge } });
          if (!opts.dryRun) await (await import('../src/runs/open-run.ts')).refuseConflicts(context.db, record, (sentence) => output.warn(sentence));
          const plan = await planRollbackRun(context.db, options, pricesFrom(opts), opts.dryRun ?? false);
          if (options.purge && !options.keepHybrid && plan.rows === 0) return await purgeLeftoversFlow(context, options, { output, globals, dryRun: opts.dryRun ?? false, record });
          return await planConfirmRun({
            output,
            plan,
            target: await scopedTarget(context, options),
            title: 'Rollback plan',
            // --purge deletes objects through tombstones written with If-Match: the store must honour it.
            beforeRun: options.purge && !options.keepHybrid ? async () => void (record.storeCheck = await gateStore(withStore(context), output, globals)) : undefined,
            dryRun: opts.dryRun ?? false,
            yes: globals.yes ?? false,
            nothingToDo: 'Nothing to roll back: every content is in the database.',
            question: (p, target) =>
              `Roll back ${plural(p.rows, 'row')} of ${target.scope} to ${options.keepHybrid ? 'hybrid' : 'the database'} in database ${target.database}${options.purge && !options.keepHybrid ? `, and delete their objects from bucket ${target.bucket}` : ''}?`,
            stage: 'rollback',
            verb: options.keepHybrid ? 'back in the database (hybrid)' : 'back in the database',
            run: (reporter) =>
              rollback(
                withStore(context),
                { ...options, record: { ...record, eligible: { rows: plan.rows, bytes: plan.bytes } } },
                reporter,
              ),
            summary: (result) => [
              ...(options.purge ? [`Objects deleted: ${formatCount(result.purged)}.`] : []),
              ...result.purgeFailures.slice(0, 20).map((failure) => `  not deleted: ${failure.key}: ${failure.reason}`),
              ...(result.purgeRefused.length ? [`Objects left in place on purpose: ${formatCount(result.purgeRefused.length)} (not written by this tool, or rewritten since).`] : []),
              ...result.purgeRefused.slice(0, 20).map((refusal) => `  kept: ${refusal.key}: ${refusal.reason}`),
            ],
          });
        } finally {
          await context.close();
        }
      }),
    );
}

/**
 * `rollback --purge` with nothing left to roll back: what an earlier rollback without --purge left
 * (src/ops/purge-leftovers.ts), listed, asked about, and deleted after the store check.
 */
async function purgeLeftoversFlow(
  context: Awaited<ReturnType<typeof openContext>>,
  options: RollbackOptions,
  flow: { output: ReturnType<typeof makeOutput>; globals: GlobalOptions; dryRun: boolean; record: ReturnType<typeof recordFor> },
): Promise<CommandResult> {
  const { output, globals } = flow;
  const c = output.color;
  const { planLeftoverPurge, purgeLeftovers } = await import('../src/ops/purge-leftovers.ts');
  const plan = await withProgress(output, (progress) => planLeftoverPurge(context, options, flow.dryRun, progress));
  output.print(c.green('Nothing to roll back: every content is in the database.'));
  const cleanupLine = `overskill-storage cleanup --grace 0s${plan.appIds?.length ? ` --app ${plan.appIds.join(' --app ')}` : ''} --yes`;
  switch (plan.leftovers) {
    case 'scope-is-not-a-prefix':
      output.print(`Objects an earlier rollback left are deleted by cleanup (a --rollout or --shard scope is not a prefix of the bucket): ${cleanupLine}`);
      output.result({ dryRun: flow.dryRun, plan: null, result: null });
      return { exitCode: EXIT.ok };
    case 'not-listed-in-a-dry-run':
      output.print(`A real run deletes the objects of ours that no row names under this scope (an earlier rollback without --purge leaves them), after a question, as \`${cleanupLine}\` would.`);
      output.result({ dryRun: true, plan: null, result: null });
      return { exitCode: EXIT.ok };
    case 'migrate-running':
      output.print(`A migrate is running (run ${plan.runIds.join(', ')}): objects no row names yet may be its uploads. Once it has ended, \`rollback --purge\` again deletes what an earlier rollback left; or \`overskill-storage cleanup\` with its grace period.`);
      output.result({ dryRun: false, plan: null, result: null });
      return { exitCode: EXIT.ok };
    case 'listed':
      break;
  }
  const { listing } = plan;
  if (!listing.orphans) {
    output.result({ dryRun: false, plan: null, listing, result: null });
    return { exitCode: EXIT.ok };
  }
  output.print(`${plural(listing.orphans, 'object')} (${formatBytes(listing.orphanBytes)}) no row names any more, most likely left by an earlier rollback without --purge; only this tool's own are deleted.`);
  await confirmWrite(output, `Delete ${plural(listing.orphans, 'object')} (${formatBytes(listing.orphanBytes)}) that no row names from bucket ${context.target.bucket}?`, { yes: globals.yes ?? false });
  const storage = withStore(context);
  const storeCheck = await gateStore(storage, output, globals);
  const recorded = await withProgress(output, (progress) => purgeLeftovers(storage, options, plan, { ...flow.record, storeCheck }, progress));
  const result = recorded.result;
  output.print(`Objects deleted: ${formatCount(result.deleted)}.`);
  for (const failure of result.failed.slice(0, 20)) output.print(c.yellow(`  not deleted: ${failure.key}: ${failure.reason}`));
  if (result.refused.length) output.print(`Objects left in place on purpose: ${formatCount(result.refused.length)} (not written by this tool, or rewritten since).`);
  output.result({ dryRun: false, plan: null, listing, result: { purged: result.deleted, purgeFailures: result.failed, purgeRefused: result.refused, run: recorded.run } });
  return { exitCode: result.interrupted ? EXIT.interrupted : result.failed.length ? EXIT.problems : EXIT.ok };
}
