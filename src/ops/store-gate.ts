import type { ObjectStore } from '../object-store.ts';
import { StoreUnsafeError } from '../errors.ts';
import type { PlanNote } from './plan.ts';
import { deleteGuardOf, missingProperties, probeStore, PROBE_PREFIX, PROBE_REQUESTS, type StoreCheck } from '../store/preflight.ts';
import { describeLifecycle, readLifecycle, TOOL_KEY_PREFIX, type LifecycleCheck } from '../store/lifecycle.ts';

/** The refusal of a command whose objects a lifecycle rule would delete. */
function lifecycleRefusal(bucket: string, lifecycle: LifecycleCheck, what: string): StoreUnsafeError {
  return new StoreUnsafeError(
    [
      `A lifecycle rule of bucket "${bucket}" expires objects under ${TOOL_KEY_PREFIX}: the store would delete them within about a day of their time, behind every client's back. ${what}; nothing was changed.`,
      `  ${describeLifecycle(lifecycle)}.`,
      `Remove the rule, or narrow its prefix away from ${TOOL_KEY_PREFIX} (the dashboard's Object lifecycle rules, \`wrangler r2 bucket lifecycle remove\`, or PutBucketLifecycleConfiguration), then run again; \`overskill-storage doctor\` reads the rules.`,
    ].join('\n'),
  );
}

/**
 * Before the database lets go of its copies (finalize): the bucket's lifecycle rules must not expire the tool's
 * keys. A store that does not say what its rules are is let through with the answer kept for the record.
 */
export async function assertLifecycleKeepsObjects(store: ObjectStore): Promise<LifecycleCheck> {
  const lifecycle = await readLifecycle(store.client, store.bucket);
  if (lifecycle.expiring.length) throw lifecycleRefusal(store.bucket, lifecycle, 'Finalize would clear the database copy of contents whose object is then deleted: the only copy lost');
  return lifecycle;
}

export interface StoreGate {
  check: StoreCheck;
  /** The store lacks a required property and the operator ran anyway (--allow-unconditional-store). */
  overridden: boolean;
}

/** What the run records: each property with what was seen, and whether the operator overrode a failure. */
export function storeGateRecord(gate: StoreGate): Record<string, unknown> {
  return {
    ok: gate.check.ok,
    overridden: gate.overridden,
    checkedAt: gate.check.checkedAt,
    properties: gate.check.properties.map(({ id, holds, required, seen }) => ({ id, holds, required, seen })),
    ...(gate.check.lifecycle ? { lifecycle: gate.check.lifecycle } : {}),
  };
}

/**
 * Every command that writes or deletes objects calls this once, before its first object write: the store
 * must prove the conditions invariant 3 rests on. A store that lacks one is refused (StoreUnsafeError, exit
 * 2) with what it lacks and what that risks, unless the operator allows it, knowing the app does not write
 * to this bucket while the tool runs.
 */
export async function proveStore(store: ObjectStore, options: { allowUnconditional: boolean; keepsObjects?: boolean }): Promise<StoreGate> {
  const check = await probeStore(store);
  // Every delete of a row's object is guarded by the strongest condition the store honours (store/deletes.ts).
  const guard = deleteGuardOf(check);
  store.conditionalDeletes = guard === 'if-match';
  store.lastModifiedDeletes = guard === 'last-modified';
  // The lifecycle refuses the commands whose objects must stay (migrate, maintain); no flag overrides it.
  if (options.keepsObjects && check.lifecycle?.expiring.length) throw lifecycleRefusal(store.bucket, check.lifecycle, 'The objects this command writes would be deleted, and finalize could never clear their database copies');
  const missing = missingProperties(check).filter((p) => p.id !== 'lifecycleKeepsObjects');
  if (!missing.length) return { check, overridden: false };
  if (options.allowUnconditional) return { check, overridden: true };
  throw new StoreUnsafeError(
    [
      `The store behind bucket "${store.bucket}" does not hold what this tool's safety rests on; nothing was uploaded, changed or deleted.`,
      ...missing.map((p) => `  - ${p.property}: ${p.seen}. Without it, ${p.risk}.`),
      'Cloudflare R2 holds all of these. `overskill-storage doctor` shows every property. If the app does not write to this bucket while the tool runs, --allow-unconditional-store runs anyway.',
    ].join('\n'),
  );
}

/** For plans and dry runs: the check a real run does first, and its cost. */
export function storeCheckNote(dryRun: boolean): PlanNote {
  return { note: 'store-check', dryRun, requests: PROBE_REQUESTS.classA + PROBE_REQUESTS.classB + PROBE_REQUESTS.free, prefix: PROBE_PREFIX };
}
