import { DEFAULT_WALK } from '../src/ops/options.ts';
import { Command, Option } from 'commander';
import { addPriceOptions, makeOutput, openContext, policyFrom, pricesFrom, thresholdOptions, type GlobalOptions, type Runtime } from './support/input/context.ts';
import { confirmWrite } from './support/input/confirm.ts';
import { gateStore } from './support/flow/store-gate.ts';
import { withProgress } from './support/render/progress.ts';
import { formatBytes, formatCount, formatDuration, plural } from './support/render/format.ts';
import * as parse from './support/input/parse.ts';
import type { CommandResult } from './support/flow/command.ts';
import { EXIT } from './support/flow/exit.ts';
import { recordFor } from './support/flow/run-record.ts';
import { TABLE_NAMES, TABLES } from '../src/tables.ts';
import { describeLifecycle } from '../src/store/lifecycle.ts';

export function maintainCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  const command = new Command('maintain')
    .option('--dry-run', 'check and list only: delete nothing, record nothing')
    .addOption(new Option('--grace <duration>', "orphans younger than this are left alone (cleanup's grace period)").argParser(parse.duration).default(24 * 3_600_000, '24h'))
    .option('--quarantine <prefix>', 'move orphans under this prefix instead of deleting them')
    .addOption(new Option('--deep-sample <percent>', 'percent of stored rows downloaded and hashed each run; the sample moves every day').argParser(parse.percent()).default(3))
    .option('--concurrency <n>', 'S3 requests in flight', parse.integer({ min: 1, max: 1024 }), DEFAULT_WALK.concurrency)
    .option('--textfile <path>', "also write the figures in Prometheus text format (node_exporter's textfile collector), atomically")
    .addOption(thresholdOptions()[0])
    .addOption(thresholdOptions()[1]);
  addPriceOptions(command);
  return command
    .addHelpText('after', '\nExamples:\n  $ overskill-storage maintain --dry-run\n  $ overskill-storage maintain --yes --log-format json --textfile /var/lib/node_exporter/overskill_storage.prom\n  # crontab: 0 2 * * * overskill-storage maintain --yes --quiet')
    .action(async (opts, cmd: Command) =>
      run(async () => {
        const [{ maintain }, { validateQuarantinePrefix }] = await Promise.all([import('../src/ops/maintain.ts'), import('../src/ops/cleanup.ts')]);
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const output = makeOutput(globals, runtime);
        if (opts.quarantine) validateQuarantinePrefix(opts.quarantine);
        const tables = TABLE_NAMES.map((name) => TABLES[name]);
        const context = await openContext(globals, runtime, { store: true, concurrency: opts.concurrency, database: opts.dryRun ? 'read' : 'write' });
        const started = Date.now();
        try {
          const c = output.color;
          output.print(c.bold(`maintain${opts.dryRun ? ' (dry run: nothing will change)' : ''}`));
          output.print(`${c.dim('Database:')} ${context.target.database}\n${c.dim('Bucket:  ')} ${context.target.bucket}`);
          output.print(`  verify every stored row by listings; download and hash ${opts.deepSample}% of them (today's window)`);
          output.print(`  ${opts.dryRun ? 'list' : opts.quarantine ? `move under ${opts.quarantine}/` : 'delete'} our orphaned objects older than ${formatDuration(opts.grace)}`);
          if (!opts.dryRun) output.print('  record the run and keep today\'s report figures');
          let storeCheck: Record<string, unknown> | undefined;
          if (!opts.dryRun) {
            await confirmWrite(output, `Run the maintenance on database ${context.target.database} and bucket ${context.target.bucket} (deletes orphaned objects of ours)?`, { yes: globals.yes ?? false });
            storeCheck = await gateStore(context, output, globals);
          }
          const result = await withProgress(output, (progress) => maintain(
            context,
            {
              tables,
              policy: policyFrom(opts),
              prices: pricesFrom(opts),
              graceMs: opts.grace,
              quarantinePrefix: opts.quarantine,
              deepSamplePercent: opts.deepSample,
              concurrency: opts.concurrency,
              record: opts.dryRun ? undefined : { ...recordFor(runtime, globals, opts, { tables, filter: {} }, { pausable: false }), storeCheck },
              signal: runtime.signal,
            },
            progress,
          ));
          if (result.repairedAppWrites) output.print(c.yellow(`Put back ${formatCount(result.repairedAppWrites)} app write${result.repairedAppWrites === 1 ? '' : 's'} a stale save had left unreadable (docs/the-app.md).`));
          if (result.hashesSettled) output.print(`Recorded the content's own hash on ${formatCount(result.hashesSettled)} database-only row${result.hashesSettled === 1 ? '' : 's'} rewritten without it.`);
          const checked = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);
          output.print(`Verified ${formatCount(checked(result.verify.checked))} stored rows by listings; hashed ${formatCount(checked(result.deepSample.checked))} (window ${result.deepSample.window % result.deepSample.daysPerCycle + 1} of ${result.deepSample.daysPerCycle}).`);
          output.print(
            `Orphans past the grace period: ${formatCount(result.cleanup.orphans)} (${formatBytes(result.cleanup.orphanBytes)})${result.applied ? `, ${formatCount(result.cleanup.deleted + result.cleanup.quarantined)} removed` : ', listed only'}; ${formatCount(result.cleanup.tooYoung)} inside it.`,
          );
          if (result.lifecycle.state !== 'none') output.print((result.lifecycle.expiring.length ? c.red : c.dim)(`Bucket lifecycle: ${describeLifecycle(result.lifecycle)}.`));
          const s = result.snapshot;
          output.print(`Content: ${formatBytes(s.bytesByLocation.database)} database only, ${formatBytes(s.bytesByLocation.hybrid)} hybrid, ${formatBytes(s.bytesByLocation.r2)} in R2 only; the database's ${formatBytes(s.databaseContentBytes)} take ${formatBytes(s.databaseStoredBytes ?? s.databaseContentBytes)} on disk, the tables ${formatBytes(s.databaseDiskBytes)}; $${s.monthlyCost.total.toFixed(2)}/month.`);
          if (result.run) output.print(c.dim(`Run ${result.run.id}: ${result.run.state ?? ''}. The report draws this day in its history.`));
          for (const problem of result.problems.slice(0, 200)) output.print(c.red(`  ✗ ${problem}`));
          // A log pipeline gets every problem, and the outcome, as its own line.
          if (output.logFormat === 'json') {
            for (const problem of result.problems) output.error(problem);
            output.log(`maintain: ${plural(result.problems.length, 'problem')}; ${plural(result.cleanup.deleted + result.cleanup.quarantined, 'orphan')} removed${result.run ? `; run ${result.run.id}` : ''}`);
          }
          if (result.problems.length > 200) output.print(c.red(`  … and ${formatCount(result.problems.length - 200)} more`));
          output.print(result.problems.length ? c.red(`${plural(result.problems.length, 'problem')}.`) : c.green('Nothing wrong.'));
          if (opts.textfile) {
            const { writeMaintainTextfile } = await import('./support/render/metrics.ts');
            await writeMaintainTextfile(opts.textfile, result, (Date.now() - started) / 1000);
          }
          output.result({ dryRun: !result.applied, result });
          return { exitCode: result.interrupted ? EXIT.interrupted : result.problems.length ? EXIT.problems : EXIT.ok };
        } finally {
          await context.close();
        }
      }),
    );
}
