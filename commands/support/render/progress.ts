import { createRequire } from 'node:module';
import type { SingleBar } from 'cli-progress';
import type { Reporter, RunEvent } from '../../../src/reporter.ts';
import type { Output } from './output.ts';
import { RateWindow, secondsLeft } from '../../../src/runs/rate-window.ts';
import { formatBytes, formatClock, formatCount, formatDuration, formatEta, plural } from './format.ts';

/** Time left at the rate so far (`done` in `seconds`), or "-" when there is nothing to go by (no rows, none done yet). */
export function etaText(total: number, done: number, seconds: number): string {
  if (total > 0 && done >= total) return formatDuration(0);
  return formatEta(total > 0 && seconds > 0 ? secondsLeft(total - done, done / seconds) : null);
}


type CliProgress = typeof import('cli-progress');
let cliProgressModule: CliProgress | undefined;
/** cli-progress (16 modules) is loaded when a bar is first drawn: `--version`, `--help` and runs off a TTY never draw one. */
const cliProgress = (): CliProgress => (cliProgressModule ??= createRequire(import.meta.url)('cli-progress') as CliProgress);

/** The display is redrawn at least this often, whether or not a batch finished. */
const REFRESH_MS = 1000;

/** The one progress display drawn now, if any: a stop announced from outside (Ctrl-C) is written above it, not through it. */
let activeDisplay: { say(message: string, note?: string): void; stop(): void } | undefined;

/** Clears the display a command left up (the program does this after every command, whatever happened). */
export function stopActiveProgress(): void {
  activeDisplay?.stop();
}

/** Runs `work` with a progress display that is cleared when it ends, returned or thrown. */
export async function withProgress<T>(output: Output, work: (reporter: Reporter) => Promise<T>, expected: Record<string, { items: number; bytes: number }> = {}): Promise<T> {
  const reporter = progressReporter(output, expected);
  try {
    return await work(reporter);
  } finally {
    reporter.stop();
  }
}

/**
 * Writes a line to the terminal's stderr without tearing the progress display: the display is cleared, the
 * line written, and the display drawn again below it with `note` in place of its rate (e.g. "stopping").
 */
export function announceAboveProgress(stderr: NodeJS.WritableStream, message: string, note?: string): void {
  if (activeDisplay) activeDisplay.say(message, note);
  else stderr.write(`${message}\n`);
}

export interface ProgressLine {
  stage: string;
  done: number;
  total: number;
  bytes: number;
  rate: number | null;
  bytesRate: number | null;
  /** Said after the ETA (a wait: --max-rate, the database's load). */
  note?: string;
  /** Said instead of the rate and ETA (paused, stopping, cancelling): the run is not moving on its own. */
  holding?: string;
}

/**
 * One line that fits `width`: what is being done, a bar, the overall count, bytes, rate and ETA. Parts are
 * dropped from the least needed (bytes, then rate) when the terminal is narrow; the bar takes what is left.
 */
export function progressLine(line: ProgressLine, width: number, paint: { cyan(s: string): string; yellow(s: string): string } = { cyan: (s) => s, yellow: (s) => s }): string {
  const known = line.total > 0;
  const percent = known ? `${Math.min(100, Math.floor((line.done / line.total) * 100))}%` : '';
  const count = known ? `${formatCount(line.done)}/${formatCount(line.total)} rows` : `${formatCount(line.done)} rows`;
  const remaining = Math.max(0, line.total - line.done);
  const eta = !known || remaining === 0 ? '' : `ETA ${formatEta(secondsLeft(remaining, line.rate))}`;
  const rate = line.rate === null ? '' : `${formatCount(line.rate)} rows/s`;
  const bytes = formatBytes(line.bytes);
  const said = line.holding ?? line.note;
  const when = line.holding ?? eta;
  const moving = line.holding ? [] : [rate];
  const note = line.holding ? '' : (line.note ?? '');
  // From the most said to the least: the count and the ETA (or why the run holds) go last, the bar before them.
  const candidates: [string, boolean][] = [
    [[percent, count, bytes, ...moving, when, note], true],
    [[percent, count, ...moving, when, note], true],
    [[percent, count, when, note], true],
    [[percent, count, when], true],
    [[percent, count, when], false],
    [[percent, count], false],
  ].map(([parts, bar]) => [(parts as string[]).filter(Boolean).join(' · '), bar as boolean]);
  const budget = Math.max(20, width - 1);
  let stage = line.stage;
  const chosen = candidates.find(([candidate, bar]) => stage.length + 1 + candidate.length + (bar && known ? 12 : 0) <= budget);
  let text = chosen?.[0];
  if (text === undefined) {
    text = candidates[candidates.length - 1][0];
    stage = stage.slice(0, Math.max(0, budget - text.length - 2));
  }
  const barWidth = Math.min(30, budget - stage.length - text.length - 4);
  const bar = known && barWidth >= 8 ? ` [${'█'.repeat(Math.round((Math.min(line.done, line.total) / line.total) * barWidth)).padEnd(barWidth, '░')}]` : '';
  const paintedText = said && text.includes(said) ? text.replace(said, paint.yellow(said)) : text;
  return `${paint.cyan(stage)}${bar} ${paintedText}`;
}

