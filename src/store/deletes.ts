import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanEtag } from '../hashing.ts';
import { describeS3Error, isNotFound, isPreconditionFailed, isKeyWriteLimited, retryErrorType } from './client.ts';
import { tombstoneMetadata } from './ownership.ts';
import type { StoreCore } from './core.ts';

/** What the caller knows the object must still be: the ETag it listed, and/or the SHA-256 of the row it served. */
export interface DeleteExpectation {
  etag?: string;
  sha256?: string;
}

export type GuardedDelete =
  | {
      status: 'deleted';
      /** From sending the tombstone to the delete's answer: how long R2's one-write-per-second-per-key rule must cover. */
      windowMs: number;
      /** False when the delete had to fall back to a plain HEAD-then-DELETE (see below). */
      guarded: boolean;
    }
  | { status: 'gone' }
  /** Left on purpose: not ours, or changed since it was checked. `tombstoned`: a 0-byte tombstone of ours was left at the key. */
  | { status: 'refused'; reason: string; tombstoned?: boolean }
  /** The store did not do what was asked (an error answer or no answer): a failure, not a choice. */
  | { status: 'failed'; reason: string; tombstoned?: boolean };

/** The delete is sent only this soon after the tombstone was: well inside the second R2 refuses other writes. */
const TOMBSTONE_GUARD_MS = 600;
const ROUNDS = 3;

/**
 * Deletes an object only if this tool wrote it and it is still what the caller checked.
 *
 * On a store proven to honour If-Match on DeleteObject (S3's conditional deletes, since 2025-09; the store
 * gate probes it), that is the guard: HEAD, then DELETE with If-Match on the ETag the HEAD saw, so a write by
 * anyone since makes the delete fail with 412 and nothing is deleted.
 *
 * On a store proven to honour R2's conditional delete (`x-amz-if-match-last-modified-time`), the DELETE carries
 * the Last-Modified the HEAD saw instead (deleteIfUnmodified).
 *
 * Elsewhere (a store that proved neither), the check and the delete are bridged by a conditional write, and
 * the DELETE still carries If-Match on our tombstone's ETag for a store that honours it unproven:
 * 1. HEAD: the object must carry our marker and match `expect`.
 * 2. PUT a 0-byte tombstone of ours with `If-Match` on that ETag: atomic, so a write by anyone since the HEAD
 *    fails the condition (412) and nothing is deleted.
 * 3. DELETE at once, with no automatic retry. R2 takes one write per key per second, so for that second a PUT
 *    by the app gets 429 and retries after the delete, instead of landing just before it and being deleted.
 * If the delete itself is refused with 429 (should R2 count deletes as writes), it waits out the second and
 * falls back to HEAD-then-DELETE on the tombstone; only then is there an unguarded window, reported as such.
 */
export async function deleteIfOurs(core: StoreCore, key: string, expect: DeleteExpectation = {}): Promise<GuardedDelete> {
  let head = await core.head(key);
  if (!head) return { status: 'gone' };
  if (!head.ours) return { status: 'refused', reason: 'written by someone else (no overskill-storage marker), most likely the app; not deleted' };
  if (!head.tombstone) {
    if (expect.etag !== undefined && head.etag !== expect.etag) return { status: 'refused', reason: 'rewritten since it was listed; not deleted' };
    if (expect.sha256 !== undefined && head.sha256 !== expect.sha256) return { status: 'refused', reason: 'holds other content than the row it was checked against; not deleted' };
  }
  if (core.conditionalDeletes) return deleteIfMatch(core, key, head.etag);
  if (core.lastModifiedDeletes && head.lastModified) return deleteIfUnmodified(core, key, head.lastModified);
  let etag = head.etag;
  let tombstoned = false;
  for (let round = 1; round <= ROUNDS; round++) {
    const sentAt = performance.now();
    let tombstoneEtag: string;
    try {
      // No automatic retry: a 429 means someone wrote the key within the last second, so our condition would
      // fail anyway; the object is left for the next run rather than waited on.
      const result = await core.objects.put(key, Buffer.alloc(0), { metadata: tombstoneMetadata(), ifMatch: etag }, false);
      tombstoneEtag = cleanEtag(result.etag);
    } catch (error) {
      if (isPreconditionFailed(error) || isNotFound(error)) {
        // Someone wrote or removed it since we looked; it may also be our own tombstone whose answer was lost.
        head = await core.head(key);
        if (!head) return { status: 'gone' };
        if (head.tombstone) {
          tombstoned = true;
          etag = head.etag;
          continue;
        }
        return { status: 'refused', reason: 'rewritten since it was checked (a conditional write failed); not deleted' };
      }
      if (isKeyWriteLimited(error)) {
        // Someone (our own upload, or the app) wrote the key within the last second. Once the second is over,
        // look again: the object must still be the one checked, or it is left alone.
        if (round === ROUNDS) return { status: 'refused', reason: 'written within the last second, again and again; left for the next run', tombstoned };
        await sleep(1100);
        const again = await core.head(key);
        if (!again) return { status: 'gone' };
        if (again.etag !== etag) return { status: 'refused', reason: 'rewritten since it was checked; not deleted', tombstoned };
        continue;
      }
      return { status: 'failed', reason: `could not be replaced by a tombstone: ${describeS3Error(error)}`, tombstoned };
    }
    tombstoned = true;
    if (performance.now() - sentAt > TOMBSTONE_GUARD_MS) {
      // Too slow an answer to be sure the second is not over: once it surely is, start again from our own
      // tombstone (a write by anyone since then fails that tombstone's condition).
      etag = tombstoneEtag;
      // It was written somewhere between sending and the answer: a second from the answer is surely past it.
      await sleep(1100);
      continue;
    }
    try {
      await core.objects.delete(key, false, tombstoneEtag);
      return { status: 'deleted', windowMs: performance.now() - sentAt, guarded: true };
    } catch (error) {
      if (isPreconditionFailed(error)) return { status: 'refused', reason: 'rewritten after our tombstone (the conditional delete failed); not deleted', tombstoned: false };
      // A delete refused as a write within the second (should R2 count deletes), or one the store failed to do
      // (5xx, no answer: it may or may not have landed): once our tombstone is surely the key's only recent
      // write, it is deleted if it is still our tombstone.
      if (!isKeyWriteLimited(error) && retryErrorType(error) === 'CLIENT_ERROR') {
        return { status: 'failed', reason: `delete failed (a 0-byte tombstone of ours is left at the key): ${describeS3Error(error)}`, tombstoned: true };
      }
      return fallBack(core, key, tombstoneEtag, sentAt);
    }
  }
  return { status: 'refused', reason: 'the key kept changing; left for the next run', tombstoned };
}

