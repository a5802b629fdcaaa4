import { DEFAULT_WALK } from '../src/ops/options.ts';
import { Command, Option } from 'commander';
import { makeOutput, openContext, type GlobalOptions, type Runtime } from './support/input/context.ts';
import { confirmWrite } from './support/input/confirm.ts';
import { gateStore } from './support/flow/store-gate.ts';
import { withProgress } from './support/render/progress.ts';
import { formatBytes, formatCount, formatDuration, plural } from './support/render/format.ts';
import * as parse from './support/input/parse.ts';
import type { CommandResult } from './support/flow/command.ts';
import { EXIT } from './support/flow/exit.ts';
import { appendStepSummary } from './support/render/step-summary.ts';
import { recordFor } from './support/flow/run-record.ts';
import { planNoteText } from './support/render/plan-notes.ts';

export function cleanupCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  return new Command('cleanup')
    .option('--dry-run', 'only list the orphans (count, bytes, a sample of keys)')
    .addOption(new Option('--grace <duration>', 'leave objects younger than this alone (an upload racing its flip is not an orphan)').argParser(parse.duration).default(24 * 3_600_000, '24h'))
    .option('--quarantine <prefix>', 'move orphans under this prefix (copy, verify, delete) instead of deleting them')
    .option('--app <id>', 'only this app (repeatable)', parse.collectIds)
    .option('--concurrency <n>', 'requests in flight when quarantining', parse.integer({ min: 1, max: 1024 }), DEFAULT_WALK.concurrency)
    .addHelpText('after', '\nExamples:\n  $ overskill-storage cleanup\n  $ overskill-storage cleanup --grace 72h --yes\n  $ overskill-storage cleanup --quarantine quarantine/2026-11 --yes')
    .action(async (opts, cmd: Command) =>
      run(async () => {
        const { cleanup, validateQuarantinePrefix } = await import('../src/ops/cleanup.ts');
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const output = makeOutput(globals, runtime);
        if (opts.quarantine) validateQuarantinePrefix(opts.quarantine);
        const context = await openContext(globals, runtime, { store: true, database: opts.dryRun ? 'read' : 'write' });
        try {
          const base = { appIds: opts.app, graceMs: opts.grace, quarantinePrefix: opts.quarantine, concurrency: opts.concurrency, signal: runtime.signal };
          const listing = await withProgress(output, (progress) => cleanup(context, { ...base, apply: false }, progress));
          const c = output.color;
          output.print(c.bold(`Orphaned objects older than ${formatDuration(opts.grace)}: ${formatCount(listing.orphans)} (${formatBytes(listing.orphanBytes)})`));
          for (const item of listing.sample) output.print(`  ${item.key}  ${formatBytes(item.size)}  ${item.lastModified ?? ''}`);
          if (listing.orphans > listing.sample.length) output.print(`  … and ${formatCount(listing.orphans - listing.sample.length)} more`);
          if (listing.tooYoung) output.print(c.dim(`${plural(listing.tooYoung, 'unreferenced object')} ${listing.tooYoung === 1 ? 'is' : 'are'} inside the grace period and are left alone.`));
          const staleUploads = listing.uploads.found - listing.uploads.tooYoung;
          if (listing.uploads.unknown) output.print(c.dim(`Incomplete multipart uploads: not listed (${listing.uploads.unknown}).`));
          else if (listing.uploads.found) output.print(`Incomplete multipart uploads under apps/: ${formatCount(listing.uploads.found)}, ${formatCount(staleUploads)} older than ${formatDuration(opts.grace)} (billed until aborted; R2 aborts them itself only after 7 days).`);
          const wantsWrite = !opts.dryRun && (listing.orphans > 0 || staleUploads > 0) && (globals.yes || runtime.streams.stdin.isTTY);
          if (!wantsWrite) {
            appendStepSummary(
              runtime.streams.env,
              `### overskill-storage: cleanup (dry run)\n\n${plural(listing.orphans, 'orphaned object')} older than the grace period (${formatBytes(listing.orphanBytes)}); ${formatCount(listing.tooYoung)} inside it.`,
            );
            if ((listing.orphans > 0 || staleUploads > 0) && !opts.dryRun) output.print(c.dim('Nothing deleted: pass --yes to delete them.'));
            if (listing.orphans > 0) output.print(c.dim(planNoteText((await import('../src/ops/store-gate.ts')).storeCheckNote(true))));
            output.result({ dryRun: true, listing });
            return { exitCode: listing.interrupted ? EXIT.interrupted : EXIT.ok };
          }
          output.print(`${c.dim('Database:')} ${context.target.database}\n${c.dim('Bucket:  ')} ${context.target.bucket}`);
          await confirmWrite(output, `${opts.quarantine ? `Move ${plural(listing.orphans, 'orphaned object')} under ${opts.quarantine}/` : `Delete ${plural(listing.orphans, 'orphaned object')}`} (${formatBytes(listing.orphanBytes)}${opts.app ? `, apps ${opts.app.join(', ')}` : ''})${staleUploads ? ` and abort ${plural(staleUploads, 'incomplete upload')}` : ''} in bucket ${context.target.bucket}?`, {
            yes: globals.yes ?? false,
          });
          const storeCheck = await gateStore(context, output, globals);
          const [{ withRecordedRun }, { objectItem }] = await Promise.all([import('../src/runs/recorded.ts'), import('../src/sql/run-items.ts')]);
          const recorded = await withRecordedRun(
            context,
            { ...recordFor(runtime, globals, opts, { tables: [], filter: { appIds: opts.app } }, { pausable: false }), storeCheck },
            () => withProgress(output, (progress) => cleanup(context, { ...base, apply: true }, progress)),
            (done) => ({
              rows: done.deleted + done.quarantined,
              bytes: 0,
              // Every object not deleted is an item of the run (`report --items`): failures as failed, choices as refused.
              items: [...done.failed.map((f) => objectItem(f.key, 'failed', f.reason)), ...done.refused.map((r) => objectItem(r.key, 'refused', r.reason))],
              interrupted: done.interrupted,
            }),
          );
          const result = { ...recorded.result, run: recorded.run };
          output.print(
            c.green(`${opts.quarantine ? `Quarantined ${plural(result.quarantined, 'orphaned object')}` : `Deleted ${plural(result.deleted, 'orphaned object')}`}.`),
          );
          if (result.refused.length) output.print(c.dim(`${plural(result.refused.length, 'object')} left in place on purpose (not written by this tool, or rewritten since they were listed):`));
          if (result.failed.length) output.print(c.red(`${plural(result.failed.length, 'object')} could not be deleted: the store failed the request (run cleanup again):`));
          for (const refusal of result.refused.slice(0, 20)) output.print(c.dim(`  ${refusal.key}: ${refusal.reason}`));
          if (result.uploads.aborted) output.print(c.green(`Aborted ${plural(result.uploads.aborted, 'incomplete multipart upload')}.`));
          for (const failure of result.uploads.failed.slice(0, 20)) output.print(c.yellow(`  upload of ${failure.key}: ${failure.reason}`));
          if (result.restored) output.print(c.yellow(`${plural(result.restored, 'object')} put back from database content: a row started naming them while they were deleted.`));
          if (result.deleteWindow.count) output.print(c.dim(`Tombstone-to-delete time per object: p50 ${result.deleteWindow.p50Ms} ms, max ${result.deleteWindow.maxMs} ms (R2 refuses other writes to a key for a second after ours).`));
          for (const failure of result.failed.slice(0, 50)) output.print(c.yellow(`  ${failure.key}: ${failure.reason}`));
          output.result({ dryRun: false, listing, result });
          return { exitCode: result.interrupted ? EXIT.interrupted : result.failed.length || result.uploads.failed.length ? EXIT.problems : EXIT.ok };
        } finally {
          await context.close();
        }
      }),
    );
}
