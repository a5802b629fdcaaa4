import type { DatabaseContext, StorageContext } from '../context.ts';
import type { Reporter } from '../reporter.ts';
import type { RunRecordSpec } from '../runs/open-run.ts';
import type { RunState } from '../runs/states.ts';
import { withRecordedRun } from '../runs/recorded.ts';
import { deleteVersions, versionReferences, versionVerdicts, type KeepReason, type RetentionPolicy, type VersionVerdict } from '../sql/prune-versions.ts';
import { deleteUnnamed, emptyTally, quarantineUnnamed } from './guarded-deletes.ts';
import { windowStats, type DeleteWindowStats } from '../store/deletes.ts';
import { assertSchemaReady } from './schema.ts';
import { assertScopeSelects } from './scope.ts';
import { objectItem } from '../sql/run-items.ts';
import { errorMessage } from '../errors.ts';
import { DEFAULT_PRICES, classACost, classBCost, storageCost, type Prices } from '../cost.ts';

export interface PruneOptions {
  policy: RetentionPolicy;
  appIds?: string[];
  quarantinePrefix?: string;
  concurrency: number;
  signal?: AbortSignal;
  now?: Date;
  prices?: Prices;
}

export interface PrunePlan {
  policy: RetentionPolicy;
  apps: { appId: string; versions: number; prune: number }[];
  versions: number;
  prune: number;
  versionFiles: number;
  dbBytes: number;
  objects: number;
  r2Bytes: number;
  /** The guarded delete of each object: HEAD (class B), a tombstone PUT (class A), DELETE (free); a quarantine adds a HEAD, a COPY and a HEAD. */
  requests: { classA: number; classB: number; free: number };
  /** Those requests at the list prices (DeleteObject is free), and the R2 storage a month no longer costs. */
  cost: { requests: number; storageSavedPerMonth: number };
  /** Versions the rules would let go but that stay, and why (another table references them; a kept version without a snapshot needs them). */
  heldBack: { id: string; appId: string; versionNumber: string; reason: KeepReason; referencedBy: string[] | null }[];
}

export interface PruneResult {
  versionsDeleted: number;
  versionFilesDeleted: number;
  appsPruned: number;
  /** Apps whose transaction failed: none of their versions went. */
  failedApps: { appId: string; reason: string }[];
  objectsDeleted: number;
  objectsQuarantined: number;
  objectsRefused: { key: string; reason: string }[];
  objectsFailed: { key: string; reason: string }[];
  deleteWindow: DeleteWindowStats;
  interrupted: boolean;
  run?: { id: string; joined: boolean; state?: RunState };
}

export interface PreparedPrune {
  plan: PrunePlan;
  verdicts: VersionVerdict[];
}

/** Every version's verdict and the plan's totals; reads only. */
export async function preparePrune(context: DatabaseContext, options: PruneOptions): Promise<PreparedPrune> {
  await assertSchemaReady(context.db);
  await assertScopeSelects(context.db, { appIds: options.appIds });
  const verdicts = await versionVerdicts(context.db, options.policy, options.appIds, await versionReferences(context.db), options.now);
  const going = verdicts.filter((v) => v.prune);
  const objects = going.flatMap((v) => v.objects);
  const prices = options.prices ?? DEFAULT_PRICES;
  const perObject = options.quarantinePrefix ? { classA: 2, classB: 3, free: 1 } : { classA: 1, classB: 1, free: 1 };
  const apps = new Map<string, { appId: string; versions: number; prune: number }>();
  for (const v of verdicts) {
    const app = apps.get(v.app_id) ?? { appId: v.app_id, versions: 0, prune: 0 };
    app.versions++;
    if (v.prune) app.prune++;
    apps.set(v.app_id, app);
  }
  return {
    verdicts,
    plan: {
      policy: options.policy,
      apps: [...apps.values()],
      versions: verdicts.length,
      prune: going.length,
      versionFiles: going.reduce((sum, v) => sum + v.version_files, 0),
      dbBytes: going.reduce((sum, v) => sum + v.db_bytes, 0),
      objects: objects.length,
      r2Bytes: objects.reduce((sum, o) => sum + (o.bytes ?? 0), 0),
      requests: { classA: objects.length * perObject.classA, classB: objects.length * perObject.classB, free: objects.length * perObject.free },
      cost: {
        requests: classACost(objects.length * perObject.classA, prices) + classBCost(objects.length * perObject.classB, prices),
        storageSavedPerMonth: options.quarantinePrefix ? 0 : storageCost(objects.reduce((sum, o) => sum + (o.bytes ?? 0), 0), prices),
      },
      heldBack: verdicts
        .filter((v) => v.kept_because === 'referenced' || v.kept_because === 'needed-to-rebuild')
        .map((v) => ({ id: v.id, appId: v.app_id, versionNumber: v.version_number, reason: v.kept_because!, referencedBy: v.referenced_by })),
    },
  };
}

