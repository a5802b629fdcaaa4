import { CommanderError } from 'commander';
import {
  ConfigError,
  DataError,
  DeclinedError,
  InterruptedError,
  SchemaMissingError,
  UsageError,
  WriteRefusedError,
  errorMessage,
} from '../../../src/errors.ts';

/** The one place errors become exit codes. 0 ok · 1 problems found · 2 usage/config/refused · 130 interrupted. */
export const EXIT = { ok: 0, problems: 1, usage: 2, interrupted: 130 } as const;

export function exitCodeFor(error: unknown): number {
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return EXIT.ok;
    return EXIT.usage;
  }
  if (error instanceof DeclinedError) return EXIT.ok;
  if (error instanceof InterruptedError) return EXIT.interrupted;
  if (error instanceof ConfigError || error instanceof UsageError || error instanceof WriteRefusedError || error instanceof SchemaMissingError) return EXIT.usage;
  if (error instanceof DataError) return EXIT.problems;
  return EXIT.problems;
}

/** One sentence for the operator; a stack only when asked for (DEBUG or --verbose). */
export function describeError(error: unknown, verbose: boolean): string {
  if (verbose && error instanceof Error && error.stack) return error.stack;
  return errorMessage(error);
}
