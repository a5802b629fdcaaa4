import type { LaneSnapshot } from './store/bucket-pace.ts';

/**
 * How the core tells the outside world what it is doing. The CLI turns these events into progress bars
 * and log lines; tests and library users may pass nothing at all.
 */
export interface Reporter {
  /** A stage begins; totals, when known, size the progress bar. `unit` names what an item is (a row, unless said). */
  stage?(name: string, totals?: { items?: number; bytes?: number; unit?: string }): void;
  /** Items finished (successfully or not) and their bytes. */
  advance?(items: number, bytes: number): void;
  /** Items whose object work is done (uploaded and read back, fetched, ...), before their batch is settled: progress between batches. */
  worked?(items: number, bytes: number): void;
  log?(level: 'info' | 'warn', message: string): void;
  /** A stage ended; `summary` says what it did where the count of items would not (a sample of them hashed). */
  stageDone?(name: string, summary?: string): void;
  /** What a recorded run did, one event at a time (log pipelines and metrics read these). */
  event?(event: RunEvent): void;
}

/** Where an event comes from: the recorded run and the worker process (its database session id). */
export interface EventSource {
  runId?: string;
  worker?: string;
}

export type RunEvent = EventSource &
  (
    | { type: 'run.started'; command: string; joined: boolean; concurrency: number }
    | { type: 'batch.done'; table: string; claimed: number; flipped: number; bytes: number; failed: number; refused: number; abandoned: number; changedMeanwhile: number; ms: number }
    | { type: 'item.failed' | 'item.refused'; table: string; rowId: string; appId: string | null; path: string | null; key: string | null; errorClass: string; message: string }
    | { type: 'wait'; reason: string | null }
    | { type: 'run.state'; state: string; reason: string | null }
    | { type: 'run.ended'; state: string; rows: number; bytes: number; failed: number; refused: number }
    /** The bucket refused requests as over its budget since the last such event: the pace this process keeps now. */
    | { type: 'bucket.pace'; limited: boolean; summary: string; write: LaneSnapshot; read: LaneSnapshot }
  );

/** The same reporter, with every event it passes on tagged with its run and worker. */
export function tagged(reporter: Reporter, source: () => EventSource): Reporter {
  if (!reporter.event) return reporter;
  const forward = reporter.event.bind(reporter);
  return { ...reporter, stage: reporter.stage?.bind(reporter), advance: reporter.advance?.bind(reporter), worked: reporter.worked?.bind(reporter), log: reporter.log?.bind(reporter), stageDone: reporter.stageDone?.bind(reporter), event: (event) => forward({ ...source(), ...event }) };
}

export const silentReporter: Reporter = {};
