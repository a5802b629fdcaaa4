import { Command, CommanderError, Help } from 'commander';
import { addGlobalOptions, type Runtime } from './support/input/context.ts';
import { describeError, exitCodeFor } from './support/flow/exit.ts';
import { Output, writeErrorDocument } from './support/render/output.ts';
import type { CommandResult } from './support/flow/command.ts';
import { packageVersion } from '../src/version.ts';
import { CATALOG, type CommandEntry } from './catalog.ts';

const version = packageVersion();

/** Runs the CLI once and returns the exit code; never calls process.exit (the bin does). */
export async function runCli(argv: string[], runtime: Runtime): Promise<number> {
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
      .configureHelp({ showGlobalOptions: true, sortSubcommands: false, subcommandTerm: catalogTerm })
      .exitOverride()
      .configureOutput({
        writeOut: (text) => runtime.streams.stdout.write(text),
        writeErr: (text) => runtime.streams.stderr.write(text),
      }),
  );
  // A command's module is loaded only when the command line names it (a value that happens to be a command's
  // name loads one module more, nothing else); the others are listed in the help from the catalog.
  const named = new Set(argv);
  const commands = await Promise.all(CATALOG.map(async (entry) => (named.has(entry.name) ? (await entry.load())(runtime, run) : listedOnly(entry))));
  for (const [index, command] of commands.entries()) {
    command.description(CATALOG[index].description);
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
    const code = exitCodeFor(error);
    if (!(error instanceof CommanderError)) errorOutput.error(describeError(error, verbose));
    if (argv.includes('--json') && code !== 0) {
      const command = runtime.command ?? argv.find((word) => CATALOG.some((entry) => entry.name === word)) ?? 'overskill-storage';
      const message = error instanceof CommanderError ? error.message.replace(/^error: /, '') : describeError(error, false);
      writeErrorDocument(runtime.streams.stdout, command, { message, exitCode: code, kind: error instanceof Error ? (error instanceof CommanderError ? 'UsageError' : error.name) : undefined });
    }
    return code;
  }
}

/** The top-level help's term for a command: from the catalog, so a command not loaded reads as a loaded one. */
function catalogTerm(this: Help, command: Command): string {
  const entry = CATALOG.find((candidate) => candidate.name === command.name());
  return entry ? [entry.name, entry.usage].filter(Boolean).join(' ') : Help.prototype.subcommandTerm.call(this, command);
}

/** A command the command line does not name: its name and description for the help, nothing to run. */
function listedOnly(entry: CommandEntry): Command {
  return new Command(entry.name).allowUnknownOption().action(() => {
    throw new Error(`internal: the ${entry.name} command ran without its module loaded`);
  });
}
