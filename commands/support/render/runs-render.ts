import type { RunStatus, StatusResult } from '../../../src/ops/runs.ts';
import type { RunRow } from '../../../src/sql/runs.ts';
import { formatBytes, formatCount, formatDuration, formatEta, formatTime } from './format.ts';
import type { Output } from './output.ts';

const rate = (value: number | null, unit: (n: number) => string) => (value === null ? '-' : `${unit(value)}/s`);
const count = (n: number) => formatCount(Math.round(n));

export function progressText(run: RunRow): string {
  if (run.eligible_rows === null || run.eligible_rows === 0) return `${count(run.rows_done)} rows`;
  const done = run.rows_done + run.failed + run.refused;
  return `${count(run.rows_done)} / ${count(run.eligible_rows)} rows (${Math.min(100, (done / run.eligible_rows) * 100).toFixed(1)}%)`;
}

export function etaText(status: RunStatus): string {
  if (status.run.state === 'paused' || status.run.state === 'pausing') return 'paused';
  return formatEta(status.remaining.etaSeconds);
}

function runLine(output: Output, status: RunStatus): string {
  const { run } = status;
  const c = output.color;
  const colour = run.state === 'running' || run.state === 'succeeded' ? c.green : run.state === 'failed' || run.state === 'interrupted' ? c.red : c.yellow;
  const since = formatDuration((run.ended_at ?? new Date()).getTime() - run.started_at.getTime());
  return output.joinFitted([
    `${c.bold(`run ${run.id}`)} ${run.command} ${colour(run.state)}`,
    `${run.operator}@${run.host}`,
    `started ${formatTime(run.started_at)}`,
    `${since}${run.ended_at ? '' : ' so far'}`,
    `${progressText(run)}, ${formatBytes(run.bytes_done)}`,
    ...(run.failed ? [c.red(`${count(run.failed)} failed`)] : []),
    ...(run.refused ? [c.yellow(`${count(run.refused)} refused`)] : []),
  ]);
}

export function renderStatus(output: Output, result: StatusResult): void {
  const c = output.color;
  for (const id of result.interruptedNow) output.warn(`run ${id}: every worker vanished (killed, or its database session was lost); marked interrupted, its claims have lapsed.`);
  output.print(c.bold(result.active.length ? 'Active runs' : 'No active run.'));
  for (const status of result.active) {
    output.print(runLine(output, status));
    output.print(`  rate ${rate(status.rate.rowsPerSecond, (n) => `${count(n)} rows`)}, ${rate(status.rate.bytesPerSecond, formatBytes)} (recent) · ETA ${etaText(status)}`);
    for (const reason of status.waiting) output.print(c.yellow(`  waiting: ${reason}`));
    for (const reason of status.stalled) output.print(c.red(`  stalled: ${reason}`));
    const live = status.workers.filter((w) => w.live);
    if (live.length) {
      output.print(
        output.table(
          ['worker', 'state', 'rows/s', 'bytes/s', 'rows', 'bytes', 'concurrency', 'max-rate', 'waiting for', 'heartbeat'],
          live.map((w) => [
            `${w.host}:${w.pid}`,
            w.state,
            rate(w.recent_rows_per_s, (n) => n.toFixed(1)),
            rate(w.recent_bytes_per_s, formatBytes),
            count(w.rows_done),
            formatBytes(w.bytes_done),
            w.concurrency ?? '-',
            w.max_rate ?? '-',
            w.wait_reason ?? '',
            `${((Date.now() - w.heartbeat_at.getTime()) / 1000).toFixed(1)}s ago`,
          ]),
          { indent: 2 },
        ),
      );
      // A slow store shows as latency, a starved pool as requests waiting for a socket.
      for (const w of live) if (w.pool) output.print(c.dim(`  ${w.host}:${w.pid} HTTP pool: ${w.pool}`));
      for (const w of live) if (w.pace) output.print((w.bucketLimited ? c.yellow : c.dim)(`  ${w.host}:${w.pid} bucket: ${w.pace}`));
    }
  }
  if (result.recent.length) {
    output.print('');
    output.print(c.bold('Recent runs'));
    for (const status of result.recent) {
      output.print(runLine(output, status));
      if (status.run.state_reason) output.print(c.dim(`  ${status.run.state_reason}`));
    }
  }
}
