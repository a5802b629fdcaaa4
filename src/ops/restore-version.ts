import type { Knex } from 'knex';
import type { StorageContext } from '../context.ts';
import { query } from '../db.ts';
import { FILES, SNAPSHOTS, VERSION_FILES } from '../tables.ts';
import { appExists, currentFiles, findVersions, historyUpTo, nextVersionId, type CurrentFileRow, type VersionRow } from '../sql/versions.ts';
import { contentRefs, readStoredContent } from './read-content.ts';
import { decodeSnapshot, encodeSnapshot, type FileMap } from '../snapshot.ts';
import { DataError, UsageError } from '../errors.ts';
import { sha256Hex } from '../hashing.ts';
import { pathOfVersionFileKey, versionFileKey } from '../keys.ts';
import { placementFor, type PlacementPolicy } from '../placement.ts';
import { contentTypeFor } from '../content-type.ts';
import { mapLimit } from '../pool.ts';
import { assertSchemaReady } from './schema.ts';
import { keysStillReferenced } from '../sql/references.ts';

export interface DiffEntry {
  path: string;
  oldBytes?: number;
  newBytes?: number;
}

export interface RestoreDiff {
  added: DiffEntry[];
  changed: DiffEntry[];
  deleted: DiffEntry[];
  unchanged: number;
}

export interface PreparedRestore {
  appId: string;
  version: VersionRow;
  snapshotSource: 'database' | 'r2' | 'version-files';
  files: FileMap;
  current: CurrentFileRow[];
  diff: RestoreDiff;
}

export interface RestoreResult {
  newVersionId: string;
  newVersionNumber: string;
  uploaded: number;
  uploadedBytes: number;
  diff: RestoreDiff;
  /** Paths stored in the database only, because their path cannot make a safe object key. */
  keptInDatabase: { path: string; reason: string }[];
}

/** Finds the version, loads its files by hybrid retrieval, and diffs them against the app's current files. */
export async function prepareRestore(context: StorageContext, appId: string, versionSpec: string): Promise<PreparedRestore> {
  await assertSchemaReady(context.db);
  if (!(await appExists(context.db, appId))) throw new UsageError(`App ${appId} does not exist.`);
  const versions = await findVersions(context.db, appId, versionSpec);
  if (versions.length === 0) throw new UsageError(`App ${appId} has no version with id or version_number "${versionSpec}".`);
  if (versions.length > 1) {
    throw new UsageError(
      `"${versionSpec}" is ambiguous for app ${appId}: it matches versions ${versions.map((v) => `#${v.id} (${v.version_number})`).join(', ')}. Pass the version id instead.`,
    );
  }
  const version = versions[0];
  const { files, source } = await loadVersionFiles(context, appId, version);
  const current = await currentFiles(context.db, appId);
  return { appId, version, snapshotSource: source, files, current, diff: diffFiles(current, files) };
}

async function loadVersionFiles(context: StorageContext, appId: string, version: VersionRow): Promise<{ files: FileMap; source: PreparedRestore['snapshotSource'] }> {
  const [ref] = await contentRefs(context.db, SNAPSHOTS, 't.id = $1::bigint', [version.id], Number.MAX_SAFE_INTEGER);
  if (ref && (ref.hasContent || ref.key)) {
    const read = await readStoredContent(context, ref);
    const label = `files_snapshot of version ${version.version_number} (#${version.id})`;
    if (read.source === 'database' && ref.hash && !read.verified && ref.location !== 'database') {
      throw new DataError(`${label} no longer matches its recorded hash; refusing to restore from it`);
    }
    return { files: decodeSnapshot(read.content, label), source: read.source };
  }
  // No snapshot: rebuild the version by replaying its history, as the plan's restore_from_files_data does.
  const history = await historyUpTo(context.db, appId, version.id);
  if (!history.length) throw new DataError(`Version #${version.id} has no snapshot and no version files to rebuild it from.`);
  const files: FileMap = new Map();
  const refs = new Map((await contentRefs(context.db, VERSION_FILES, 't.id = ANY($1::bigint[])', [history.map((row) => row.id)], Number.MAX_SAFE_INTEGER)).map((r) => [r.id, r]));
  for (const row of history) {
    // A row whose file the app deleted has no app_file; if it was migrated under a path key, the key names the path.
    const path = row.path ?? (row.key ? pathOfVersionFileKey(row.key) : undefined);
    if (path === undefined) throw new DataError(`Version file #${row.id} has no app file (and so no path); version #${version.id} cannot be rebuilt from history.`);
    if (row.action === 'deleted') {
      files.delete(path);
      continue;
    }
    const contentRef = refs.get(row.id);
    if (!contentRef || (!contentRef.hasContent && !contentRef.key)) continue; // an action without content changes nothing
    files.set(path, (await readStoredContent(context, contentRef)).content);
  }
  return { files, source: 'version-files' };
}

