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
          // Rows an earlier rollback without --purge brought back no longer name their objects: those are what
          // --purge is asked for now. They are orphans of ours, deleted as cleanup deletes them.
          if (options.purge && !options.keepHybrid && plan.rows === 0) return await purgeLeftovers(context, options, { output, globals, dryRun: opts.dryRun ?? false, record });
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
 * `rollback --purge` with nothing left to roll back: the objects of ours under the scope's apps that no row
 * names (an earlier rollback without --purge left them) are deleted now, through cleanup's guarded deletes (the
 * database asked again before each batch; a row that starts naming a key meanwhile gets its object back), after
 * the question and the store check. Only by --app: a --rollout or --shard scope is not one of the bucket's
 * prefixes, and is told to run cleanup.
 */
async function purgeLeftovers(
  context: Awaited<ReturnType<typeof openContext>>,
  options: RollbackOptions,
  flow: { output: ReturnType<typeof makeOutput>; globals: GlobalOptions; dryRun: boolean; record: ReturnType<typeof recordFor> },
): Promise<CommandResult> {
  const { output, globals } = flow;
  const c = output.color;
  const appIds = options.filter.appIds;
  const cleanupLine = `overskill-storage cleanup --grace 0s${appIds?.length ? ` --app ${appIds.join(' --app ')}` : ''} --yes`;
  if (options.filter.rolloutPercent !== undefined || options.filter.shard || options.filter.rowIds) {
    output.print(c.green('Nothing to roll back: every content is in the database.'));
    output.print(`Objects an earlier rollback left are deleted by cleanup (a --rollout or --shard scope is not a prefix of the bucket): ${cleanupLine}`);
    output.result({ dryRun: flow.dryRun, plan: null, result: null });
    return { exitCode: EXIT.ok };
  }
  if (flow.dryRun) {
    // A dry run opens no bucket: it says what the real run will do.
    output.print(c.green('Nothing to roll back: every content is in the database.'));
    output.print(`A real run deletes the objects of ours that no row names under this scope (an earlier rollback without --purge leaves them), after a question, as \`${cleanupLine}\` would.`);
    output.result({ dryRun: true, plan: null, result: null });
    return { exitCode: EXIT.ok };
  }
  const [{ cleanup }, { withRecordedRun }, { objectItem }, { listRuns }] = await Promise.all([import('../src/ops/cleanup.ts'), import('../src/runs/recorded.ts'), import('../src/sql/run-items.ts'), import('../src/sql/runs.ts')]);
  // An upload of a migrate still running may be named by no row yet, for a moment: with one live, the grace
  // period of cleanup is the safe way. With none, every object named by no row and older than this command
  // was left by a run that has ended; one a migrate starts uploading from now on is newer, and left alone.
  const migrating = await listRuns(context.db, { live: true, command: 'migrate', limit: 100 });
  if (migrating.length) {
    output.print(c.green('Nothing to roll back: every content is in the database.'));
    output.print(`A migrate is running (run ${migrating.map((run) => run.id).join(', ')}): objects no row names yet may be its uploads. Once it has ended, \`rollback --purge\` again deletes what an earlier rollback left; or \`overskill-storage cleanup\` with its grace period.`);
    output.result({ dryRun: false, plan: null, result: null });
    return { exitCode: EXIT.ok };
  }
  const base = { appIds, graceMs: 0, now: new Date(), concurrency: options.concurrency, signal: options.signal };
  const storage = withStore(context);
  const listing = await withProgress(output, (progress) => cleanup(storage, { ...base, apply: false }, progress));
  output.print(c.green('Nothing to roll back: every content is in the database.'));
  if (!listing.orphans) {
    output.result({ dryRun: false, plan: null, listing, result: null });
    return { exitCode: EXIT.ok };
  }
  output.print(`${plural(listing.orphans, 'object')} (${formatBytes(listing.orphanBytes)}) no row names any more, most likely left by an earlier rollback without --purge; only this tool's own are deleted.`);
  await confirmWrite(output, `Delete ${plural(listing.orphans, 'object')} (${formatBytes(listing.orphanBytes)}) that no row names from bucket ${context.target.bucket}?`, { yes: globals.yes ?? false });
  const storeCheck = await gateStore(storage, output, globals);
  const recorded = await withRecordedRun(
    context,
    { ...flow.record, storeCheck },
    () => withProgress(output, (progress) => cleanup(storage, { ...base, apply: true }, progress)),
    (done) => ({
      rows: done.deleted,
      bytes: 0,
      items: [...done.failed.map((f) => objectItem(f.key, 'failed', f.reason)), ...done.refused.map((r) => objectItem(r.key, 'refused', r.reason))],
      interrupted: done.interrupted,
    }),
  );
  const result = recorded.result;
  output.print(`Objects deleted: ${formatCount(result.deleted)}.`);
  for (const failure of result.failed.slice(0, 20)) output.print(c.yellow(`  not deleted: ${failure.key}: ${failure.reason}`));
  if (result.refused.length) output.print(`Objects left in place on purpose: ${formatCount(result.refused.length)} (not written by this tool, or rewritten since).`);
  output.result({ dryRun: false, plan: null, listing, result: { purged: result.deleted, purgeFailures: result.failed, purgeRefused: result.refused, run: recorded.run } });
  return { exitCode: result.interrupted ? EXIT.interrupted : result.failed.length ? EXIT.problems : EXIT.ok };
}
