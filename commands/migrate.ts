import { Command, Option } from 'commander';
import { KEY_LAYOUTS, type KeyLayout } from '../src/key-layouts.ts';
import type { MigrateOptions } from '../src/ops/migrate.ts';
import { addPacingOptions, addPriceOptions, addWalkOptions, makeOutput, openContext, pricesFrom, runOptionsFrom, type GlobalOptions, type PacingFlags, type PriceFlags, type Runtime, type WalkFlags } from './support/input/context.ts';
import { addConflictOption, recordFor } from './support/flow/run-record.ts';
import * as parse from './support/input/parse.ts';
import type { CommandResult } from './support/flow/command.ts';
import { withStore } from '../src/context.ts';

/** migrate's flags, as commander parses them. */
interface MigrateFlags extends WalkFlags, PacingFlags, PriceFlags {
  dryRun?: boolean;
  largestFirst?: boolean;
  refreshStale?: boolean;
  minSize?: number;
  compress?: 'gzip';
  retryFailed?: string;
  keyLayout: KeyLayout;
  force?: boolean;
}

export function migrateCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  const command = new Command('migrate')
    .option('--dry-run', 'print the plan (rows, bytes, requests, cost) and change nothing')
    .option('--largest-first', 'take the largest contents first (biggest savings soonest)')
    .option('--refresh-stale', 'also re-upload hybrid rows whose database content changed after upload (hashes every hybrid content)')
    .option('--min-size <size>', 'only contents at least this large (never below --hybrid-threshold)', parse.byteSize())
    .addOption(new Option('--compress <encoding>', 'store contents gzip-compressed where that saves at least 10% (the metadata records it; every reader decodes)').choices(['gzip']))
    .option('--retry-failed <run>', 'only the items run RUN failed or refused (see `report --runs --items RUN`)', parse.id)
    .addOption(
      new Option('--key-layout <layout>', "path: the plan's keys; content-addressed: apps/{app}/blobs/{sha256}, identical contents share one object (needs `schema --apply --key-layout content-addressed`)")
        .choices(KEY_LAYOUTS)
        .default('path'),
    );
  addWalkOptions(command);
  addPacingOptions(command);
  addPriceOptions(command);
  addConflictOption(command);
  return command
    .addHelpText(
      'after',
      '\nExamples:\n  $ overskill-storage migrate --dry-run\n  $ overskill-storage migrate --rollout 10 --yes\n  $ overskill-storage migrate --app 42 --largest-first --concurrency 32\n  $ overskill-storage migrate --shard 0/4 --yes   # one of four processes',
    )
    .action(async (opts: MigrateFlags, cmd: Command) =>
      run(async () => {
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const output = makeOutput(globals, runtime);
        const options: MigrateOptions = {
          ...runOptionsFrom(opts, runtime.signal, runtime.streams.env),
          minSize: opts.minSize,
          order: opts.largestFirst ? 'size-desc' : 'id',
          keyLayout: opts.keyLayout,
          refreshStale: opts.refreshStale ?? false,
          compress: opts.compress,
        };
        // What only a run needs loads when it runs: `migrate --help` starts without the plan, prompt and progress modules.
        const [{ migrate, prepareMigrate, planMigration }, { refuseConflicts }, { planConfirmRun, scopedTarget }, { gateStore }, { formatBytes, formatCount, plural }] = await Promise.all([
          import('../src/ops/migrate.ts'),
          import('../src/runs/open-run.ts'),
          import('./support/flow/write-flow.ts'),
          import('./support/flow/store-gate.ts'),
          import('./support/render/format.ts'),
        ]);
        const context = await openContext(globals, runtime, { store: !opts.dryRun, concurrency: options.concurrency, database: opts.dryRun ? 'read' : 'write' });
        try {
          const prepared = await prepareMigrate(context.db, options, opts.retryFailed);
          if (prepared.retrying) output.info(`Retrying the ${plural(prepared.retrying.items, 'item')} run ${prepared.retrying.runId} failed or refused.`);
          const record = recordFor(runtime, globals, opts, prepared.options, {
            keyLayout: prepared.options.keyLayout ?? 'path',
            identityExtra: { refreshStale: prepared.options.refreshStale, minSize: opts.minSize, order: prepared.options.order },
            retryOf: opts.retryFailed,
          });
          if (!opts.dryRun) await refuseConflicts(context.db, record, (sentence) => output.warn(sentence));
          const plan = await planMigration(context.db, prepared, pricesFrom(opts), opts.dryRun ?? false);
          return await planConfirmRun({
            output,
            plan,
            target: await scopedTarget(context, prepared.options),
            title: 'Migration plan',
            beforeRun: async () => {
              record.storeCheck = await gateStore(withStore(context), output, globals, { keepsObjects: true });
            },
            dryRun: opts.dryRun ?? false,
            yes: globals.yes ?? false,
            nothingToDo: 'Nothing to migrate: every eligible content is already in R2.',
            question: (p, target) => `Upload ${plural(p.rows, 'content')} (${formatBytes(p.bytes)}) of ${target.scope} to bucket ${target.bucket}, and mark them hybrid in database ${target.database}?`,
            stage: 'migrate',
            verb: 'now hybrid',
            run: (reporter) =>
              migrate(
                withStore(context),
                {
                  ...prepared.options,
                  record: { ...record, eligible: { rows: plan.rows, bytes: plan.bytes } },
                },
                reporter,
              ),
            summary: (result) => [
              `Uploaded ${formatBytes(result.uploadedBytes)}.${result.interrupted || result.cancelled ? '' : ' Next: `overskill-storage verify`, then `report`.'}`,
              ...(result.compression
                ? [`Compressed: ${plural(result.compression.objects, 'object')}, ${formatBytes(result.compression.contentBytes)} stored as ${formatBytes(result.compression.storedBytes)} (${formatBytes(result.compression.contentBytes - result.compression.storedBytes)} saved).`]
                : []),
              ...(result.remaining
                ? [
                    result.interrupted || result.cancelled
                      ? `${plural(result.remaining, 'eligible row')} not reached before the stop ${result.remaining === 1 ? 'is' : 'are'} still in the database only.`
                      : `${plural(result.remaining, 'eligible row')} ${result.remaining === 1 ? 'is' : 'are'} still in the database only (refused or failed above, changed by the app, locked by a transaction, or another worker's): rerun to pick them up.`,
                  ]
                : []),
            ],
          });
        } finally {
          await context.close();
        }
      }),
    );
}
