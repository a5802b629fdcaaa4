import { DEFAULT_PART_SIZE, partSizeFor } from '../store/parts.ts';

/**
 * Requests one item may make in sequence besides its multipart parts: a conditional write refused and
 * looked at again (HEAD, GET to hash, PUT) a few times, a read-back, a guarded delete.
 */
const ITEM_REQUESTS = 8;

/** What the heartbeat says about progress, so that `status` can name a worker that stopped moving. */
export interface ActivitySnapshot {
  inFlightItems: number;
  /** The last time an item of this worker started or ended, or one of its requests ended. */
  lastProgressAt: string;
  /** Milliseconds since then, by the worker's own clock when it wrote its heartbeat. */
  idleMs: number;
  /** The longest one request can take with all its attempts: no progress for longer looks stalled. */
  requestBoundMs: number;
}

/**
 * One worker's items in flight and when it last moved. The batch runner tells it when items start and
 * end; the store tells it when requests end. An item that has not ended within the bound its requests
 * allow (`itemBoundMs`) is failed as `stalled` by the runner, so no batch waits for ever.
 */
export class WorkerActivity {
  private inFlight = 0;
  private lastProgress = Date.now();

  constructor(
    readonly requestBoundMs: number,
    private readonly partSize = DEFAULT_PART_SIZE,
  ) {}

  /** How long one item of `bytes` may take: every request it can make, each with all its attempts. */
  itemBoundMs(bytes: number | null | undefined): number {
    const size = bytes ?? 0;
    const parts = size > this.partSize ? Math.ceil(size / partSizeFor(size, this.partSize)) + 2 : 0;
    return this.requestBoundMs * (ITEM_REQUESTS + parts);
  }

  itemStarted(): void {
    this.inFlight++;
    this.moved();
  }

  itemEnded(): void {
    this.inFlight--;
    this.moved();
  }

  moved(): void {
    this.lastProgress = Date.now();
  }

  snapshot(): ActivitySnapshot {
    const now = Date.now();
    return { inFlightItems: this.inFlight, lastProgressAt: new Date(this.lastProgress).toISOString(), idleMs: now - this.lastProgress, requestBoundMs: this.requestBoundMs };
  }
}

/**
 * A worker with items in flight and no progress for longer than one request can take. `sinceBeatMs` is the
 * time since the heartbeat that carried the snapshot (so the worker's and the reader's clocks need not agree).
 */
export function stalledForMs(activity: ActivitySnapshot | null | undefined, sinceBeatMs: number): number | undefined {
  if (!activity || activity.inFlightItems <= 0) return undefined;
  const idle = activity.idleMs + Math.max(0, sinceBeatMs);
  return idle > activity.requestBoundMs ? idle : undefined;
}
