import type { Command } from 'commander';
import type { CommonRunOptions } from '../../../src/ops/options.ts';
import type { RunRecordSpec } from '../../../src/runs/open-run.ts';
import { maskArguments, scopeOf } from '../../../src/runs/identity.ts';
import { packageVersion } from '../../../src/version.ts';
import type { GlobalOptions, Runtime } from '../input/context.ts';

export function addConflictOption(command: Command): Command {
  return command.option('--force', 'start even while a conflicting run is active (a running migrate over the same rows, or one with another key layout)');
}

/** How a command's run is recorded: who, the masked command line, which rows, and the totals it starts from. */
export function recordFor(
  runtime: Runtime,
  globals: GlobalOptions,
  /** The command's flags: `--force` among them, where the command has it. */
  opts: object,
  options: Pick<CommonRunOptions, 'tables' | 'filter'>,
  details: { eligible?: { rows: number; bytes: number }; keyLayout?: string; identityExtra?: Record<string, unknown>; retryOf?: string; pausable?: boolean } = {},
): RunRecordSpec {
  return {
    command: runtime.command ?? 'unknown',
    arguments: maskArguments(runtime.argv ?? []),
    operator: globals.operator,
    toolVersion: packageVersion(),
    scope: scopeOf(
      options.tables.map((table) => table.table),
      options.filter,
      details.keyLayout,
    ),
    identityExtra: details.identityExtra,
    eligible: details.eligible,
    retryOf: details.retryOf,
    force: 'force' in opts && opts.force === true,
    pausable: details.pausable ?? true,
  };
}