/**
 * Deletes the versions the plan let go, one app at a time: its versions and their version files in one
 * transaction, then their objects through the guarded deletes (only ours, only while no row names them,
 * or moved under the quarantine prefix). A stop between apps leaves every app all-or-nothing.
 */
export async function prune(context: StorageContext, prepared: PreparedPrune, options: PruneOptions & { record: RunRecordSpec }, reporter: Reporter = {}): Promise<PruneResult> {
  const body = async (): Promise<PruneResult> => {
    const result: PruneResult = { versionsDeleted: 0, versionFilesDeleted: 0, appsPruned: 0, failedApps: [], objectsDeleted: 0, objectsQuarantined: 0, objectsRefused: [], objectsFailed: [], deleteWindow: windowStats([]), interrupted: false };
    const tally = emptyTally();
    const byApp = new Map<string, VersionVerdict[]>();
    for (const v of prepared.verdicts.filter((x) => x.prune)) byApp.set(v.app_id, [...(byApp.get(v.app_id) ?? []), v]);
    reporter.stage?.('prune versions', { items: prepared.plan.prune });
    for (const [appId, versions] of byApp) {
      if (options.signal?.aborted) {
        result.interrupted = true;
        break;
      }
      try {
        const deleted = await context.db.transaction((trx) => deleteVersions(trx, appId, versions.map((v) => v.id)));
        result.versionsDeleted += deleted.versions;
        result.versionFilesDeleted += deleted.versionFiles;
        result.appsPruned++;
      } catch (error) {
        result.failedApps.push({ appId, reason: `none of its versions were deleted: ${errorMessage(error)}` });
        reporter.advance?.(versions.length, 0);
        continue;
      }
      const objects = versions.flatMap((v) => v.objects);
      if (options.quarantinePrefix) {
        result.objectsQuarantined += await quarantineUnnamed(context, objects.map((o) => ({ key: o.key, expect: { sha256: o.sha256 ?? undefined } })), options.quarantinePrefix, options.concurrency, tally);
      } else {
        await deleteUnnamed(context, objects.map((o) => ({ key: o.key, expect: { sha256: o.sha256 ?? undefined } })), options.concurrency, tally);
      }
      reporter.advance?.(versions.length, versions.reduce((sum, v) => sum + v.db_bytes, 0));
    }
    result.objectsDeleted = options.quarantinePrefix ? 0 : tally.deleted.length;
    result.objectsRefused = tally.refused;
    result.objectsFailed = tally.failed;
    result.deleteWindow = windowStats(tally.windows);
    reporter.stageDone?.('prune versions');
    return result;
  };
  const recorded = await withRecordedRun(context, { ...options.record, pausable: false }, body, (done) => ({
    rows: done.versionsDeleted,
    bytes: 0,
    items: [...done.objectsFailed.map((f) => objectItem(f.key, 'failed', f.reason)), ...done.objectsRefused.map((r) => objectItem(r.key, 'refused', r.reason))],
    unlogged: { failed: done.failedApps.length, refused: 0 },
    interrupted: done.interrupted,
  }));
  return { ...recorded.result, run: recorded.run };
}
