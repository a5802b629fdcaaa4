import { Command } from 'commander';
import type { RollbackOptions } from '../src/ops/rollback.ts';
import { addPacingOptions, addPriceOptions, addWalkOptions, makeOutput, openContext, pricesFrom, runOptionsFrom, type GlobalOptions, type Runtime } from './support/input/context.ts';
import { planConfirmRun, scopedTarget } from './support/flow/write-flow.ts';
import { gateStore } from './support/flow/store-gate.ts';
import { addConflictOption, recordFor } from './support/flow/run-record.ts';
import { formatCount, plural } from './support/render/format.ts';
import type { CommandResult } from './support/flow/command.ts';

export function rollbackCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  const command = new Command('rollback')
    .option('--dry-run', 'print what would be restored; change nothing')
    .option('--keep-hybrid', 'stop at hybrid: content back in the database, objects kept')
    .option('--purge', 'then delete the objects of rows that were rolled back (never one a row still names)');
  addWalkOptions(command);
  addPacingOptions(command);
  addPriceOptions(command);
  addConflictOption(command);
  return command
    .addHelpText('after', '\nExamples:\n  $ overskill-storage rollback --app 42 --dry-run\n  $ overskill-storage rollback --keep-hybrid --yes\n  $ overskill-storage rollback --purge --yes')
    .action(async (opts, cmd: Command) =>
      run(async () => {
        const [{ rollback }, { planRollback }, { assertSchemaReady }] = await Promise.all([import('../src/ops/rollback.ts'), import('../src/ops/plan.ts'), import('../src/ops/schema.ts')]);
        const globals = cmd.optsWithGlobals() as GlobalOptions;
        const output = makeOutput(globals, runtime);
        const options: RollbackOptions = { ...runOptionsFrom(opts, runtime.signal, runtime.streams.env), keepHybrid: opts.keepHybrid ?? false, purge: opts.purge ?? false };
        const context = await openContext(globals, runtime, { store: !opts.dryRun, concurrency: options.concurrency, database: opts.dryRun ? 'read' : 'write' });
        try {
          // A probe that cannot say a number refuses here, in dry runs too, so CI catches it before a real run.
          await (await import('../src/db-load.ts')).assertDbLoadProbe(context.db, options.dbLoad);
          await assertSchemaReady(context.db);
          await (await import('../src/ops/scope.ts')).assertScopeSelects(context.db, options.filter);
          const record = recordFor(runtime, globals, opts, options, { identityExtra: { keepHybrid: options.keepHybrid, purge: options.purge } });
          if (!opts.dryRun) await (await import('../src/runs/open-run.ts')).refuseConflicts(context.db, record);
          const plan = await planRollback(
            context.db,
            { tables: options.tables, filter: options.filter, limit: options.limit, policy: options.policy, inlineMaxBytes: options.inlineMaxBytes, prices: pricesFrom(opts) },
            options.keepHybrid,
            options.purge,
          );
          if (options.purge && !options.keepHybrid) plan.notes.push((await import('../src/ops/store-gate.ts')).storeCheckNote(opts.dryRun ?? false));
          return await planConfirmRun({
            output,
            plan,
            target: await scopedTarget(context, options),
            title: 'Rollback plan',
            // --purge deletes objects through tombstones written with If-Match: the store must honour it.
            beforeRun: options.purge && !options.keepHybrid ? async () => void (record.storeCheck = await gateStore(context, output, globals)) : undefined,
            dryRun: opts.dryRun ?? false,
            yes: globals.yes ?? false,
            nothingToDo: 'Nothing to roll back: every content is in the database.',
            question: (p, target) =>
              `Roll back ${plural(p.rows, 'row')} of ${target.scope} to ${options.keepHybrid ? 'hybrid' : 'the database'} in database ${target.database}${options.purge && !options.keepHybrid ? `, and delete their objects from bucket ${target.bucket}` : ''}?`,
            stage: 'rollback',
            verb: options.keepHybrid ? 'back in the database (hybrid)' : 'back in the database',
            run: (reporter) =>
              rollback(
                context,
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
