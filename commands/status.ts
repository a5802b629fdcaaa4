import { Command } from 'commander';
import { makeOutput, openContext, type GlobalOptions, type Runtime } from './support/input/context.ts';
import * as parse from './support/input/parse.ts';
import type { CommandResult } from './support/flow/command.ts';
import { renderStatus } from './support/render/runs-render.ts';
import { sleep } from '../src/pool.ts';

export function statusCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  return new Command('status')
    .argument('[run]', 'only this run', parse.id)
    .option('--watch', 'refresh until interrupted (Ctrl-C)')
    .option('--interval <duration>', 'with --watch: time between refreshes', parse.duration, 2000)
    .option('--recent <n>', 'finished runs to show', parse.integer({ min: 0, max: 1000 }), 5)
    .addHelpText('after', '\nExamples:\n  $ overskill-storage status\n  $ overskill-storage status --watch\n  $ overskill-storage status 12 --json')
    .action(async (runId: string | undefined, opts, cmd: Command) =>
      run(async () => {
        const { runStatus } = await import('../src/ops/runs.ts');
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const output = makeOutput(globals, runtime);
        const context = await openContext(globals, runtime, { store: false, concurrency: 1 });
        try {
          const watching = opts.watch && !globals.json && runtime.streams.stdout.isTTY === true;
          for (;;) {
            const status = await runStatus(context.db, { runId, recent: opts.recent });
            if (watching) runtime.streams.stdout.write('\u001b[2J\u001b[H');
            renderStatus(output, status);
            if (!opts.watch || globals.json || runtime.signal.aborted) {
              output.result(status);
              return { exitCode: 0 };
            }
            if (watching) output.print(output.color.dim(`\nrefreshing every ${opts.interval / 1000}s; Ctrl-C to stop`));
            else output.print('');
            await sleep(opts.interval, runtime.signal);
            if (runtime.signal.aborted) return { exitCode: 0 };
          }
        } finally {
          await context.close();
        }
      }),
    );
}
