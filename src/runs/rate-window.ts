/**
 * The one rate behind every ETA: the progress line's and `status`'s. Both take it over the last minute of
 * working time (paused time does not count), and give none from less than two seconds of work, when the
 * first batches are still filling the pipeline.
 */
export const RATE_WINDOW_MS = 60_000;
const MIN_SPAN_MS = 2_000;

export class RateWindow {
  private readonly samples: { at: number; rows: number; bytes: number }[] = [];

  /** The totals so far, read at `at` ms of working time. */
  add(at: number, rows: number, bytes: number): void {
    this.samples.push({ at, rows, bytes });
    while (this.samples.length > 2 && at - this.samples[0].at > RATE_WINDOW_MS) this.samples.shift();
  }

  /** Rows and bytes per second over the window, or null while it spans too little work. */
  rates(): { rows: number | null; bytes: number | null } {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.at - first.at < MIN_SPAN_MS) return { rows: null, bytes: null };
    const seconds = (last.at - first.at) / 1000;
    return { rows: (last.rows - first.rows) / seconds, bytes: (last.bytes - first.bytes) / seconds };
  }
}

/** Seconds left for `remaining` at `perSecond`: null when there is no rate to go by. */
export function secondsLeft(remaining: number, perSecond: number | null | undefined): number | null {
  return perSecond && perSecond > 0 ? Math.max(0, remaining) / perSecond : null;
}
