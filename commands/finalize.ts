import { Command } from 'commander';
import { addPacingOptions, addPriceOptions, addWalkOptions, makeOutput, openContext, pricesFrom, runOptionsFrom, type GlobalOptions, type Runtime } from './support/input/context.ts';
import { planConfirmRun, scopedTarget } from './support/flow/write-flow.ts';
import { addConflictOption, recordFor } from './support/flow/run-record.ts';
import { formatBytes, formatCount, plural } from './support/render/format.ts';
import type { CommandResult } from './support/flow/command.ts';
import { withStore } from '../src/context.ts';

export function finalizeCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  const command = new Command('finalize')
    .option('--dry-run', 'print what would be cleared and the bytes freed; change nothing')
    .option('--hybrid-band', "Phase 3's end: also clear the hybrid band (contents from the hybrid threshold up), ending the plan's transition safety; after the app has read from R2 for a while and verify is clean");
  addWalkOptions(command);
  addPacingOptions(command);
  addPriceOptions(command);
  addConflictOption(command);
  return command
    .addHelpText('after', '\nExamples:\n  $ overskill-storage finalize --dry-run\n  $ overskill-storage finalize --rollout 10 --yes\n  $ overskill-storage finalize --app 42 --r2-threshold 50KiB')
    .action(async (opts, cmd: Command) =>
      run(async () => {
        const [{ finalize, planFinalization }, { prepareWalk }] = await Promise.all([import('../src/ops/finalize.ts'), import('../src/ops/prepare-walk.ts')]);
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const output = makeOutput(globals, runtime);
        const flags = runOptionsFrom(opts, runtime.signal, runtime.streams.env);
        // The band is every content R2 holds a copy of: from the hybrid threshold up (r2Above is exclusive).
        const walk = opts.hybridBand ? { ...flags, policy: { ...flags.policy, r2Above: flags.policy.hybridMin - 1 } } : flags;
        const context = await openContext(globals, runtime, { store: !opts.dryRun, concurrency: walk.concurrency, database: opts.dryRun ? 'read' : 'write' });
        try {
          const options = await prepareWalk(context.db, walk);
          const record = recordFor(runtime, globals, opts, options);
          if (!opts.dryRun) await (await import('../src/runs/open-run.ts')).refuseConflicts(context.db, record, (sentence) => output.warn(sentence));
          // Before the plan and its question: a lifecycle rule that expires the tool's keys refuses finalize.
          if (!opts.dryRun) await (await import('../src/ops/store-gate.ts')).assertLifecycleKeepsObjects(withStore(context).store);
          const plan = await planFinalization(context.db, options, pricesFrom(opts), opts.hybridBand ?? false);
          return await planConfirmRun({
            output,
            plan,
            target: await scopedTarget(context, options),
            title: opts.hybridBand ? "Finalize plan: the hybrid band (the end of Phase 3's transition safety)" : 'Finalize plan',
            dryRun: opts.dryRun ?? false,
            yes: globals.yes ?? false,
            nothingToDo: 'Nothing to finalize.',
            question: (p, target) => `Clear the database content of ${plural(p.rows, 'row')} (${formatBytes(p.databaseBytesFreed)}) of ${target.scope} in database ${target.database}, after verifying each copy in bucket ${target.bucket}?`,
            stage: 'finalize',
            verb: 'now r2',
            run: (reporter) => finalize(withStore(context), { ...options, record: { ...record, eligible: { rows: plan.rows, bytes: plan.bytes } } }, reporter),
            summary: (result) =>
              result.cleared
                ? [
                    `Database content freed: ${formatBytes(result.bytesFreed)} on disk (${formatBytes(result.contentBytesFreed)} of content). PostgreSQL reuses this space after a VACUUM; it was not run. To reclaim it:`,
                    ...result.vacuumCommands.map((sql) => `  ${sql}`),
                    'To return it to the operating system with the app live: `overskill-storage reclaim --dry-run`, then `reclaim --yes` (pg_repack; docs/after-the-migration.md).',
                  ]
                : [],
          });
        } finally {
          await context.close();
        }
      }),
    );
}