export function diffFiles(current: CurrentFileRow[], files: FileMap): RestoreDiff {
  const diff: RestoreDiff = { added: [], changed: [], deleted: [], unchanged: 0 };
  const byPath = new Map(current.map((row) => [row.path, row]));
  for (const [path, content] of files) {
    const existing = byPath.get(path);
    const newBytes = Buffer.byteLength(content, 'utf8');
    if (!existing) diff.added.push({ path, newBytes });
    else if (existing.current_hash !== sha256Hex(content)) diff.changed.push({ path, oldBytes: existing.bytes ?? undefined, newBytes });
    else diff.unchanged++;
  }
  for (const row of current) if (!files.has(row.path)) diff.deleted.push({ path: row.path, oldBytes: row.bytes ?? undefined });
  return diff;
}

interface PlacedFile {
  path: string;
  content: string;
  hash: string;
  size: number;
  location: 'database' | 'hybrid';
  key: string | null;
}

/**
 * Makes the app's files equal to the version in one transaction. New contents that belong in R2 are
 * uploaded first, under the new version's own keys (apps/{app}/versions/{new id}/{path}), so no object a
 * current row names is ever overwritten and no row is committed pointing at an object that was not
 * written and verified. If anything fails, the transaction rolls back and app_files is exactly as before.
 */
