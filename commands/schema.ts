import { Command, Option } from 'commander';
import { KEY_LAYOUTS, type KeyLayout } from '../src/key-layouts.ts';
import { SchemaMissingError } from '../src/errors.ts';
import { confirmWrite } from './support/input/confirm.ts';
import { makeOutput, openContext, type GlobalOptions, type Runtime } from './support/input/context.ts';
import { recordFor } from './support/flow/run-record.ts';
import type { CommandResult } from './support/flow/command.ts';
import { formatBytes, plural } from './support/render/format.ts';

export function schemaCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  return new Command('schema')
    .option('--apply', 'add what is missing (idempotent; indexes are built CONCURRENTLY)')
    .option('--dry-run', 'print the SQL that --apply would run, change nothing')
    .addOption(new Option('--key-layout <layout>', 'path (the plan\'s unique keys) or content-addressed (identical contents share one object)').choices(KEY_LAYOUTS).default('path'))
    .addHelpText('after', '\nExamples:\n  $ overskill-storage schema\n  $ overskill-storage schema --apply --dry-run\n  $ overskill-storage schema --apply --yes\n  $ overskill-storage schema --apply --key-layout content-addressed')
    .action(async (opts: { apply?: boolean; dryRun?: boolean; keyLayout: KeyLayout }, command: Command) =>
      run(async () => {
        const { analyzeStatements, applySchema, assertSchemaApplicable, describeItem, inspectSchema, statementsFor } = await import('../src/ops/schema.ts');
        const globals = command.optsWithGlobals<GlobalOptions>();
        const output = makeOutput(globals, runtime);
        const layout = opts.keyLayout;
        const context = await openContext(globals, runtime, { store: false, ownSession: opts.apply && !opts.dryRun ? 'schema --apply (CREATE INDEX CONCURRENTLY, and ALTER TABLE with a bounded lock wait)' : undefined });
        try {
          const state = await inspectSchema(context.db, layout, { indexSizes: true });
          if (state.missingTables.length) {
            throw new SchemaMissingError(`OverSkill's tables are missing: ${state.missingTables.join(', ')}. Is DATABASE_URL the app's database?`);
          }
          const statements = statementsFor(state);
          const c = output.color;
          const document = (applied: string[], after = state) => ({
            ok: after.ok,
            layout,
            missing: after.missing.map(describeItem),
            indexesToDrop: after.indexesToDrop,
            indexesToNarrow: after.indexesToNarrow.map((index) => ({ table: index.table, name: index.name, where: index.where })),
            narrowingSkipped: after.narrowingSkipped,
            indexes: after.indexes,
            statements,
            applied,
          });
          if (!opts.apply || opts.dryRun) {
            for (const item of state.present) {
              const index = state.indexes.find((i) => i.name === item.name && item.kind === 'index');
              output.print(`${c.green('✓')} ${describeItem(item)}${index ? c.dim(` — ${formatBytes(index.bytes)}, ${index.origin === 'plan' ? "the plan's" : "this tool's"}: ${index.purpose}`) : ''}`);
            }
            for (const item of state.missing) output.print(`${c.red('✗')} ${describeItem(item)} ${c.dim(`— ${item.purpose}`)}`);
            for (const name of new Set(state.indexesToDrop)) output.print(`${c.red('✗')} index ${name} must be rebuilt (left INVALID by an interrupted build, or of the wrong kind for the ${layout} layout)`);
            for (const index of state.indexesToNarrow) {
              const bytes = state.indexes.find((i) => i.name === index.name)?.bytes;
              output.print(`${c.yellow('•')} index ${index.name} covers every row${bytes === undefined ? '' : ` (${formatBytes(bytes)})`}, where only rows with an object are looked up: --apply rebuilds it partial (WHERE ${index.where}), built beside it before the old one is dropped`);
            }
            for (const index of state.narrowingSkipped) {
              output.print(`${c.dim('•')} index ${index.name} covers every row, where only rows with an object are looked up; it stays as it is: ${index.reason}`);
            }
            // A page of SQL is for `--apply --dry-run`; `schema` alone says what is missing and what adds it.
            if (statements.length && opts.apply) {
              output.print('\nSQL that --apply would run:');
              for (const statement of statements) output.printVerbatim(`  ${statement.replace(/\s+/g, ' ')};`);
            } else if (statements.length) {
              const what = state.ok ? 'The schema is complete; ' : '';
              output.print(`\n${what}${statements.length} statement${statements.length === 1 ? '' : 's'} would ${state.ok ? 'rebuild those indexes' : 'add them'}: \`overskill-storage schema --apply --dry-run\` prints the SQL, \`schema --apply\` runs it.`);
            } else {
              output.print(c.green('\nThe schema is complete.'));
            }
            output.result(document([]));
            // `schema` answers "is anything missing?"; `schema --apply --dry-run` answers "what would you run?".
            return { exitCode: state.ok || (opts.apply && opts.dryRun) ? 0 : 1 };
          }
          if (!statements.length) {
            for (const index of state.narrowingSkipped) output.print(`${c.dim('•')} index ${index.name} stays full: ${index.reason}`);
            output.print(c.green('The schema is complete; nothing to apply.'));
            output.result(document([]));
            return { exitCode: 0 };
          }
          await assertSchemaApplicable(context.db, state);
          const analyze = analyzeStatements();
          output.print(`Will run ${statements.length} statement${statements.length === 1 ? '' : 's'} (columns with constant defaults, indexes built CONCURRENTLY: the app keeps writing), then ${analyze.length} ANALYZE statement${analyze.length === 1 ? '' : 's'}. \`schema --apply --dry-run\` prints the SQL.`);
          output.print(`${c.dim('Database:')} ${context.target.database}`);
          await confirmWrite(output, `Apply ${plural(statements.length, 'schema change')} to database ${context.target.database}?`, { yes: globals.yes ?? false });
          const { withRecordedRun } = await import('../src/runs/recorded.ts');
          const spec = recordFor(runtime, globals, opts, { tables: [], filter: {} }, { pausable: false });
          const outcome = (applied: Awaited<ReturnType<typeof applySchema>>) => ({ rows: applied.applied.length, bytes: 0, items: [] });
          // The first --apply creates the run tables: it is recorded once they exist, right after.
          const recorded = await withRecordedRun(context, spec, () => applySchema(context.db, layout), outcome);
          const result = recorded.run ? recorded.result : (await withRecordedRun(context, spec, async () => recorded.result, outcome)).result;
          const analyzed = result.applied.filter((statement) => statement.startsWith('ANALYZE')).length;
          output.print(
            c.green(`Applied ${plural(result.applied.length - analyzed, 'schema statement')} and ${plural(analyzed, 'ANALYZE statement')}; the schema is ${result.after.ok ? 'complete' : 'still incomplete'}.`),
          );
          output.result(document(result.applied, result.after));
          return { exitCode: result.after.ok ? 0 : 1 };
        } finally {
          await context.close();
        }
      }),
    );
}
