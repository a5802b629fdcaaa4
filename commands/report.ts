import { Command, InvalidArgumentError, Option } from 'commander';
import { describeMetrics, type DescribedReport } from './support/render/metric-text.ts';
import { addPriceOptions, thresholdOptions, makeOutput, openContext, policyFrom, pricesFrom, type GlobalOptions, type Runtime } from './support/input/context.ts';
import { formatBytes, formatCount, formatDuration, formatMoney, formatTime, renderMarkdownTable, plural } from './support/render/format.ts';
import { parseTables } from '../src/tables.ts';
import { UsageError } from '../src/errors.ts';
import * as parse from './support/input/parse.ts';
import type { Output } from './support/render/output.ts';
import type { CommandResult } from './support/flow/command.ts';
import { appendStepSummary } from './support/render/step-summary.ts';
import { DISK_HEADER, METRIC_HEADER, diskRows, metricRows, metricStepLines } from './support/render/report-rows.ts';
import { JSON_SCHEMA_VERSION } from './support/render/output.ts';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { withStore } from '../src/context.ts';
import type { RunState } from '../src/runs/states.ts';

export function reportCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  const command = new Command('report')
    .addOption(new Option('--format <format>', 'output format; html is one self-contained page with charts, offline').choices(['table', 'json', 'markdown', 'html']).default('table'))
    .option('--out <file>', 'with --format html: write the page to this file (else to stdout)')
    .option('--app <id>', 'only this app (repeatable)', parse.collectIds)
    .option('--tables <list>', 'comma-separated: files, snapshots, version-files')
    .option('--runs', 'instead: the history of runs (who ran what, with which arguments, how it ended), with their progress per minute')
    .option('--command <name>', 'with --runs: only runs of this command (migrate, finalize, rollback, ...)')
    .addOption(new Option('--status <state>', 'with --runs: only runs that ended (or are) in this state').choices(['running', 'pausing', 'paused', 'cancelling', 'cancelled', 'succeeded', 'failed', 'interrupted']))
    .option('--since <when>', 'with --runs: only runs started since this time (ISO date) or this long ago (e.g. 24h)', parseSince)
    .option('--limit <n>', 'with --runs: at most this many runs', parse.integer({ min: 1 }), 50)
    .option('--items <run>', "instead: the failed and refused items of one run, with the error of each", parse.id)
    .option('--list-bucket', 'also list the bucket: what the stored objects take against their contents (the bytes compression saved), measured')
    .option('--probe-reads <n>', "time N reads of app files from R2 (needs the R2 settings), for the plan's retrieval-time metric", parse.integer({ min: 1, max: 10_000 }))
    .addOption(thresholdOptions()[0])
    .addOption(thresholdOptions()[1]);
  addPriceOptions(command);
  return command
    .addHelpText('after', '\nExamples:\n  $ overskill-storage report\n  $ overskill-storage report --format markdown >> status.md\n  $ overskill-storage report --format html --out report.html\n  $ overskill-storage report --format json --price-storage 0.015')
    .action(async (opts, cmd: Command) =>
      run(async () => {
        if (opts.runs || opts.items) return runsReport(runtime, cmd.optsWithGlobals<GlobalOptions>(), opts);
        const { buildReport } = await import('../src/ops/report.ts');
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const output = makeOutput({ ...globals, json: globals.json || opts.format === 'json' }, runtime);
        let tables;
        try {
          tables = parseTables(opts.tables);
        } catch (error) {
          throw new UsageError((error as Error).message);
        }
        const context = await openContext(globals, runtime, { store: Boolean(opts.probeReads || opts.listBucket), database: 'read' });
        try {
          const probe = opts.probeReads ? await (await import('../src/ops/read-probe.ts')).probeReads(withStore(context), opts.probeReads) : undefined;
          const measured = opts.listBucket ? await (await import('../src/ops/compression-stats.ts')).measureCompression(withStore(context), tables) : undefined;
          const report = describeMetrics(await buildReport(context.db, tables, policyFrom(opts), pricesFrom(opts), { appIds: opts.app }, probe, measured));
          if (opts.format === 'html') {
            const { renderReportHtml } = await import('./support/render/report-html.ts');
            const page = renderReportHtml({ schemaVersion: JSON_SCHEMA_VERSION, command: 'report', ...report });
            if (opts.out) {
              const file = resolve(runtime.cwd, opts.out);
              writeFileSync(file, page);
              output.log(`Wrote the HTML report to ${file}`);
            } else runtime.streams.stdout.write(page);
          } else if (opts.format === 'markdown') output.printVerbatim(reportMarkdown(report));
          else renderText(output, report);
          appendStepSummary(runtime.streams.env, reportMarkdown(report));
          output.result(report);
          return { exitCode: 0 };
        } finally {
          await context.close();
        }
      }),
    );
}

