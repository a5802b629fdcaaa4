import { query, type Queryable } from '../db.ts';
import { sqlSha256 } from '../tables.ts';

export interface VersionRow {
  id: string;
  app_id: string;
  version_number: string;
  changelog: string | null;
  environment: string | null;
  created_at: Date;
}

export async function appExists(db: Queryable, appId: string): Promise<boolean> {
  const rows = await query(db, 'SELECT 1 FROM apps WHERE id = $1::bigint', [appId]);
  return rows.length > 0;
}

/** Versions of an app whose id or version_number is `spec` (an id match and a number match may both come back). */
export async function findVersions(db: Queryable, appId: string, spec: string): Promise<VersionRow[]> {
  return query<VersionRow>(
    db,
    `SELECT id, app_id, version_number, changelog, environment, created_at FROM app_versions
      WHERE app_id = $1::bigint AND (version_number = $2 OR ($2 ~ '^[0-9]{1,18}$' AND id = CASE WHEN $2 ~ '^[0-9]{1,18}$' THEN $2::bigint END))
      ORDER BY id`,
    [appId, spec],
  );
}

export interface HistoryRow {
  id: string;
  app_version_id: string;
  action: string;
  path: string | null;
  /** The row's object key, when it has one (its path is in it unless the key is row-qualified). */
  key: string | null;
}

/** Every version-file row of the app up to and including `versionId`, in the order the history was written. */
export async function historyUpTo(db: Queryable, appId: string, versionId: string): Promise<HistoryRow[]> {
  return query<HistoryRow>(
    db,
    `SELECT vf.id, vf.app_version_id, vf.action, af.path, vf.r2_content_key AS key
       FROM app_version_files vf
       JOIN app_versions v ON v.id = vf.app_version_id
       LEFT JOIN app_files af ON af.id = vf.app_file_id
      WHERE v.app_id = $1::bigint
        AND (v.created_at, v.id) <= (SELECT created_at, id FROM app_versions WHERE id = $2::bigint)
      ORDER BY v.created_at, v.id, vf.id`,
    [appId, versionId],
  );
}

export interface CurrentFileRow {
  id: string;
  path: string;
  location: string | null;
  key: string | null;
  /** SHA-256 of the content as it is now: the database content's when present, else content_hash. */
  current_hash: string | null;
  bytes: number | null;
}

export async function currentFiles(db: Queryable, appId: string, lock = false): Promise<CurrentFileRow[]> {
  return query<CurrentFileRow>(
    db,
    `SELECT id, path, storage_location AS location, r2_object_key AS key,
            CASE WHEN content IS NOT NULL THEN ${sqlSha256('content')} ELSE content_hash END AS current_hash,
            coalesce(octet_length(content), size_bytes)::float8 AS bytes
       FROM app_files WHERE app_id = $1::bigint ORDER BY id ${lock ? 'FOR UPDATE' : ''}`,
    [appId],
  );
}

export async function nextVersionId(db: Queryable): Promise<string> {
  const rows = await query<{ id: string }>(db, `SELECT nextval(pg_get_serial_sequence('app_versions', 'id'))::bigint AS id`);
  return rows[0].id;
}
