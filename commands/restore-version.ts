import { Command } from 'commander';
import type { RestoreDiff } from '../src/ops/restore-version.ts';
import { thresholdOptions, makeOutput, openContext, policyFrom, type GlobalOptions, type Runtime } from './support/input/context.ts';
import { confirmWrite } from './support/input/confirm.ts';
import { gateStore } from './support/flow/store-gate.ts';
import { recordFor } from './support/flow/run-record.ts';
import { TABLES, TABLE_NAMES } from '../src/tables.ts';
import { DEFAULT_WALK } from '../src/ops/options.ts';
import { formatBytes, formatCount, plural, renderMarkdownTable } from './support/render/format.ts';
import type { Output } from './support/render/output.ts';
import * as parse from './support/input/parse.ts';
import type { CommandResult } from './support/flow/command.ts';
import { appendStepSummary } from './support/render/step-summary.ts';
import { EXIT } from './support/flow/exit.ts';
import { planNoteText } from './support/render/plan-notes.ts';

export function restoreVersionCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  return new Command('restore-version')
    .argument('<app_id>', 'the app', parse.id)
    .argument('<version>', 'version id or version_number')
    .option('--dry-run', 'show the diff only; change nothing')
    .addOption(thresholdOptions()[0])
    .addOption(thresholdOptions()[1])
    .option('--concurrency <n>', 'uploads in flight', parse.integer({ min: 1, max: 1024 }), DEFAULT_WALK.concurrency)
    .addHelpText('after', '\nExamples:\n  $ overskill-storage restore-version 42 1.4.0 --dry-run\n  $ overskill-storage restore-version 42 1873 --yes')
    .action(async (appId: string, versionSpec: string, opts, cmd: Command) =>
      run(async () => {
        const { applyRestore, prepareRestore } = await import('../src/ops/restore-version.ts');
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const output = makeOutput(globals, runtime);
        const policy = policyFrom(opts);
        const context = await openContext(globals, runtime, { store: true, database: opts.dryRun ? 'read' : 'write' });
        try {
          const prepared = await prepareRestore(context, appId, versionSpec);
          const c = output.color;
          output.print(
            c.bold(`Restore app ${appId} to version ${prepared.version.version_number} (#${prepared.version.id}), read from ${prepared.snapshotSource === 'version-files' ? 'its version history (no snapshot)' : `its snapshot in ${prepared.snapshotSource}`}`),
          );
          renderDiff(output, prepared.diff);
          const changes = prepared.diff.added.length + prepared.diff.changed.length + prepared.diff.deleted.length;
          const summary = { appId, version: prepared.version, snapshotSource: prepared.snapshotSource, diff: prepared.diff };
          if (opts.dryRun) {
            const entries = [...prepared.diff.added.map((e) => ['added', e] as const), ...prepared.diff.changed.map((e) => ['changed', e] as const), ...prepared.diff.deleted.map((e) => ['deleted', e] as const)];
            appendStepSummary(
              runtime.streams.env,
              [
                `### overskill-storage: restore app ${appId} to ${prepared.version.version_number} (dry run)`,
                '',
                entries.length ? renderMarkdownTable(['change', 'path', 'bytes now', 'bytes after'], entries.map(([kind, e]) => [kind, e.path, e.oldBytes ?? '', e.newBytes ?? ''])) : '_The app already matches this version._',
              ].join('\n'),
            );
            output.print(c.dim(planNoteText((await import('../src/ops/store-gate.ts')).storeCheckNote(true))));
            output.result({ dryRun: true, ...summary });
            return { exitCode: EXIT.ok };
          }
          if (changes === 0) {
            output.print(c.green('The app already matches this version; nothing to restore.'));
            output.result({ dryRun: false, ...summary, result: null });
            return { exitCode: EXIT.ok };
          }
          output.print(`${c.dim('Database:')} ${context.target.database}\n${c.dim('Bucket:  ')} ${context.target.bucket}`);
          await confirmWrite(
            output,
            `Restore app ${appId} to version ${prepared.version.version_number} (#${prepared.version.id}): ${plural(changes, 'file change')}, recorded as a new version "${prepared.version.version_number}-restored-<its id>" in database ${context.target.database}?`,
            { yes: globals.yes ?? false },
          );
          const storeCheck = await gateStore(context, output, globals);
          const { withRecordedRun } = await import('../src/runs/recorded.ts');
          const recorded = await withRecordedRun(
            context,
            { ...recordFor(runtime, globals, opts, { tables: TABLE_NAMES.map((name) => TABLES[name]), filter: { appIds: [appId] } }, { pausable: false }), storeCheck },
            () => applyRestore(context, prepared, policy, opts.concurrency),
            (done) => ({ rows: changes, bytes: done.uploadedBytes, items: [] }),
          );
          const result = { ...recorded.result, run: recorded.run };
          output.print(c.green(`Restored. New version ${result.newVersionNumber} (#${result.newVersionId}); ${plural(result.uploaded, 'content')} uploaded (${formatBytes(result.uploadedBytes)}).`));
          for (const kept of result.keptInDatabase) output.print(c.yellow(`  ${kept.path}: kept in the database only (${kept.reason})`));
          output.print(c.dim('Objects the app no longer names are removed by `overskill-storage cleanup` after its grace period.'));
          output.result({ dryRun: false, ...summary, result });
          return { exitCode: EXIT.ok };
        } finally {
          await context.close();
        }
      }),
    );
}

function renderDiff(output: Output, diff: RestoreDiff): void {
  const c = output.color;
  const size = (bytes?: number) => (bytes === undefined ? '?' : formatBytes(bytes));
  for (const entry of diff.added) output.print(c.green(`  + ${entry.path} (${size(entry.newBytes)})`));
  for (const entry of diff.changed) output.print(c.yellow(`  ~ ${entry.path} (${size(entry.oldBytes)} → ${size(entry.newBytes)})`));
  for (const entry of diff.deleted) output.print(c.red(`  - ${entry.path} (${size(entry.oldBytes)})`));
  output.print(`${formatCount(diff.added.length)} added, ${formatCount(diff.changed.length)} changed, ${formatCount(diff.deleted.length)} deleted, ${formatCount(diff.unchanged)} unchanged\n`);
}