function rows(report: DescribedReport): string[][] {
  const lines: string[][] = [];
  for (const table of report.tables) {
    for (const location of table.locations) {
      lines.push([table.table, location.location, formatCount(location.rows), formatBytes(location.dbStoredBytes), formatBytes(location.dbBytes), formatBytes(location.r2Bytes)]);
    }
  }
  return lines;
}

function summary(report: DescribedReport): [string, string][] {
  const t = report.totals;
  return [
    ['Migration progress', `${t.progressPercent}% (${formatCount(t.movedRows)} of ${formatCount(t.movedRows + t.pendingRows)} eligible rows in R2)`],
    ['Still to migrate', `${plural(t.pendingRows, 'row')}, ${formatBytes(t.pendingBytes)}`],
    ['Database content held', `${formatBytes(t.dbStoredBytes)} on disk (${formatBytes(t.dbBytes)} of content, as TOAST keeps it)`],
    ['Freeable by finalize', `${formatBytes(t.finalizableStoredBytes)} on disk (${formatBytes(t.finalizableBytes)} of content) in ${plural(t.finalizableRows, 'row')}`],
    ['Database bytes saved', `≈ ${formatBytes(t.dbStoredBytesSaved)} on disk (${formatBytes(t.dbBytesSaved)} of content now in R2 only)`],
    ['Stored in R2', report.cost.r2StoredFrom === 'bucket listing' ? `${formatBytes(report.cost.r2StoredBytes)} as stored (bucket listing; ${formatBytes(t.r2Bytes)} of content)` : `${formatBytes(t.r2Bytes)} of content (\`--list-bucket\` measures what the objects take, compressed ones smaller)`],
    ['R2 storage cost', `${formatMoney(report.cost.r2StoragePerMonth)}/month at $${report.prices.storagePerGbMonth}/GB-month on ${formatBytes(report.cost.r2StoredBytes)}`],
    ['Uploads so far (Class A)', `${formatMoney(report.cost.uploadsSoFar)} at $${report.prices.classAPerMillion}/million`],
    ['Uploads remaining (Class A)', formatMoney(report.cost.uploadsRemaining)],
    ['Database storage saved', `${formatMoney(report.cost.databaseStorageSavedPerMonth)}/month at $${report.prices.databasePerGbMonth}/GB-month`],
    ...compressionLines(report),
  ];
}

function compressionLines(report: DescribedReport): [string, string][] {
  const { estimate, measured } = report.compression;
  const lines: [string, string][] = [];
  if (measured) {
    lines.push([
      'Saved by compression',
      `${formatBytes(measured.savedBytes)}: ${plural(measured.objects, 'object')} ${measured.objects === 1 ? 'holds' : 'hold'} ${formatBytes(measured.contentBytes)} of content in ${formatBytes(measured.storedBytes)} (bucket listing)`,
    ]);
  }
  if (estimate.sampledContents) {
    lines.push([
      'Compression estimate',
      `gzip would save ${(estimate.savingShare * 100).toFixed(0)}% of ${formatBytes(estimate.eligibleBytes)} still to migrate (≈ ${formatBytes(estimate.estimatedSavedBytes)}; ${plural(estimate.sampledContents, 'content')} sampled; \`migrate --compress gzip\`)`,
    ]);
  }
  return lines;
}

function renderText(output: Output, report: DescribedReport): void {
  const c = output.color;
  const style = { bold: c.bold, dim: c.dim };
  output.print(c.bold('Storage by table and location'));
  output.print(output.table(['table', 'location', 'rows', 'database (on disk)', 'database (content)', 'R2 bytes'], rows(report)));
  output.print('');
  for (const [label, value] of summary(report)) output.print(`${c.bold(label.padEnd(28))} ${value}`);
  output.print('');
  output.print(c.bold('On disk (PostgreSQL)'));
  output.print(output.table(DISK_HEADER, diskRows(report)));
  if (report.space.some((s) => s.method === 'estimate')) output.print(c.dim(SPACE_ESTIMATE_NOTE));
  output.print('');
  output.print(c.bold("The plan's success metrics"));
  output.print(output.table(METRIC_HEADER, metricRows(report)));
  for (const line of metricStepLines(report)) output.print(c.dim(`  ${line}`));
  if (report.versionHistory.length) {
    output.print('');
    output.print(c.bold('Version history by age') + c.dim(' (what `prune-versions --keep-within` acts on)'));
    output.print(output.table(['age', 'versions', 'database bytes', 'R2 bytes'], report.versionHistory.map((row) => [row.age, formatCount(row.versions), formatBytes(row.db_bytes), formatBytes(row.r2_bytes)])));
  }
}

