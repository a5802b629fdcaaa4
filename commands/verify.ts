import { Command } from 'commander';
import { addWalkOptions, makeOutput, openContext, runOptionsFrom, type GlobalOptions, type Runtime } from './support/input/context.ts';
import { withProgress } from './support/render/progress.ts';
import { formatBytes, formatCount, plural } from './support/render/format.ts';
import * as parse from './support/input/parse.ts';
import type { CommandResult } from './support/flow/command.ts';
import { EXIT } from './support/flow/exit.ts';

export function verifyCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  const command = new Command('verify')
    .option('--deep', 'download and hash every object (default: listings, ETags and the database)')
    .option('--orphans', 'also list objects under apps/ that no row references')
    .option('--sample <percent>', 'check only this percentage of rows (a stable choice)', parse.percent());
  addWalkOptions(command);
  return command
    .addHelpText('after', '\nExamples:\n  $ overskill-storage verify\n  $ overskill-storage verify --deep --app 42\n  $ overskill-storage verify --orphans --json > verify.json')
    .action(async (opts, cmd: Command) =>
      run(async () => {
        const { verify } = await import('../src/ops/verify.ts');
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const output = makeOutput(globals, runtime);
        const options = runOptionsFrom(opts, runtime.signal, runtime.streams.env);
        const context = await openContext(globals, runtime, { store: true, concurrency: options.concurrency, database: 'read' });
        try {
          const result = await withProgress(output, (progress) => verify(
            context,
            {
              tables: options.tables,
              filter: options.filter,
              deep: opts.deep ?? false,
              orphans: opts.orphans ?? false,
              samplePercent: opts.sample,
              concurrency: options.concurrency,
              limit: options.limit,
              signal: runtime.signal,
            },
            progress,
          ));
          const c = output.color;
          output.print(
            output.table(
              ['table', 'rows checked'],
              Object.entries(result.checked).map(([table, count]) => [table, formatCount(count)]),
            ),
          );
          if (result.problemCount) {
            output.print(c.red(`\n${plural(result.problemCount, 'problem')}:`));
            for (const problem of result.problems.slice(0, 200)) {
              output.print(`  ${problem.table} #${problem.id} app ${problem.appId}${problem.path !== null ? ` ${JSON.stringify(problem.path)}` : ''}${problem.key ? ` [${problem.key}]` : ''}: ${problem.problem}`);
            }
            if (result.problemCount > 200) output.print(`  … and ${formatCount(result.problemCount - 200)} more (use --json)`);
          } else {
            output.print(c.green(`\nNo problems found${result.deep ? ' (every object downloaded and hashed)' : ''}.`));
          }
          if (opts.orphans) {
            if (result.sampled) output.print(c.dim('Orphans are not listed while sampling.'));
            else {
              output.print(`\nOrphaned objects: ${formatCount(result.orphanCount)} (${formatBytes(result.orphanBytes)})`);
              for (const orphan of result.orphans.slice(0, 50)) output.print(`  ${orphan.key} (${formatBytes(orphan.size)})`);
              if (result.orphanCount > 50) output.print(`  … and ${formatCount(result.orphanCount - 50)} more`);
            }
          }
          output.result(result);
          if (result.interrupted) return { exitCode: EXIT.interrupted };
          return { exitCode: result.problemCount ? EXIT.problems : EXIT.ok };
        } finally {
          await context.close();
        }
      }),
    );
}