/** The guard on a store that honours If-Match on DeleteObject: the object goes only while it has the ETag checked. */
async function deleteIfMatch(core: StoreCore, key: string, etag: string): Promise<GuardedDelete> {
  const sentAt = performance.now();
  try {
    // Safe to retry: a repeat after a delete that landed answers 404, after a rewrite 412.
    await core.objects.delete(key, true, etag);
    return { status: 'deleted', windowMs: performance.now() - sentAt, guarded: true };
  } catch (error) {
    if (isPreconditionFailed(error)) return { status: 'refused', reason: 'rewritten since it was checked (the conditional delete failed); not deleted' };
    // The object was there when checked: a 404 now is most likely our own first attempt, whose answer was
    // lost before the retry. Counted as deleted, so the caller's re-check (a row that started naming the key
    // meanwhile gets its content put back) still runs.
    if (isNotFound(error)) return { status: 'deleted', windowMs: performance.now() - sentAt, guarded: true };
    return { status: 'failed', reason: `delete failed: ${describeS3Error(error)}` };
  }
}

/**
 * The guard on a store that honours R2's conditional delete: the object goes only while its Last-Modified is
 * the one the HEAD saw. HTTP dates carry whole seconds; R2 takes one write per key per second, so every
 * version of a key has its own second and a write by anyone since the HEAD fails the condition (412).
 */
async function deleteIfUnmodified(core: StoreCore, key: string, lastModified: Date): Promise<GuardedDelete> {
  const sentAt = performance.now();
  try {
    // Safe to retry: a repeat after a delete that landed finds no object (deleted as usual), after a rewrite 412.
    await core.objects.delete(key, true, undefined, lastModified);
    return { status: 'deleted', windowMs: performance.now() - sentAt, guarded: true };
  } catch (error) {
    if (isPreconditionFailed(error)) return { status: 'refused', reason: 'rewritten since it was checked (the conditional delete failed: another Last-Modified); not deleted' };
    if (isNotFound(error)) return { status: 'deleted', windowMs: performance.now() - sentAt, guarded: true };
    return { status: 'failed', reason: `delete failed: ${describeS3Error(error)}` };
  }
}

async function fallBack(core: StoreCore, key: string, tombstoneEtag: string, sentAt: number): Promise<GuardedDelete> {
  await sleep(Math.max(0, 1100 - (performance.now() - sentAt)));
  const checkedAt = performance.now();
  const head = await core.head(key);
  if (!head) return { status: 'gone' };
  if (!head.tombstone || head.etag !== tombstoneEtag) return { status: 'refused', reason: 'rewritten after our tombstone; not deleted' };
  try {
    await core.objects.delete(key, false, tombstoneEtag);
    return { status: 'deleted', windowMs: performance.now() - checkedAt, guarded: false };
  } catch (error) {
    return { status: 'failed', reason: `delete failed (a 0-byte tombstone of ours is left at the key): ${describeS3Error(error)}`, tombstoned: true };
  }
}

export interface DeleteWindowStats {
  count: number;
  unguarded: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** Summary of the windows of a run's deletes (reported by cleanup and rollback --purge). */
export function windowStats(windows: { ms: number; guarded: boolean }[]): DeleteWindowStats {
  const sorted = windows.map((w) => w.ms).sort((a, b) => a - b);
  const at = (q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : 0);
  const round = (ms: number) => Math.round(ms * 10) / 10;
  return { count: sorted.length, unguarded: windows.filter((w) => !w.guarded).length, p50Ms: round(at(0.5)), p99Ms: round(at(0.99)), maxMs: round(sorted[sorted.length - 1] ?? 0) };
}
