import { Command, CommanderError, Help } from 'commander';
import { addGlobalOptions, type Runtime } from './support/input/context.ts';
import { describeError, EXIT, exitCodeFor } from './support/flow/exit.ts';
import { resumeLines } from './support/render/resume.ts';
import { stopActiveProgress } from './support/render/progress.ts';
import { Output, writeErrorDocument } from './support/render/output.ts';
import type { CommandResult } from './support/flow/command.ts';
import { packageVersion, versionReport } from '../src/version.ts';
import { DeclinedError, connectionLost } from '../src/errors.ts';
import { CATALOG, type CommandEntry } from './catalog.ts';

const version = packageVersion();

/** Runs the CLI once and returns the exit code; never calls process.exit (the bin does). */
export async function runCli(argv: string[], runtime: Runtime): Promise<number> {
  let exitCode = 0;
  const errorOutput = new Output(runtime.streams, { json: false });
  const verbose = argv.includes('--verbose') || argv.includes('-v') || Boolean(runtime.streams.env.DEBUG);
  const run = async (action: () => Promise<CommandResult>) => {
    exitCode = (await action()).exitCode;
  };
  // `--version` after a command is that command's (export's `--version 1.1.0`); before any, the tool's own.
  const firstCommand = argv.findIndex((word) => CATALOG.some((entry) => entry.name === word));
  const versionFlag = argv.findIndex((word) => word === '--version' || word === '-V');
  const commandsVersion = versionFlag >= 0 && firstCommand >= 0 && firstCommand < versionFlag;
  const root = new Command('overskill-storage').description("Move OverSkill's app file contents from PostgreSQL TEXT columns into Cloudflare R2, safely.");
  // The full report (build, runtime) only when asked: every other start skips reading the build record.
  if (!commandsVersion) root.version(versionFlag >= 0 ? versionReport() : version, '-V, --version', 'the version, the build and the runtime');
  const program = addGlobalOptions(
    root
      .showHelpAfterError('(add --help for usage)')
      .configureHelp({ sortSubcommands: false, subcommandTerm: catalogTerm })
      .exitOverride()
      .configureOutput({
        writeOut: (text) => runtime.streams.stdout.write(text),
        writeErr: (text) => runtime.streams.stderr.write(text),
      }),
  );
  // A command's module is loaded only when the command line names it (a value that happens to be a command's
  // name loads one module more, nothing else); the others are listed in the help from the catalog.
  const named = new Set(argv);
  const commands = await Promise.all(CATALOG.map(async (entry) => (named.has(entry.name) ? (await entry.load())(runtime, run, { catalog: CATALOG, runCli }) : listedOnly(entry))));
  for (const [index, command] of commands.entries()) {
    command.description(CATALOG[index].description);
    command.exitOverride().showHelpAfterError('(add --help for usage)');
    leadWithExamples(command);
    command.configureOutput({ writeOut: (text) => runtime.streams.stdout.write(text), writeErr: (text) => runtime.streams.stderr.write(text) });
    program.addCommand(command);
  }
  program.hook('preAction', (_program, action) => {
    runtime.command = action.name();
    runtime.argv = argv;
  });
  program.addHelpText(
    'after',
    [
      'A migration, step by step (each write shows its plan and asks first):',
      '  $ overskill-storage doctor',
      '  $ overskill-storage schema --apply',
      '  $ overskill-storage migrate --dry-run',
      '  $ overskill-storage migrate --rollout 10%',
      '  $ overskill-storage verify',
      '  $ overskill-storage report',
      'Shell completion: `overskill-storage completion bash|zsh|fish`.',
    ].join('\n'),
  );
  leadWithExamples(program, '');
  try {
    if (argv.length === 0) {
      program.outputHelp();
      return 2;
    }
    await program.parseAsync(argv, { from: 'user' });
    if (exitCode === EXIT.interrupted && runtime.command && RESUMABLE.has(runtime.command) && !argv.includes('--json')) {
      runtime.streams.stderr.write(`${resumeLines(argv)}\n`);
    }
    return exitCode;
  } catch (error) {
    const code = exitCodeFor(error);
    // The operator's own "no" is an answer, not an error: said plainly, exit 0.
    if (error instanceof DeclinedError) errorOutput.log(error.message);
    else if (!(error instanceof CommanderError)) errorOutput.error(describeError(error, verbose));
    // A run the database dropped goes on by running it again: the exact command, as after Ctrl-C.
    if (connectionLost(error) && runtime.command && RESUMABLE.has(runtime.command) && !argv.includes('--json')) runtime.streams.stderr.write(`${resumeLines(argv)}\n`);
    if (argv.includes('--json') && (code !== 0 || error instanceof DeclinedError)) {
      const command = runtime.command ?? argv.find((word) => CATALOG.some((entry) => entry.name === word)) ?? 'overskill-storage';
      const message = error instanceof CommanderError ? error.message.replace(/^error: /, '') : describeError(error, false);
      writeErrorDocument(runtime.streams.stdout, command, { message, exitCode: code, kind: error instanceof Error ? (error instanceof CommanderError ? 'UsageError' : error.name) : undefined });
    }
    return code;
  } finally {
    // Whatever ended the command, no progress line is left drawn under what comes next.
    stopActiveProgress();
  }
}

