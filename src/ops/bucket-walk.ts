import type { StorageContext } from '../context.ts';
import type { StoredObject } from '../object-store.ts';
import type { StoredTable } from '../tables.ts';
import type { RowFilter } from '../sql/filters.ts';
import { appsWithKeysOutside, keyedRowsOfApps, type KeyedRow } from '../sql/keyed-rows.ts';
import { appIdOfKey } from '../keys.ts';

export interface AppGroup {
  appIds: string[];
  /** Objects under apps/{id}/ for these apps. */
  objects: StoredObject[];
  /** Rows of these apps that name a key. */
  rows: KeyedRow[];
}

export interface BucketWalkOptions {
  tables: StoredTable[];
  filter: RowFilter;
  withMd5: boolean;
  /** Group consecutive apps until this many objects are collected (one DB query per group). */
  groupObjects?: number;
  signal?: AbortSignal;
}

/**
 * Walks the bucket's `apps/` listing (1000 keys per request) and pairs it with the database, app group by
 * app group. Every key of one app shares the prefix `apps/{id}/`, so an app's objects arrive together in
 * any listing order a server uses; memory holds one group, never the whole bucket or table. Apps with
 * keyed rows but no object at all come last. Objects outside `apps/{digits}/` are not ours and are skipped.
 */
export async function* walkBucketByApp(context: StorageContext, options: BucketWalkOptions): AsyncGenerator<AppGroup> {
  const groupLimit = options.groupObjects ?? 5000;
  const seen = new Set<string>();
  const onlyApps = options.filter.appIds?.length ? options.filter.appIds : undefined;
  const prefixes = onlyApps ? onlyApps.map((id) => `apps/${id}/`) : ['apps/'];

  let pendingApps: string[] = [];
  let pendingObjects: StoredObject[] = [];
  const flush = async (): Promise<AppGroup | undefined> => {
    if (!pendingApps.length) return undefined;
    const rows = await keyedRowsOfApps(context.db, options.tables, pendingApps, options.filter, { withMd5: options.withMd5 });
    const group = { appIds: pendingApps, objects: pendingObjects, rows };
    pendingApps = [];
    pendingObjects = [];
    return group;
  };

  for (const prefix of prefixes) {
    let currentApp: string | undefined;
    for await (const object of context.store.list(prefix)) {
      if (options.signal?.aborted) return;
      const appId = appIdOfKey(object.key);
      if (!appId) continue;
      if (appId !== currentApp) {
        if (pendingObjects.length >= groupLimit) {
          const group = await flush();
          if (group) yield group;
        }
        currentApp = appId;
        if (!seen.has(appId)) {
          seen.add(appId);
          pendingApps.push(appId);
        }
      }
      pendingObjects.push(object);
    }
  }
  const last = await flush();
  if (last) yield last;

  const missingApps = onlyApps ? onlyApps.filter((id) => !seen.has(id)) : await appsWithKeysOutside(context.db, options.tables, [...seen], options.filter);
  for (let start = 0; start < missingApps.length; start += 200) {
    if (options.signal?.aborted) return;
    const appIds = missingApps.slice(start, start + 200);
    const rows = await keyedRowsOfApps(context.db, options.tables, appIds, options.filter, { withMd5: options.withMd5 });
    if (rows.length) yield { appIds, objects: [], rows };
  }
}
