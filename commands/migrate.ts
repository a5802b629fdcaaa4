import { Command } from 'commander';
import { migrate, migrateEligibleSql, migrateMinBytes, type MigrateOptions } from '../src/ops/migrate.ts';
import { planMigrate } from '../src/ops/plan.ts';
import { assertSchemaReady } from '../src/ops/schema.ts';
import { confirmWrite } from './support/confirm.ts';
import { addPacingOptions, addPriceOptions, addWalkOptions, makeOutput, openContext, pricesFrom, runOptionsFrom, type GlobalOptions, type Runtime } from './support/context.ts';
import { progressReporter } from './support/progress.ts';
import { expectedStages, renderPlan, renderRunTables } from './support/render.ts';
import { formatBytes, formatCount, formatDuration } from './support/format.ts';
import * as parse from './support/parse.ts';
import type { CommandResult } from './support/command.ts';
import { EXIT } from './support/exit.ts';

export function migrateCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  const command = new Command('migrate')
    .description('Upload eligible contents (files, version snapshots, version file contents) to R2, verify each upload, and mark rows hybrid. Never clears database content. Re-running resumes.')
    .option('--dry-run', 'print the plan (rows, bytes, requests, cost) and change nothing')
    .option('--largest-first', 'take the largest contents first (biggest savings soonest)')
    .option('--min-size <size>', 'only contents at least this large (never below --hybrid-threshold)', parse.byteSize());
  addWalkOptions(command);
  addPacingOptions(command);
  addPriceOptions(command);
  return command
    .addHelpText(
      'after',
      '\nExamples:\n  $ overskill-storage migrate --dry-run\n  $ overskill-storage migrate --rollout 10 --yes\n  $ overskill-storage migrate --app 42 --largest-first --concurrency 32\n  $ overskill-storage migrate --shard 0/4 --yes   # one of four processes',
    )
    .action(async (opts, cmd: Command) =>
      run(async () => {
        const globals = cmd.optsWithGlobals() as GlobalOptions;
        const output = makeOutput(globals, runtime);
        const options: MigrateOptions = {
          ...runOptionsFrom(opts, runtime.signal),
          minSize: opts.minSize,
          order: opts.largestFirst ? 'size-desc' : 'id',
        };
        const context = await openContext(globals, runtime, { store: !opts.dryRun, poolSize: Math.min(options.concurrency, 8) + 2 });
        try {
          await assertSchemaReady(context.db);
          const minBytes = migrateMinBytes(options);
          const plan = await planMigrate(
            context.db,
            { tables: options.tables, filter: options.filter, limit: options.limit, order: options.order, policy: options.policy, inlineMaxBytes: options.inlineMaxBytes, prices: pricesFrom(opts) },
            (table) => (params) => migrateEligibleSql(table, minBytes, params),
            minBytes,
          );
          renderPlan(output, plan, opts.dryRun ? 'Migration plan (dry run: nothing will change)' : 'Migration plan');
          if (opts.dryRun) {
            output.result({ dryRun: true, plan });
            return { exitCode: EXIT.ok };
          }
          if (plan.rows === 0) {
            output.print(output.color.green('Nothing to migrate: every eligible content is already in R2.'));
            output.result({ dryRun: false, plan, result: null });
            return { exitCode: EXIT.ok };
          }
          await confirmWrite(output, `Upload ${formatCount(plan.rows)} contents (${formatBytes(plan.bytes)}) to bucket "${context.store.bucket}" and mark them hybrid?`, {
            yes: globals.yes ?? false,
          });
          const started = Date.now();
          const progress = progressReporter(output, expectedStages(plan, 'migrate'));
          const result = await migrate(context, options, progress);
          progress.stop();
          renderRunTables(output, result.tables, 'now hybrid');
          const seconds = (Date.now() - started) / 1000;
          output.print(
            `\n${result.interrupted ? output.color.yellow('Interrupted') : output.color.green('Done')}: ${formatCount(result.uploaded)} rows now hybrid, ${formatBytes(result.uploadedBytes)} uploaded in ${formatDuration(Date.now() - started)} (${formatCount(result.uploaded / Math.max(seconds, 0.001))} rows/s).`,
          );
          if (result.problems) output.print(output.color.yellow(`${formatCount(result.problems)} row(s) were not migrated; see above. Rerun to retry the failures.`));
          output.result({ dryRun: false, plan, result });
          return { exitCode: result.interrupted ? EXIT.interrupted : result.problems ? EXIT.problems : EXIT.ok };
        } finally {
          await context.close();
        }
      }),
    );
}