const SPACE_ESTIMATE_NOTE =
  'reusable / returned: estimates (pgstattuple is not installed): heap and TOAST size minus the pages the live rows need (each content at its stored size, in 1,996-byte TOAST chunks when out of line, plus the other columns at their average width); `CREATE EXTENSION pgstattuple` measures them.';


function reportMarkdown(report: DescribedReport): string {
  return [
    `## R2 storage report (${report.generatedAt})`,
    '',
    renderMarkdownTable(['table', 'location', 'rows', 'database (on disk)', 'database (content)', 'R2 bytes'], rows(report)),
    '',
    renderMarkdownTable(['measure', 'value'], summary(report)),
    '',
    renderMarkdownTable(DISK_HEADER, diskRows(report)),
    '',
    renderMarkdownTable(METRIC_HEADER, metricRows(report)),
    ...metricStepLines(report).map((line) => `- ${line}`),
  ].join('\n');
}

function parseSince(value: string): Date {
  const relative = /^[0-9]/.test(value) && !/^[0-9]{4}-/.test(value);
  if (relative) return new Date(Date.now() - parse.duration(value));
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new InvalidArgumentError(`"${value}" is neither a date (2026-11-30T08:00Z) nor a duration (24h).`);
  return date;
}

/** `report --runs` and `report --items RUN`: the recorded history instead of the storage report. */
/** The flags of `report --runs` and `report --items`, as commander parses them. */
interface RunsFlags {
  items?: string;
  command?: string;
  status?: RunState;
  since?: Date;
  limit: number;
  format: 'table' | 'json' | 'markdown' | 'html';
}

async function runsReport(runtime: Runtime, globals: GlobalOptions, opts: RunsFlags): Promise<CommandResult> {
  const { runHistory, runDetail, tableLabel } = await import('../src/ops/runs.ts');
  const { progressText } = await import('./support/render/runs-render.ts');
  const output = makeOutput({ ...globals, json: globals.json || opts.format === 'json' }, runtime);
  const context = await openContext(globals, runtime, { store: false, concurrency: 1 });
  const c = output.color;
  try {
    if (opts.items) {
      const detail = await runDetail(context.db, opts.items, 10_000);
      if (!detail.status) throw new UsageError(`There is no run ${opts.items}.`);
      const run = detail.status.run;
      output.print(c.bold(`Run ${run.id}: ${run.command} ${run.state}, by ${run.operator} on ${run.host}`));
      output.print(`arguments: ${run.arguments.join(' ')}`);
      output.print(
        output.table(
          ['when', 'from', 'to', 'by', 'why'],
          detail.transitions.map((t) => [formatTime(t.at), t.from_state, t.to_state, t.actor ?? '', t.reason ?? '']),
        ),
      );
      output.print('');
      output.print(detail.items.length ? c.bold(`${plural(detail.items.length, 'failed or refused item')}; retry them with \`overskill-storage migrate --retry-failed ${run.id}\``) : 'No failed or refused items.');
      if (detail.items.length) {
        output.print(
          output.table(
            ['table', 'row', 'app', 'path', 'outcome', 'error', 'attempts', 'message'],
            detail.items.map((item) => [tableLabel(item.table_name), item.row_id, item.app_id ?? '', item.path ?? '', item.outcome, item.error_class, item.attempts, item.message]),
          ),
        );
      }
      output.result(detail);
      return { exitCode: 0 };
    }
    const history = await runHistory(context.db, {
      command: opts.command,
      state: opts.status,
      since: opts.since,
      limit: opts.limit,
    });
    if (!history.runs.length) output.print('No runs recorded (yet) that match.');
    else
      output.print(
        output.table(
          ['run', 'command', 'state', 'operator', 'host', 'started', 'took', 'workers', 'progress', 'bytes', 'failed', 'refused', 'arguments'],
          history.runs.map((run) => [
            run.id,
            run.command,
            run.state,
            run.operator,
            run.host,
            formatTime(run.started_at),
            run.ended_at ? formatDuration(run.ended_at.getTime() - run.started_at.getTime()) : 'running',
            run.workers,
            progressText(run),
            formatBytes(run.bytes_done),
            formatCount(run.failed),
            formatCount(run.refused),
            run.arguments.join(' '),
          ]),
        ),
      );
    output.result(history);
    return { exitCode: 0 };
  } finally {
    await context.close();
  }
}
