import { Command, Option } from 'commander';
import { makeOutput, openContext, type GlobalOptions, type Runtime } from './support/input/context.ts';
import { confirmWrite } from './support/input/confirm.ts';
import { withProgress } from './support/render/progress.ts';
import { formatBytes, formatDuration, formatTime } from './support/render/format.ts';
import { describeReclaimPlan } from './support/render/plan-notes.ts';
import * as parse from './support/input/parse.ts';
import type { CommandResult } from './support/flow/command.ts';
import { EXIT } from './support/flow/exit.ts';
import { recordFor } from './support/flow/run-record.ts';
import { parseTables } from '../src/tables.ts';
import { UsageError } from '../src/errors.ts';
import type { OpenTransaction } from '../src/sql/open-transactions.ts';

/** reclaim's flags, as commander parses them. */
interface ReclaimFlags {
  dryRun?: boolean;
  tables?: string;
  offline?: boolean;
  lockTimeout: number;
  waitTimeout: number;
  waitForTransactions: number;
  superuserCheck: boolean;
}

export function reclaimCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  return new Command('reclaim')
    .option('--dry-run', 'print the plan (sizes now and after, free disk, locks, whether pg_repack is usable) and change nothing')
    .option('--tables <list>', 'comma-separated: files, snapshots, version-files (default: all three)')
    .option('--offline', 'rewrite with VACUUM FULL instead of pg_repack: each table is locked for its whole rewrite (a maintenance window only)')
    .addOption(new Option('--lock-timeout <duration>', '--offline: give up on a table whose lock is not had within this').argParser(parse.duration).default(5000, '5s'))
    .addOption(new Option('--wait-timeout <duration>', "pg_repack: how long to wait for its short locks before skipping a table (it never kills the app's sessions)").argParser(parse.duration).default(60_000, '60s'))
    .addOption(new Option('--wait-for-transactions <duration>', 'first wait this long for the transactions open when reclaim begins to end (rows deleted after one began stay on disk until it ends)').argParser(parse.duration).default(60_000, '60s'))
    .option('--no-superuser-check', "pg_repack's flag for managed databases whose admin role is not a superuser")
    .addHelpText('after', '\nExamples:\n  $ overskill-storage reclaim --dry-run\n  $ overskill-storage reclaim --yes\n  $ overskill-storage reclaim --tables files --yes\n  $ overskill-storage reclaim --offline --lock-timeout 10s --yes   # a maintenance window')
    .action(async (opts: ReclaimFlags, cmd: Command) =>
      run(async () => {
        const { planReclaim, reclaim } = await import('../src/ops/reclaim.ts');
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const output = makeOutput(globals, runtime);
        let tables;
        try {
          tables = parseTables(opts.tables);
        } catch (error) {
          throw new UsageError((error as Error).message);
        }
        const options = {
          tables,
          offline: opts.offline ?? false,
          lockTimeoutMs: opts.lockTimeout,
          waitTimeoutS: Math.max(1, Math.round(opts.waitTimeout / 1000)),
          noSuperuserCheck: opts.superuserCheck === false,
          client: runtime.streams.env.OVERSKILL_STORAGE_PG_REPACK,
          transactionWaitMs: opts.waitForTransactions,
          signal: runtime.signal,
        };
        const context = await openContext(globals, runtime, { store: false, database: opts.dryRun ? 'read' : 'write', ownSession: opts.dryRun ? undefined : 'reclaim (pg_repack, or VACUUM FULL with its lock timeout)' });
        try {
          const plan = describeReclaimPlan(await planReclaim(context.db, options));
          const c = output.color;
          output.print(c.bold(`Reclaim plan (${plan.mode === 'offline' ? 'VACUUM FULL, offline' : 'pg_repack, with the app live'})`));
          output.print(`${c.dim('Database:')} ${context.target.database}`);
          const [session] = await (await import('../src/db.ts')).query<{ database: string; role: string }>(context.db, 'SELECT current_database() AS database, current_user AS role');
          const own = { ...session, verbose: output.verbose };
          output.print(
            output.table(
              ['table', 'on disk now', 'should give back', 'should leave', 'measured by'],
              plan.tables.map((t) => [t.table, formatBytes(t.totalBytes), formatBytes(t.returnableBytes), formatBytes(t.expectedAfterBytes), t.method]),
            ),
          );
          output.print(`Free disk needed:    about ${formatBytes(plan.freeDiskNeededBytes)} (a new copy of the largest table and its indexes, dropped with the old one after the swap)`);
          output.print(`Locks:               ${plan.locks}`);
          if (plan.mode === 'pg_repack') {
            output.print(plan.tool.usable ? `pg_repack:           usable (client ${plan.tool.clientVersion}, extension ${plan.tool.extensionVersion})` : c.red(`pg_repack:           not usable: ${plan.tool.problem}`));
          }
          for (const line of transactionLines(plan.openTransactions, own, (t) => `Open transaction: ${describeTransaction(t)}`, (n, oldest) => `${n} open transaction${n === 1 ? '' : 's'} of other databases or roles, the oldest open for ${formatDuration(oldest * 1000)} (reclaim waits for them; -v names them)`)) output.print(c.yellow(line));
          for (const note of plan.notes) output.print(c.dim(`note: ${note}`));
          if (opts.dryRun) {
            output.result({ dryRun: true, plan });
            return { exitCode: EXIT.ok };
          }
          await confirmWrite(output, `Rewrite ${plan.tables.map((t) => t.table).join(', ')} in database ${context.target.database} with ${plan.mode === 'offline' ? 'VACUUM FULL (each locked for its rewrite)' : 'pg_repack'}?`, { yes: globals.yes ?? false });
          const { withRecordedRun } = await import('../src/runs/recorded.ts');
          const recorded = await withRecordedRun(
            context,
            { ...recordFor(runtime, globals, opts, { tables, filter: {} }, { pausable: false }) },
            () => withProgress(output, (progress) => reclaim(context, options, progress)),
            (done) => ({
              rows: done.tables.filter((t) => t.ok).length,
              bytes: Math.max(0, done.beforeBytes - done.afterBytes),
              items: [],
              unlogged: { failed: done.tables.filter((t) => !t.ok).length, refused: 0 },
              interrupted: done.interrupted,
            }),
          );
          const result = recorded.result;
          output.print(
            output.table(
              ['table', 'before', 'after', 'given back', 'time', ''],
              result.tables.map((t) => [t.table, formatBytes(t.beforeBytes), formatBytes(t.afterBytes), formatBytes(Math.max(0, t.beforeBytes - t.afterBytes)), `${(t.ms / 1000).toFixed(1)} s`, t.ok ? c.green('✓') : c.red(`✗ ${t.error}`)]),
            ),
          );
          output.print(c.bold(`Given back to the operating system: ${formatBytes(Math.max(0, result.beforeBytes - result.afterBytes))} (${formatBytes(result.beforeBytes)} → ${formatBytes(result.afterBytes)}).`));
          for (const line of transactionLines(
            result.heldBack,
            own,
            (t) => `Still open when the rewrite began: ${describeTransaction(t)}. Rows deleted after it began were kept; run reclaim again once it has ended.`,
            (n) => `${n} transaction${n === 1 ? '' : 's'} of other databases or roles ${n === 1 ? 'was' : 'were'} still open when the rewrite began: rows deleted after ${n === 1 ? 'it' : 'they'} began were kept; run reclaim again once they have ended (-v names them).`,
          )) output.print(c.yellow(line));
          if (recorded.run) output.print(c.dim(`Run ${recorded.run.id}: ${recorded.run.state ?? ''}.`));
          output.result({ dryRun: false, plan, result, run: recorded.run });
          const failed = result.tables.some((t) => !t.ok);
          return { exitCode: result.interrupted ? EXIT.interrupted : failed ? EXIT.problems : EXIT.ok };
        } finally {
          await context.close();
        }
      }),
    );
}

/**
 * Open transactions as lines: this database's own role's in full; on a shared server the other tenants'
 * sessions (other databases, other roles) only as a count, unless -v asks for them by name.
 */
function transactionLines(transactions: OpenTransaction[], own: { database: string; role: string; verbose: boolean }, named: (t: OpenTransaction) => string, counted: (n: number, oldestSeconds: number) => string): string[] {
  const mine = (t: OpenTransaction) => own.verbose || (t.database === own.database && t.user === own.role);
  const others = transactions.filter((t) => !mine(t));
  return [...transactions.filter(mine).map(named), ...(others.length ? [counted(others.length, Math.max(...others.map((t) => t.openSeconds)))] : [])];
}

/** One open transaction, as an operator finds it in pg_stat_activity. */
function describeTransaction(transaction: OpenTransaction): string {
  const who = [transaction.database && `database "${transaction.database}"`, transaction.user && `role "${transaction.user}"`, transaction.application && `application "${transaction.application}"`].filter(Boolean).join(', ');
  return `pid ${transaction.pid} (${who || 'details hidden from this role'}), open for ${formatDuration(transaction.openSeconds * 1000)} since ${formatTime(new Date(transaction.started))}`;
}