/**
 * A subcommand's help reads usage, what it does, examples, then its own options; the options every command
 * shares are listed once, in `overskill-storage --help`, and named here in one line.
 */
function leadWithExamples(command: Command, footer = GLOBAL_OPTIONS_LINE): void {
  let examples = '';
  // addHelpText('after', …) registers an 'afterHelp' listener (Command extends EventEmitter): its text is taken to lead.
  const events = command as unknown as import('node:events').EventEmitter;
  for (const listener of events.listeners('afterHelp')) {
    (listener as (context: { error: boolean; command: Command; write: (text: string) => void }) => void)({ error: false, command, write: (text) => (examples += text) });
  }
  events.removeAllListeners('afterHelp');
  command.configureHelp({
    ...command.configureHelp(),
    formatHelp(cmd, helper) {
      const text = Help.prototype.formatHelp.call(helper, cmd, helper);
      const at = text.search(/^(Arguments|Options):/m);
      const lead = examples.trim() ? `${examples.trim()}\n\n` : '';
      const body = at < 0 ? `${text}\n${lead}` : `${text.slice(0, at)}${lead}${text.slice(at)}`;
      return `${body.trimEnd()}\n${footer ? `\n${footer}\n` : ''}`;
    },
  });
}

const GLOBAL_OPTIONS_LINE = [
  'Global options (any command): --database-url, --endpoint, --bucket, --json,',
  '-y/--yes, -v/--verbose, -q/--quiet, --no-color, --log-format, --metrics-port',
  'and more: `overskill-storage --help`.',
].join('\n');

/** Commands a stop leaves part-done, that the same command line picks up again where it stopped. */
const RESUMABLE = new Set(['migrate', 'finalize', 'rollback', 'verify', 'cleanup', 'prune-versions', 'maintain', 'reclaim']);

/** The top-level help's term for a command: from the catalog, so a command not loaded reads as a loaded one. */
function catalogTerm(this: Help, command: Command): string {
  const entry = CATALOG.find((candidate) => candidate.name === command.name());
  // "[options]" is left out: every command has options, and the list fits 80 columns without it.
  return entry ? [entry.name, entry.usage.replace(/^\[options\] ?/, '')].filter(Boolean).join(' ') : Help.prototype.subcommandTerm.call(this, command);
}

/** A command the command line does not name: its name and description for the help, nothing to run. */
function listedOnly(entry: CommandEntry): Command {
  return new Command(entry.name).allowUnknownOption().action(() => {
    throw new Error(`internal: the ${entry.name} command ran without its module loaded`);
  });
}
