import type { Db } from '../db.ts';
import { errorMessage } from '../errors.ts';
import type { Limiter } from '../pool.ts';
import type { RateLimiter } from '../pacing.ts';
import { type RunPace } from '../sql/runs.ts';
import { endWorker, heartbeat, settlePause, type WorkerBeat, type WorkerEnd } from '../sql/run-workers.ts';
import { recordItems, type RunItem } from '../sql/run-items.ts';
import type { RunState } from './states.ts';
import type { WorkerHealth } from './worker-health.ts';
import { RateWindow } from './rate-window.ts';

/** What the batch walk tells a run about itself, and asks it before each claim. */
export interface BatchObserver {
  /** Before each claim. `drain` waits for the batches in flight; a paused run holds the walk here. */
  beforeClaim(drain: () => Promise<void>): Promise<void>;
  afterBatch(batch: { flipped: number; bytes: number; items: RunItem[] }): Promise<void>;
  /** Why the worker is not claiming (database load, --max-rate); undefined when it is working again. */
  waiting(reason: string | undefined): void;
}

const BEAT_MS = 500;

/**
 * One worker process's part in a recorded run. Every half second it writes its heartbeat (counts, recent
 * rate, wait reason, pace) and reads the run's state back: a pause holds the walk before its next claim
 * once the batches in flight are done, a cancel aborts the walk the way Ctrl-C does, and a new pace set
 * with `tune` is applied to the shared limiter and rate limit.
 */
export class RunWorker implements BatchObserver {
  private timer?: NodeJS.Timeout;
  private beating?: Promise<void>;
  private runState: RunState = 'running';
  private paceVersion = 0;
  private paused = false;
  private waitReason: string | undefined;
  private counts = { rows: 0, bytes: 0, failed: 0, refused: 0 };
  private activeMs = 0;
  private lastTick = Date.now();
  private readonly window = new RateWindow();
  private wake?: () => void;
  private readonly unrecorded: RunItem[] = [];
  cancelledBy?: string;

  constructor(
    private readonly db: Db,
    readonly runId: string,
    readonly worker: string,
    private readonly controls: { limiter: Limiter; rate?: RateLimiter; setRate(perSecond: number | undefined): void; cancel(): void; onState?(state: RunState, reason: string | null): void },
    private concurrency: number,
    private maxRate: number | undefined,
    private readonly health: () => WorkerHealth | null = () => null,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.beat(), BEAT_MS);
    this.timer.unref();
  }

  /** Writes one heartbeat and applies what the run's row says; never two at once. */
  beat(): Promise<void> {
    if (this.beating) return this.beating;
    this.beating = (async () => {
      try {
        const answer = await heartbeat(this.db, this.runId, this.worker, this.snapshot());
        if (answer) this.apply(answer.state, answer.pace, answer.stateReason);
      } catch {
        // A missed heartbeat is harmless: liveness is the advisory lock, not the clock. The next one retries.
      } finally {
        this.beating = undefined;
      }
    })();
    return this.beating;
  }

  private apply(state: RunState, pace: RunPace | null, reason: string | null): void {
    if (state !== this.runState) this.controls.onState?.(state, reason);
    this.runState = state;
    if (pace && pace.version > this.paceVersion) {
      this.paceVersion = pace.version;
      if (pace.concurrency) {
        this.concurrency = pace.concurrency;
        this.controls.limiter.resize(pace.concurrency);
      }
      if (pace.maxRate !== undefined) {
        this.maxRate = pace.maxRate ?? undefined;
        this.controls.setRate(this.maxRate);
      }
    }
    if (state === 'cancelling' || state === 'cancelled' || state === 'interrupted' || state === 'failed') {
      this.cancelledBy ??= reason ?? state;
      this.controls.cancel();
    }
    if (state !== 'pausing' && state !== 'paused') this.wake?.();
    if (this.cancelledBy) this.wake?.();
  }

  private pauseRequested(): boolean {
    return (this.runState === 'pausing' || this.runState === 'paused') && !this.cancelledBy;
  }

  async beforeClaim(drain: () => Promise<void>): Promise<void> {
    if (!this.pauseRequested()) return;
    // Finish the batches in flight (they flip and release their claims), then say so and wait.
    await drain();
    this.paused = true;
    try {
      await this.beat();
      await settlePause(this.db, this.runId).catch(() => false);
      while (this.pauseRequested()) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
          setTimeout(resolve, BEAT_MS).unref();
        });
        if (this.pauseRequested()) await this.beat();
      }
    } finally {
      this.wake = undefined;
      this.paused = false;
    }
    await this.beat();
  }

  async afterBatch(batch: { flipped: number; bytes: number; items: RunItem[]; unlogged?: { failed: number; refused: number } }): Promise<void> {
    this.counts.rows += batch.flipped;
    this.counts.bytes += batch.bytes;
    // Problems with no row to name (an object cleanup could not delete) are counted, not logged as items.
    this.counts.failed += batch.unlogged?.failed ?? 0;
    this.counts.refused += batch.unlogged?.refused ?? 0;
    for (const item of batch.items) this.counts[item.outcome === 'failed' ? 'failed' : 'refused']++;
    this.unrecorded.push(...batch.items);
    await this.recordItems();
  }

  /** Items the database could not take yet (it is busy or briefly gone) are kept and sent with the next batch. */
  private async recordItems(): Promise<void> {
    if (!this.unrecorded.length) return;
    const items = this.unrecorded.splice(0);
    try {
      await recordItems(this.db, this.runId, items);
    } catch {
      this.unrecorded.unshift(...items);
    }
  }

  waiting(reason: string | undefined): void {
    this.waitReason = reason;
  }

  private snapshot(): WorkerBeat {
    const now = Date.now();
    if (!this.paused) this.activeMs += now - this.lastTick;
    this.lastTick = now;
    if (!this.paused) this.window.add(this.activeMs, this.counts.rows, this.counts.bytes);
    const recent = this.window.rates();
    return {
      state: this.paused ? 'paused' : this.waitReason ? 'waiting' : 'running',
      waitReason: this.paused ? 'paused' : (this.waitReason ?? null),
      rowsDone: this.counts.rows,
      bytesDone: this.counts.bytes,
      failed: this.counts.failed,
      refused: this.counts.refused,
      recentRowsPerSecond: recent.rows,
      recentBytesPerSecond: recent.bytes,
      concurrency: this.concurrency,
      maxRate: this.maxRate ?? null,
      health: this.health(),
    };
  }

  /** Stops the heartbeat and ends this worker's row (and the run, if it was the last worker). */
  async finish(state: WorkerEnd['state'], error?: unknown): Promise<RunState | undefined> {
    clearInterval(this.timer);
    await this.beating;
    await this.recordItems();
    return endWorker(this.db, this.runId, this.worker, { state, error: error === undefined ? undefined : errorMessage(error), beat: this.snapshot() });
  }
}
