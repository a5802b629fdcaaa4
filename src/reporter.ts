/**
 * How the core tells the outside world what it is doing. The CLI turns these events into progress bars
 * and log lines; tests and library users may pass nothing at all.
 */
export interface Reporter {
  /** A stage begins; totals, when known, size the progress bar. */
  stage?(name: string, totals?: { items?: number; bytes?: number }): void;
  /** Items finished (successfully or not) and their bytes. */
  advance?(items: number, bytes: number): void;
  log?(level: 'info' | 'warn', message: string): void;
  stageDone?(name: string): void;
}

export const silentReporter: Reporter = {};
