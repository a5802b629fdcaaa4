import type { ActivitySnapshot } from './activity.ts';
import { stalledForMs } from './activity.ts';
import type { TransportStats } from '../store/transport.ts';
import { describePace, type PaceSnapshot } from '../store/bucket-pace.ts';

/** What each heartbeat says about a worker besides its counts: is it moving, and is its HTTP pool starved. */
export interface WorkerHealth {
  activity?: ActivitySnapshot;
  transport?: TransportStats;
  /** The pace the bucket's budget holds the worker to (store/bucket-pace.ts). */
  pace?: PaceSnapshot;
}

/** The health fields `status` and `--json` show for a live worker. */
export function describeHealth(health: WorkerHealth | null | undefined, sinceBeatMs: number): { stalledForMs?: number; pool?: string; pace?: string; bucketLimited?: boolean } {
  const stalled = stalledForMs(health?.activity, sinceBeatMs);
  const t = health?.transport;
  const pool = t && t.requests
    ? `${t.requests} requests, ${t.queued} waited for a socket (mean ${t.queueWaitMs.mean} ms, max ${t.queueWaitMs.max} ms); latency p50 ${t.latencyMs.p50} ms, p95 ${t.latencyMs.p95} ms${t.timedOut ? `; ${t.timedOut} past their deadline` : ''}`
    : undefined;
  const pace = describePace(health?.pace);
  const bucketLimited = health?.pace ? health.pace.write.bucketLimited || health.pace.read.bucketLimited : undefined;
  return { stalledForMs: stalled, pool, ...(pace ? { pace } : {}), ...(bucketLimited ? { bucketLimited } : {}) };
}