/**
 * Turns core events into one progress display for the whole command (every table together: done/total,
 * bytes, rate and ETA) on a TTY's stderr, redrawn every second and cleared before the results print; or into
 * start and finish lines elsewhere. `expected` sizes each stage (from the plan) when the core does not.
 * A run's pause, resume and cancel from another terminal, and its waits, are said where the operator looks.
 */
export function progressReporter(output: Output, expected: Record<string, { items: number; bytes: number }> = {}): Reporter & { stop(): void } {
  let bar: SingleBar | undefined;
  let ticker: NodeJS.Timeout | undefined;
  let stageName = '';
  let stageStarted = 0;
  let stageItems = 0;
  let stageBytes = 0;
  const totals = new Map<string, number>(Object.entries(expected).map(([name, known]) => [name, known.items]));
  let advanced = 0;
  let worked = 0;
  let bytes = 0;
  let workedBytes = 0;
  let note: string | undefined;
  let stopping: string | undefined;
  let pausedSince: number | undefined;
  let pausedMs = 0;
  let runId: string | undefined;
  const started = Date.now();
  /** What the current stage counts (rows, unless it said otherwise). */
  let stageUnit = 'row';
  const window = new RateWindow();
  const showBar = output.interactive && !output.quiet;

  const done = () => Math.max(advanced, worked);
  const bytesDone = () => Math.max(bytes, workedBytes);
  const total = () => Math.max([...totals.values()].reduce((sum, items) => sum + items, 0), done());
  const activeMs = () => Date.now() - started - pausedMs - (pausedSince !== undefined ? Date.now() - pausedSince : 0);
  const sample = () => {
    if (pausedSince !== undefined) return;
    window.add(activeMs(), done(), bytesDone());
  };
  const line = () => {
    const rate = window.rates();
    const holding = stopping ?? (pausedSince !== undefined || note?.startsWith('pausing') ? note : undefined);
    return progressLine({ stage: stageName, done: done(), total: total(), bytes: bytesDone(), rate: pausedSince !== undefined ? null : rate.rows, bytesRate: rate.bytes, note: holding ? undefined : note, holding }, output.errorWidth, output.color);
  };
  const draw = () => {
    if (!showBar) return;
    if (!bar) {
      bar = new (cliProgress().SingleBar)({
        stream: output.streams.stderr as NodeJS.WritableStream as never,
        format: (_options, _params, payload: { line: string }) => payload.line,
        hideCursor: true,
        linewrap: false,
        // A stop is ours to announce (announceAboveProgress): cli-progress's own SIGINT handler would restore a stale cursor over it.
        gracefulExit: false,
        clearOnComplete: true,
        fps: 4,
      });
      sample();
      bar.start(1, 0, { line: line() });
      ticker = setInterval(() => {
        sample();
        bar?.update(0, { line: line() });
      }, REFRESH_MS);
      ticker.unref();
    } else {
      bar.update(0, { line: line() });
    }
  };
  const clear = () => {
    if (ticker) clearInterval(ticker);
    ticker = undefined;
    if (bar) bar.stop();
    bar = undefined;
  };
  /** A line written while the display is up: the display steps aside and comes back below it. */
  const say = (write: () => void) => {
    const shown = bar !== undefined;
    clear();
    write();
    if (shown) draw();
  };
  const display = {
    say(message: string, newNote?: string) {
      if (newNote) stopping = newNote;
      say(() => output.streams.stderr.write(`${message}\n`));
    },
    stop() {
      clear();
      if (activeDisplay === display) activeDisplay = undefined;
    },
  };

  const onEvent = (event: RunEvent) => {
    if (event.runId) runId = event.runId;
    if (event.type === 'wait') {
      note = event.reason ? `waits: ${event.reason}` : undefined;
      draw();
    } else if (event.type === 'bucket.pace') {
      const rate = event.write.ratePerSecond ?? event.read.ratePerSecond;
      if (event.limited && rate !== null) {
        note = `the bucket is the limit: ${event.write.ratePerSecond !== null ? `writes at ${Math.round(event.write.ratePerSecond)}/s` : `reads at ${Math.round(rate)}/s`}`;
        draw();
      }
    } else if (event.type === 'run.state') {
      const who = event.reason ?? event.state;
      const run = runId ? `Run ${runId}` : 'The run';
      if (event.state === 'pausing') {
        note = `pausing (${who})`;
        say(() => output.warn(`${run} is pausing at ${formatClock()} (${who}): the batches in flight finish first.`));
      } else if (event.state === 'paused') {
        pausedSince ??= Date.now();
        note = `paused (${who})`;
        say(() => output.warn(`${run} paused at ${formatClock()} (${who}); nothing is written while it waits. To go on: \`overskill-storage resume${runId ? ` ${runId}` : ''}\`; to stop: \`overskill-storage cancel${runId ? ` ${runId}` : ''}\`.`));
      } else if (event.state === 'running') {
        if (pausedSince !== undefined) pausedMs += Date.now() - pausedSince;
        pausedSince = undefined;
        note = undefined;
        say(() => output.log(`${run} resumed at ${formatClock()} (${who}).`));
      } else if (event.state === 'cancelling') {
        stopping = `cancelling (${who})`;
        say(() => output.warn(`${run} was cancelled at ${formatClock()} (${who}): finishing the batches in flight, then stopping.`));
      }
    }
  };

  return {
    stage(name, stageTotals) {
      stageName = name;
      stageStarted = Date.now();
      stageItems = 0;
      stageBytes = 0;
      const known = stageTotals?.items !== undefined ? { items: stageTotals.items, bytes: stageTotals.bytes ?? 0 } : expected[name];
      if (stageTotals?.items !== undefined) totals.set(name, stageTotals.items);
      if (showBar) {
        // One display at a time: one left up by an earlier reporter is cleared first.
        if (activeDisplay && activeDisplay !== display) activeDisplay.stop();
        activeDisplay = display;
        draw();
      } else {
        const items = known?.items ?? 0;
        stageUnit = stageTotals?.unit ?? 'row';
        output.log(`${name}: started${items ? ` (${plural(items, stageUnit)}${known?.bytes ? `, ${formatBytes(known.bytes)}` : ''})` : ''}`);
      }
    },
    advance(count, byteCount) {
      advanced += count;
      bytes += byteCount;
      stageItems += count;
      stageBytes += byteCount;
      // Sampled by the ticker only (once a second): the rate window holds a minute of samples, not every row.
      if (bar) draw();
    },
    worked(count, byteCount) {
      worked += count;
      workedBytes += byteCount;
    },
    log(level, message) {
      say(() => (level === 'warn' ? output.warn(message) : output.log(message)));
    },
    event(event) {
      onEvent(event);
      output.event(event);
    },
    stageDone(name, summary) {
      if (!showBar && (stageName === name || name.startsWith(stageName.split(' ')[0]))) {
        output.log(`${name}: done, ${summary ?? `${plural(stageItems, stageUnit)}, ${formatBytes(stageBytes)}`} in ${formatDuration(Date.now() - stageStarted)}`);
      }
    },
    stop: display.stop,
  };
}
