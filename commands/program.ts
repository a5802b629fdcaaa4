import { Command, CommanderError } from 'commander';
import { addGlobalOptions, type Runtime } from './support/input/context.ts';
import { describeError, exitCodeFor } from './support/flow/exit.ts';
import { Output } from './support/render/output.ts';
import type { CommandResult } from './support/flow/command.ts';
import { schemaCommand } from './schema.ts';
import { migrateCommand } from './migrate.ts';
import { verifyCommand } from './verify.ts';
import { reportCommand } from './report.ts';
import { finalizeCommand } from './finalize.ts';
import { rollbackCommand } from './rollback.ts';
import { cleanupCommand } from './cleanup.ts';
import { maintainCommand } from './maintain.ts';
import { pruneVersionsCommand } from './prune-versions.ts';
import { restoreVersionCommand } from './restore-version.ts';
import { exportCommand, catCommand } from './export.ts';
import { packageVersion } from '../src/version.ts';
import { statusCommand } from './status.ts';
import { doctorCommand } from './doctor.ts';
import { pauseCommand, resumeCommand, cancelCommand, tuneCommand } from './run-control.ts';

const version = packageVersion();

type CommandFactory = (runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>) => Command;

export const COMMANDS: CommandFactory[] = [doctorCommand, schemaCommand, migrateCommand, verifyCommand, finalizeCommand, rollbackCommand, reportCommand, restoreVersionCommand, cleanupCommand, maintainCommand, pruneVersionsCommand, exportCommand, catCommand, statusCommand, pauseCommand, resumeCommand, cancelCommand, tuneCommand];

/** Runs the CLI once and returns the exit code; never calls process.exit (the bin does). */
export async function runCli(argv: string[], runtime: Runtime, extraCommands: CommandFactory[] = []): Promise<number> {
  let exitCode = 0;
  const errorOutput = new Output(runtime.streams, { json: false });
  const verbose = argv.includes('--verbose') || Boolean(runtime.streams.env.DEBUG);
  const run = async (action: () => Promise<CommandResult>) => {
    exitCode = (await action()).exitCode;
  };
  const program = addGlobalOptions(
    new Command('overskill-storage')
      .description("Move OverSkill's app file contents from PostgreSQL TEXT columns into Cloudflare R2, safely.")
      .version(version, '-V, --version')
      .showHelpAfterError('(add --help for usage)')
      .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
      .exitOverride()
      .configureOutput({
        writeOut: (text) => runtime.streams.stdout.write(text),
        writeErr: (text) => runtime.streams.stderr.write(text),
      }),
  );
  for (const factory of [...COMMANDS, ...extraCommands]) {
    const command = factory(runtime, run);
    command.exitOverride().showHelpAfterError('(add --help for usage)').configureHelp({ showGlobalOptions: true });
    command.configureOutput({ writeOut: (text) => runtime.streams.stdout.write(text), writeErr: (text) => runtime.streams.stderr.write(text) });
    program.addCommand(command);
  }
  program.hook('preAction', (_program, action) => {
    runtime.command = action.name();
    runtime.argv = argv;
  });
  program.addHelpText(
    'after',
    '\nA migration, step by step:\n  $ overskill-storage schema --apply\n  $ overskill-storage migrate --dry-run\n  $ overskill-storage migrate --rollout 10 --yes\n  $ overskill-storage verify\n  $ overskill-storage report',
  );
  try {
    if (argv.length === 0) {
      program.outputHelp();
      return 2;
    }
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return exitCodeFor(error);
    errorOutput.error(describeError(error, verbose));
    return exitCodeFor(error);
  }
}
