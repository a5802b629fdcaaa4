import { CommanderError } from 'commander';
import {
  ConfigError,
  DataError,
  DeclinedError,
  InterruptedError,
  SchemaMissingError,
  UsageError,
  WriteRefusedError,
  connectionLost,
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
  return databaseSentence(error) ?? errorMessage(error);
}

/**
 * What PostgreSQL (or a pooler in front of it) did to one of the tool's statements, in one sentence with the
 * way on, instead of the driver's words. Every write of the tool's is one statement or one transaction, so a
 * statement cut short left nothing half-done, and the same command goes on where it stopped.
 */
export function databaseSentence(error: unknown): string | undefined {
  const e = error as { code?: string; message?: string } | undefined;
  const said = e?.message ?? '';
  if (e?.code === '57014') {
    const cause = /statement timeout/.test(said)
      ? "the role's or database's statement_timeout (the tool sets its own sessions' to 0: a pooler's query_timeout, or a setting applied after connecting, is the likelier cause)"
      : /user request/.test(said)
        ? "an operator's pg_cancel_backend, or a pooler's query_timeout"
        : 'a timeout or an operator';
    return `PostgreSQL cancelled one of this tool's statements (${said}): by ${cause}. Nothing was left half-done; run the same command again to go on.`;
  }
  if (connectionLost(error)) {
    return `The database connection was lost mid-command (${said || e?.code}): a restart, a failover or a terminated backend. Nothing was left half-done; once the database answers, run the same command again to go on.`;
  }
  if (e?.code === '53300' || /too many connections/i.test(said)) {
    return `The database refused another connection (${said}): the role's or the database's connection limit, or max_connections, is reached. Run with a lower --concurrency, or when fewer sessions are open.`;
  }
  if (e?.code === '55P03') {
    return `A lock this tool needed was held by another session longer than its lock_timeout allows (${said}). Nothing was changed by that statement; run the same command again, or when the app is quieter.`;
  }
  return undefined;
}
