import { createRequire } from 'node:module';
import type { SingleBar } from 'cli-progress';
import type { Reporter } from '../../../src/reporter.ts';
import type { Output } from './output.ts';
import { formatBytes, formatCount, formatDuration } from './format.ts';

/**
 * Turns core events into a progress bar (items, bytes, rate, ETA) on a TTY's stderr, or into start and
 * finish lines elsewhere. `expected` sizes each stage's bar (from the plan) when the core does not.
 */
/** Time left at the rate so far, or "-" when there is nothing to go by (no rows, none done yet). */
export function etaText(total: number, done: number, seconds: number): string {
  if (total <= 0 || done <= 0 || seconds <= 0 || done >= total) return done >= total && total > 0 ? formatDuration(0) : '-';
  return formatDuration(((total - done) / (done / seconds)) * 1000);
}

type CliProgress = typeof import('cli-progress');
let cliProgressModule: CliProgress | undefined;
/** cli-progress (16 modules) is loaded when a bar is first drawn: `--version`, `--help` and runs off a TTY never draw one. */
const cliProgress = (): CliProgress => (cliProgressModule ??= createRequire(import.meta.url)('cli-progress') as CliProgress);

export function progressReporter(output: Output, expected: Record<string, { items: number; bytes: number }> = {}): Reporter & { stop(): void } {
  let bar: SingleBar | undefined;
  let stageName = '';
  let started = 0;
  let items = 0;
  let bytes = 0;
  let total = 0;
  const showBar = output.interactive && !output.quiet;

  const finishBar = () => {
    if (bar) {
      bar.stop();
      bar = undefined;
    }
  };

  return {
    stage(name, totals) {
      finishBar();
      stageName = name;
      started = Date.now();
      items = 0;
      bytes = 0;
      const known = totals?.items !== undefined ? { items: totals.items, bytes: totals.bytes ?? 0 } : expected[name];
      total = known?.items ?? 0;
      if (showBar) {
        bar = new (cliProgress().SingleBar)(
          {
            stream: output.streams.stderr as NodeJS.WritableStream as never,
            // Our own ETA: cli-progress prints "NFs" for an empty stage or before the first row is done.
            format: `${output.color.cyan('{stage}')} [{bar}] {percentage}% | {value}/{rowsTotal} rows | {bytesDone} | {rate} | ETA {etaText}`,
            barCompleteChar: '█',
            barIncompleteChar: '░',
            hideCursor: true,
            etaBuffer: 50,
            fps: 5,
            clearOnComplete: false,
          },
          cliProgress().Presets.shades_classic,
        );
        bar.start(Math.max(total, 1), 0, { stage: name.padEnd(22), rowsTotal: formatCount(total), bytesDone: formatBytes(0), rate: '-', etaText: '-' });
      } else {
        output.log(`${name}: started${total ? ` (${formatCount(total)} rows${known?.bytes ? `, ${formatBytes(known.bytes)}` : ''})` : ''}`);
      }
    },
    advance(count, byteCount) {
      items += count;
      bytes += byteCount;
      if (bar) {
        const seconds = Math.max((Date.now() - started) / 1000, 0.001);
        if (items > total) bar.setTotal(items);
        bar.update(items, { bytesDone: formatBytes(bytes), rate: `${formatCount(items / seconds)} rows/s, ${formatBytes(bytes / seconds)}/s`, rowsTotal: formatCount(Math.max(total, items)), etaText: etaText(total, items, seconds) });
      }
    },
    log(level, message) {
      if (bar) bar.stop();
      if (level === 'warn') output.warn(message);
      else output.log(message);
      if (bar) bar.start(Math.max(total, items, 1), items);
    },
    event(event) {
      output.event(event);
    },
    stageDone(name) {
      if (bar) {
        finishBar();
      } else if (stageName === name || name.startsWith(stageName.split(' ')[0])) {
        output.log(`${name}: done, ${formatCount(items)} rows, ${formatBytes(bytes)} in ${formatDuration(Date.now() - started)}`);
      }
    },
    stop: finishBar,
  };
}
