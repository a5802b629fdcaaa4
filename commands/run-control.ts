import { Command } from 'commander';
import { makeOutput, openContext, type GlobalOptions, type Runtime } from './support/input/context.ts';
import * as parse from './support/input/parse.ts';
import type { CommandResult } from './support/flow/command.ts';
import type { ControlVerb } from '../src/ops/runs.ts';
import { currentOperator } from '../src/runs/identity.ts';
import { UsageError } from '../src/errors.ts';
import { confirmWrite } from './support/input/confirm.ts';

function controlCommand(verb: ControlVerb) {
  return (runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command => {
    const command = new Command(verb)
      .argument('[runs...]', 'run ids (see `overskill-storage status`)')
      .option('--all', `every run that can be ${verb === 'pause' ? 'paused' : verb === 'resume' ? 'resumed' : 'cancelled'}`)
      .option('--no-wait', 'return at once instead of waiting for the workers to act on it')
      .option('--dry-run', 'say which runs would move, and how; change nothing');
    if (verb === 'resume') {
      command
        .option('--concurrency <n>', 'new S3 requests in flight per worker', parse.integer({ min: 1, max: 1024 }))
        .option('--max-rate <n>', 'new objects per second per worker', parse.decimal({ min: 0, exclusiveMin: true }));
    }
    return command
      .addHelpText('after', `\nExamples:\n  $ overskill-storage ${verb} 12\n  $ overskill-storage ${verb} --all`)
      .action(async (runIds: string[], opts, cmd: Command) =>
        run(async () => {
          const { controlRuns, tuneRuns } = await import('../src/ops/runs.ts');
          const globals = cmd.optsWithGlobals<GlobalOptions>();
          const output = makeOutput(globals, runtime);
          if (runIds.length && opts.all) throw new UsageError('Name runs or pass --all, not both.');
          const ids = runIds.map((value) => parse.id(value));
          const context = await openContext(globals, runtime, { store: false, concurrency: 1 });
          try {
            const actor = `${currentOperator({ operator: globals.operator })}@${(await import('node:os')).hostname()}`;
            const target = { runIds: ids, all: opts.all ?? false };
            const retune = verb === 'resume' && (opts.concurrency !== undefined || opts.maxRate !== undefined);
            // The plan first: which runs move and how (refused here if the state machine forbids it).
            const planned = await controlRuns(context.db, verb, target, actor, { dryRun: true });
            // Said as what would happen where a question comes first: nothing has changed until it is answered.
            const pending = !opts.dryRun && !globals.yes ? ', if confirmed' : '';
            for (const result of planned) output.print(`run ${result.runId}: ${result.from === result.to ? `already ${result.from}` : `${result.from} → ${result.to}${pending}`}${opts.dryRun ? ' (dry run)' : ''}`);
            if (opts.dryRun) {
              output.result({ dryRun: true, runs: planned });
              return { exitCode: 0 };
            }
            const moving = planned.filter((result) => result.from !== result.to).length;
            const names = planned.filter((result) => result.from !== result.to).map((result) => result.runId);
            if (moving || retune) await confirmWrite(output, `${verb[0].toUpperCase()}${verb.slice(1)} ${names.length === 1 ? `run ${names[0]}` : `runs ${names.join(', ')}`} in database ${context.target.database}?`, { yes: globals.yes ?? false });
            if (retune) await tuneRuns(context.db, target, { concurrency: opts.concurrency, maxRate: opts.maxRate });
            const started = Date.now();
            const results = await controlRuns(context.db, verb, target, actor, { wait: opts.wait });
            const seconds = ((Date.now() - started) / 1000).toFixed(1);
            for (const result of results) {
              if (result.from !== result.to && result.settled) output.print(`run ${result.runId}: ${result.settled} (after ${seconds}s)`);
              else if (result.from !== result.to && pending) output.print(`run ${result.runId}: ${result.from} → ${result.to}`);
            }
            output.result({ runs: results });
            return { exitCode: 0 };
          } finally {
            await context.close();
          }
        }),
      );
  };
}

export const pauseCommand = controlCommand('pause');
export const resumeCommand = controlCommand('resume');
export const cancelCommand = controlCommand('cancel');

export function tuneCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  return new Command('tune')
    .argument('[runs...]', 'run ids (see `overskill-storage status`)')
    .option('--all', 'every live run')
    .option('--concurrency <n>', 'S3 requests in flight per worker', parse.integer({ min: 1, max: 1024 }))
    .option('--max-rate <n>', 'objects per second per worker', parse.decimal({ min: 0, exclusiveMin: true }))
    .option('--no-max-rate', 'lift the --max-rate limit')
    .option('--dry-run', 'say which runs would get which pace; change nothing')
    .addHelpText('after', '\nExamples:\n  $ overskill-storage tune 12 --max-rate 50\n  $ overskill-storage tune --all --concurrency 4 --no-max-rate')
    .action(async (runIds: string[], opts, cmd: Command) =>
      run(async () => {
        const { tuneRuns } = await import('../src/ops/runs.ts');
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const output = makeOutput(globals, runtime);
        if (runIds.length && opts.all) throw new UsageError('Name runs or pass --all, not both.');
        const context = await openContext(globals, runtime, { store: false, concurrency: 1 });
        try {
          // commander sets maxRate to false for --no-max-rate, leaves it true when neither is given.
          const maxRate = opts.maxRate === false ? null : typeof opts.maxRate === 'number' ? opts.maxRate : undefined;
          const target = { runIds: runIds.map((value) => parse.id(value)), all: opts.all ?? false };
          const planned = await tuneRuns(context.db, target, { concurrency: opts.concurrency, maxRate }, { dryRun: true });
          for (const result of planned) output.print(`run ${result.runId}: ${describePace(result.pace)}${opts.dryRun ? ' (dry run)' : ''}`);
          if (opts.dryRun) {
            output.result({ dryRun: true, runs: planned });
            return { exitCode: 0 };
          }
          await confirmWrite(output, `Change the pace of ${planned.length === 1 ? `run ${planned[0].runId}` : `runs ${planned.map((result) => result.runId).join(', ')}`} in database ${context.target.database}?`, { yes: globals.yes ?? false });
          const results = await tuneRuns(context.db, target, { concurrency: opts.concurrency, maxRate });
          output.print(`Its workers adopt the new pace within a second.`);
          output.result({ runs: results });
          return { exitCode: 0 };
        } finally {
          await context.close();
        }
      }),
    );
}

/** A run's pace as an operator reads it: "concurrency 8, at most 100 objects/s". */
function describePace(pace: unknown): string {
  const { concurrency, maxRate } = (pace ?? {}) as { concurrency?: number; maxRate?: number | null };
  const parts = [concurrency !== undefined ? `concurrency ${concurrency}` : '', maxRate === null ? 'no rate limit' : maxRate !== undefined ? `at most ${maxRate} objects/s` : ''].filter(Boolean);
  return `pace ${parts.length ? parts.join(', ') : 'unchanged'}`;
}