export async function applyRestore(context: StorageContext, prepared: PreparedRestore, policy: PlacementPolicy, concurrency = 8): Promise<RestoreResult> {
  const newVersionId = await nextVersionId(context.db);
  const changedPaths = new Set([...prepared.diff.added, ...prepared.diff.changed].map((entry) => entry.path));
  const keptInDatabase: RestoreResult['keptInDatabase'] = [];
  const placed: PlacedFile[] = [];
  for (const path of changedPaths) {
    const content = prepared.files.get(path)!;
    const size = Buffer.byteLength(content, 'utf8');
    let location = placementFor(size, 'migrate', policy) === 'database' ? ('database' as const) : ('hybrid' as const);
    let key: string | null = null;
    if (location === 'hybrid') {
      const derived = versionFileKey(prepared.appId, newVersionId, path);
      if (derived.ok) key = derived.key;
      else {
        keptInDatabase.push({ path, reason: derived.reason });
        location = 'database';
      }
    }
    placed.push({ path, content, hash: sha256Hex(content), size, location, key });
  }
  const uploads = placed.filter((file) => file.key);
  // The new version's keys are fresh; an object of ours there is a leftover of an attempt that rolled back.
  const intent = { kind: 'create' as const, mayReplaceOurs: async (key: string) => !(await keysStillReferenced(context.db, [key])).has(key) };
  await mapLimit(uploads, concurrency, (file) => context.store.putVerified({ key: file.key!, body: Buffer.from(file.content, 'utf8'), sha256: file.hash, contentType: contentTypeFor(file.path), intent }));

  const newVersionNumber = `${prepared.version.version_number}-restored-${newVersionId}`;
  await context.db.transaction(async (trx) => {
    const locked = await currentFiles(trx, prepared.appId, true);
    const before = new Map(prepared.current.map((row) => [row.id, row.current_hash]));
    const drifted = locked.length !== prepared.current.length || locked.some((row) => before.get(row.id) !== row.current_hash);
    if (drifted) throw new DataError("The app's files changed after the diff was shown; nothing was restored. Run the command again to see the new diff.");
    const idByPath = new Map(locked.map((row) => [row.path, row.id]));
    const updates = placed.filter((file) => idByPath.has(file.path));
    const inserts = placed.filter((file) => !idByPath.has(file.path));
    const fileIds = new Map<string, string>();
    if (updates.length) {
      const rows = await query<{ id: string; path: string }>(
        trx,
        `UPDATE app_files f SET content = u.content, storage_location = u.location, r2_object_key = u.key, content_hash = u.hash, size_bytes = u.size, updated_at = now()
           FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[]) AS u(id, content, location, key, hash, size)
          WHERE f.id = u.id RETURNING f.id, f.path`,
        [updates.map((f) => idByPath.get(f.path)), updates.map((f) => f.content), updates.map((f) => f.location), updates.map((f) => f.key), updates.map((f) => f.hash), updates.map((f) => f.size)],
      );
      for (const row of rows) fileIds.set(row.path, row.id);
    }
    if (inserts.length) {
      const rows = await query<{ id: string; path: string }>(
        trx,
        `INSERT INTO app_files (app_id, path, content, file_type, size_bytes, storage_location, r2_object_key, content_hash, created_at, updated_at)
         SELECT $1::bigint, u.path, u.content, substring(u.path from '\\.([A-Za-z0-9]+)$'), u.size, u.location, u.key, u.hash, now(), now()
           FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[]) AS u(path, content, location, key, hash, size)
         RETURNING id, path`,
        [prepared.appId, inserts.map((f) => f.path), inserts.map((f) => f.content), inserts.map((f) => f.location), inserts.map((f) => f.key), inserts.map((f) => f.hash), inserts.map((f) => f.size)],
      );
      for (const row of rows) fileIds.set(row.path, row.id);
    }
    const deletedIds = prepared.diff.deleted.map((entry) => idByPath.get(entry.path)!).filter(Boolean);
    if (deletedIds.length) await deleteFiles(trx, deletedIds);
    const snapshot = encodeSnapshot(prepared.files);
    await query(
      trx,
      `INSERT INTO app_versions (id, app_id, version_number, changelog, files_snapshot, environment, storage_strategy, snapshot_hash, snapshot_size, created_at, updated_at)
       VALUES ($1::bigint, $2::bigint, $3, $4, $5, $6, 'database', $7, $8, now(), now())`,
      [
        newVersionId,
        prepared.appId,
        newVersionNumber,
        `Restored from version ${prepared.version.version_number} (#${prepared.version.id}): ${prepared.diff.added.length} added, ${prepared.diff.changed.length} changed, ${prepared.diff.deleted.length} deleted`,
        snapshot,
        prepared.version.environment,
        sha256Hex(snapshot),
        Buffer.byteLength(snapshot, 'utf8'),
      ],
    );
    if (placed.length) {
      await query(
        trx,
        `INSERT INTO app_version_files (app_version_id, app_file_id, action, content, storage_location, r2_content_key, content_hash, content_size, created_at, updated_at)
         SELECT $1::bigint, u.file_id, 'restored', u.content, u.location, u.key, u.hash, u.size, now(), now()
           FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[]) AS u(file_id, content, location, key, hash, size)`,
        [newVersionId, placed.map((f) => fileIds.get(f.path)), placed.map((f) => f.content), placed.map((f) => f.location), placed.map((f) => f.key), placed.map((f) => f.hash), placed.map((f) => f.size)],
      );
    }
  });
  return {
    newVersionId,
    newVersionNumber,
    uploaded: uploads.length,
    uploadedBytes: uploads.reduce((sum, f) => sum + f.size, 0),
    diff: prepared.diff,
    keptInDatabase,
  };
}

/**
 * Deletes app files. History rows that reference them keep their content and keys but lose the link when
 * a foreign key insists (the version snapshots still record the paths).
 */
async function deleteFiles(trx: Knex.Transaction, ids: string[]): Promise<void> {
  await query(trx, 'SAVEPOINT delete_files');
  try {
    await query(trx, 'DELETE FROM app_files WHERE id = ANY($1::bigint[])', [ids]);
    await query(trx, 'RELEASE SAVEPOINT delete_files');
  } catch (error) {
    if ((error as { code?: string }).code !== '23503') throw error;
    await query(trx, 'ROLLBACK TO SAVEPOINT delete_files');
    await query(trx, 'UPDATE app_version_files SET app_file_id = NULL WHERE app_file_id = ANY($1::bigint[])', [ids]);
    await query(trx, 'DELETE FROM app_files WHERE id = ANY($1::bigint[])', [ids]);
  }
}

export { FILES };
