import { DEFAULT_WALK } from '../src/ops/options.ts';
import { Command, Option } from 'commander';
import { makeOutput, openContext, type GlobalOptions, type Runtime } from './support/input/context.ts';
import { confirmWrite } from './support/input/confirm.ts';
import { gateStore } from './support/flow/store-gate.ts';
import { withProgress } from './support/render/progress.ts';
import { formatBytes, formatCount, formatDuration, formatMoney, plural } from './support/render/format.ts';
import * as parse from './support/input/parse.ts';
import type { CommandResult } from './support/flow/command.ts';
import { EXIT } from './support/flow/exit.ts';
import { recordFor } from './support/flow/run-record.ts';
import { UsageError } from '../src/errors.ts';
import { TABLES } from '../src/tables.ts';
import { withStore } from '../src/context.ts';

/** prune-versions' flags, as commander parses them. */
interface PruneFlags {
  keepLast?: number;
  keepWithin?: number;
  app?: string[];
  quarantine?: string;
  concurrency: number;
  dryRun?: boolean;
  limitListed: number;
}

export function pruneVersionsCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  return new Command('prune-versions')
    .option('--keep-last <n>', "keep each app's N newest versions, whatever their age", parse.integer({ min: 1 }))
    .option('--keep-within <duration>', 'keep every version younger than this, e.g. 90d', parse.duration)
    .option('--app <id>', 'only this app (repeatable)', parse.collectIds)
    .option('--quarantine <prefix>', 'move the objects under this prefix (copy, verify, delete) instead of deleting them')
    .option('--concurrency <n>', 'object deletes in flight', parse.integer({ min: 1, max: 1024 }), DEFAULT_WALK.concurrency)
    .option('--dry-run', 'print the plan and change nothing')
    .addOption(new Option('--limit-listed <n>', 'versions held back listed at most').argParser(parse.integer({ min: 0 })).default(50).hideHelp())
    .addHelpText('after', '\nExamples:\n  $ overskill-storage prune-versions --keep-last 20 --keep-within 90d --dry-run\n  $ overskill-storage prune-versions --keep-last 20 --keep-within 90d --yes\n  $ overskill-storage prune-versions --keep-last 5 --app 42 --quarantine quarantine/2026-12 --yes')
    .action(async (opts: PruneFlags, cmd: Command) =>
      run(async () => {
        const [{ preparePrune, prune }, { validateQuarantinePrefix }] = await Promise.all([import('../src/ops/prune-versions.ts'), import('../src/ops/cleanup.ts')]);
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const output = makeOutput(globals, runtime);
        if (opts.keepLast === undefined && opts.keepWithin === undefined) throw new UsageError('Say what to keep: --keep-last N, --keep-within DURATION, or both (a version goes only when both allow it).');
        if (opts.quarantine) validateQuarantinePrefix(opts.quarantine);
        const options = {
          policy: { keepLast: opts.keepLast ?? 1, keepWithinMs: opts.keepWithin ?? 0 },
          appIds: opts.app,
          quarantinePrefix: opts.quarantine,
          concurrency: opts.concurrency,
          signal: runtime.signal,
        };
        const context = await openContext(globals, runtime, { store: !opts.dryRun, concurrency: options.concurrency, database: opts.dryRun ? 'read' : 'write' });
        try {
          const prepared = await preparePrune(context, options);
          const { plan } = prepared;
          const c = output.color;
          output.print(c.bold(`prune-versions: keep the last ${plan.policy.keepLast} per app${plan.policy.keepWithinMs ? ` and everything younger than ${formatDuration(plan.policy.keepWithinMs)}` : ''}${opts.dryRun ? ' (dry run: nothing will change)' : ''}`));
          const appsWithWork = plan.apps.filter((a) => a.prune > 0);
          if (appsWithWork.length) {
            output.print(output.table(['app', 'versions', 'go', 'stay'], appsWithWork.slice(0, 50).map((a) => [a.appId, formatCount(a.versions), formatCount(a.prune), formatCount(a.versions - a.prune)])));
            if (appsWithWork.length > 50) output.print(c.dim(`  … and ${formatCount(appsWithWork.length - 50)} more apps`));
          }
          output.print(
            `${formatCount(plan.prune)} of ${plural(plan.versions, 'version')} ${plan.prune === 1 ? 'goes' : 'go'}, with ${plural(plan.versionFiles, 'version-file row')}: ${formatBytes(plan.dbBytes)} of database content, ${plural(plan.objects, 'R2 object')} (${formatBytes(plan.r2Bytes)}).`,
          );
          output.print(
            c.dim(
              `Requests: ${formatCount(plan.requests.classA)} class A, ${formatCount(plan.requests.classB)} class B, ${formatCount(plan.requests.free)} free (each object's guarded delete${options.quarantinePrefix ? ', after its quarantine copy' : ''}): ${formatMoney(plan.cost.requests)}; R2 storage saved ${formatMoney(plan.cost.storageSavedPerMonth)}/month.`,
            ),
          );
          for (const held of plan.heldBack.slice(0, opts.limitListed)) {
            output.print(c.yellow(`  kept: app ${held.appId} version ${held.versionNumber} (#${held.id}): ${held.reason === 'referenced' ? `referenced by ${held.referencedBy?.join(', ')}` : 'a kept version without a snapshot is restored by replaying it'}`));
          }
          if (plan.heldBack.length > opts.limitListed) output.print(c.yellow(`  … and ${formatCount(plan.heldBack.length - opts.limitListed)} more kept for those reasons`));
          if (opts.dryRun || plan.prune === 0) {
            if (plan.prune === 0) output.print(c.green('Nothing to prune.'));
            output.result({ dryRun: Boolean(opts.dryRun), plan, result: null });
            return { exitCode: EXIT.ok };
          }
          output.print(`${c.dim('Database:')} ${context.target.database}${plan.objects ? `\n${c.dim('Bucket:  ')} ${context.target.bucket}` : ''}`);
          await confirmWrite(
            output,
            `Delete ${plural(plan.prune, 'version')} of ${plural(plan.apps.filter((a) => a.prune > 0).length, 'app')} (${formatBytes(plan.dbBytes)} in database ${context.target.database}${plan.objects ? `, ${plural(plan.objects, 'object')} in bucket ${context.target.bucket}` : ''})?`,
            { yes: globals.yes ?? false },
          );
          const storeCheck = plan.objects ? await gateStore(withStore(context), output, globals) : undefined;
          const record = { ...recordFor(runtime, globals, opts, { tables: [TABLES.snapshots, TABLES['version-files']], filter: { appIds: options.appIds } }, { pausable: false }), storeCheck };
          const result = await withProgress(output, (progress) => prune(withStore(context), prepared, { ...options, record }, progress));
          output.print(c.green(`Deleted ${plural(result.versionsDeleted, 'version')} and ${plural(result.versionFilesDeleted, 'version-file row')} in ${plural(result.appsPruned, 'app')}; ${options.quarantinePrefix ? `moved ${plural(result.objectsQuarantined, 'object')}` : `deleted ${plural(result.objectsDeleted, 'object')}`}.`));
          for (const failed of result.failedApps) output.print(c.red(`  app ${failed.appId}: ${failed.reason}`));
          if (result.objectsRefused.length) output.print(c.dim(`${plural(result.objectsRefused.length, 'object')} left in place on purpose (not ours, rewritten, or still named by a row).`));
          for (const failed of result.objectsFailed.slice(0, 50)) output.print(c.yellow(`  ${failed.key}: ${failed.reason} (an orphan for cleanup)`));
          if (result.run) output.print(c.dim(`Run ${result.run.id}: ${result.run.state ?? ''}.`));
          output.result({ dryRun: false, plan, result });
          return { exitCode: result.interrupted ? EXIT.interrupted : result.failedApps.length || result.objectsFailed.length ? EXIT.problems : EXIT.ok };
        } finally {
          await context.close();
        }
      }),
    );
}
