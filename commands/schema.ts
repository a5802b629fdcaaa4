import { Command } from 'commander';
import { applySchema, describeItem, inspectSchema, statementsFor } from '../src/ops/schema.ts';
import { SchemaMissingError } from '../src/errors.ts';
import { confirmWrite } from './support/confirm.ts';
import { makeOutput, openContext, type GlobalOptions, type Runtime } from './support/context.ts';
import type { CommandResult } from './support/command.ts';

export function schemaCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  return new Command('schema')
    .description("Show which of the plan's Phase 1 columns and indexes are missing (exit 1 if any); --apply adds them.")
    .option('--apply', 'add what is missing (idempotent; indexes are built CONCURRENTLY)')
    .option('--dry-run', 'print the SQL that --apply would run, change nothing')
    .addHelpText('after', '\nExamples:\n  $ overskill-storage schema\n  $ overskill-storage schema --apply --dry-run\n  $ overskill-storage schema --apply --yes')
    .action(async (opts, command: Command) =>
      run(async () => {
        const globals = command.optsWithGlobals() as GlobalOptions;
        const output = makeOutput(globals, runtime);
        const context = await openContext(globals, runtime, { store: false });
        try {
          const state = await inspectSchema(context.db);
          if (state.missingTables.length) {
            throw new SchemaMissingError(`OverSkill's tables are missing: ${state.missingTables.join(', ')}. Is DATABASE_URL the app's database?`);
          }
          const statements = statementsFor(state);
          const c = output.color;
          if (!opts.apply || opts.dryRun) {
            for (const item of state.present) output.print(`${c.green('✓')} ${describeItem(item)}`);
            for (const item of state.missing) output.print(`${c.red('✗')} ${describeItem(item)} ${c.dim(`— ${item.purpose}`)}`);
            for (const name of state.invalidIndexes) output.print(`${c.red('✗')} index ${name} is INVALID (an interrupted build); --apply rebuilds it`);
            if (statements.length && (opts.dryRun || !opts.apply)) {
              output.print(`\n${opts.apply ? 'SQL that --apply would run' : 'Run `overskill-storage schema --apply` to add them. SQL'}:`);
              for (const statement of statements) output.print(`  ${statement.replace(/\s+/g, ' ')};`);
            } else if (!statements.length) {
              output.print(c.green('\nThe schema is complete.'));
            }
            output.result({ ok: state.ok, missing: state.missing.map(describeItem), invalidIndexes: state.invalidIndexes, statements, applied: [] });
            return { exitCode: state.ok ? 0 : 1 };
          }
          if (!statements.length) {
            output.print(c.green('The schema is complete; nothing to apply.'));
            output.result({ ok: true, missing: [], invalidIndexes: [], statements: [], applied: [] });
            return { exitCode: 0 };
          }
          output.print(`Will run ${statements.length} statement(s):`);
          for (const statement of statements) output.print(`  ${statement.replace(/\s+/g, ' ')};`);
          await confirmWrite(output, `Apply ${statements.length} schema change(s)?`, { yes: globals.yes ?? false });
          const result = await applySchema(context.db);
          output.print(c.green(`Applied ${result.applied.length} statement(s); the schema is ${result.after.ok ? 'complete' : 'still incomplete'}.`));
          output.result({ ok: result.after.ok, missing: result.after.missing.map(describeItem), invalidIndexes: result.after.invalidIndexes, statements, applied: result.applied });
          return { exitCode: result.after.ok ? 0 : 1 };
        } finally {
          await context.close();
        }
      }),
    );
}
