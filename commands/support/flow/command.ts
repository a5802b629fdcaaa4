import type { Command } from 'commander';
import type { Runtime } from '../input/context.ts';

/** What a command's action returns: its exit code (errors are thrown and mapped in one place). */
export interface CommandResult {
  exitCode: number;
}

/**
 * What the program gives the commands that drive it (completion lists every command, the demo runs them):
 * passed in, so no command module imports the program or the catalog that loads it.
 */
export interface ProgramServices {
  catalog: readonly CommandEntry[];
  runCli(argv: string[], runtime: Runtime): Promise<number>;
}

/** Builds one subcommand: its options, help and action. */
export type CommandFactory = (runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>, program?: ProgramServices) => Command;

/**
 * One command as the top-level help lists it, and where its module is. `usage` is what the help prints after
 * the name (commander's own term: `[options]` when it has options, then its arguments); a test holds it
 * against the loaded command.
 */
export interface CommandEntry {
  name: string;
  usage: string;
  description: string;
  load: () => Promise<CommandFactory>;
}
