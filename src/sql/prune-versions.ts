import { query, type Queryable } from '../db.ts';

/** How long a version is kept at least, and how many of each app's newest are kept whatever their age. */
export interface RetentionPolicy {
  keepLast: number;
  keepWithinMs: number;
}

/** Why a version is kept (when it is), for the plan. */
export type KeepReason = 'newest' | 'keep-last' | 'keep-within' | 'referenced' | 'needed-to-rebuild';

export interface VersionVerdict {
  id: string;
  app_id: string;
  version_number: string;
  created_at: Date;
  /** 1 = the app's newest. */
  rank: number;
  prune: boolean;
  /** Why it stays, the first reason that holds (null for a version that goes). */
  kept_because: KeepReason | null;
  /** The tables and columns whose foreign keys reference it. */
  referenced_by: string[] | null;
  version_files: number;
  /** Content bytes this version holds in the database (its snapshot and its version files). */
  db_bytes: number;
  /** Its objects (the snapshot's and the version files'), with their sizes and hashes. */
  objects: { key: string; bytes: number | null; sha256: string | null }[];
}

/** Foreign keys that point at app_versions from tables other than app_version_files (which goes with its version). */
export async function versionReferences(db: Queryable): Promise<{ table: string; column: string }[]> {
  return query<{ table: string; column: string }>(
    db,
    `SELECT c.conrelid::regclass::text AS table, a.attname AS column
       FROM pg_constraint c
       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
      WHERE c.contype = 'f' AND c.confrelid = 'app_versions'::regclass AND c.conrelid <> 'app_version_files'::regclass
      ORDER BY 1, 2`,
  );
}

const ident = (name: string) => name.split('.').map((part) => `"${part.replace(/^"|"$/g, '').replace(/"/g, '""')}"`).join('.');

/**
 * Every version of the chosen apps with its verdict under the policy, in one statement. A version goes only
 * when both rules allow it (not among the app's `keepLast` newest, and older than `keepWithinMs`); the
 * newest never goes; one that another table references is kept; and so is every version older than a kept
 * version that has no snapshot, because restoring that one replays the version files of all before it.
 */
export async function versionVerdicts(db: Queryable, policy: RetentionPolicy, appIds: string[] | undefined, references: { table: string; column: string }[], now = new Date()): Promise<VersionVerdict[]> {
  const referenced = references.length
    ? `array_remove(ARRAY[${references.map((r) => `CASE WHEN EXISTS (SELECT 1 FROM ${ident(r.table)} x WHERE x.${ident(r.column)} = v.id) THEN ${`'${r.table.replace(/'/g, "''")}.${r.column.replace(/'/g, "''")}'`} END`).join(', ')}]::text[], NULL)`
    : `ARRAY[]::text[]`;
  return query<VersionVerdict>(
    db,
    `WITH ranked AS (
       SELECT v.id, v.app_id, v.version_number, v.created_at,
              row_number() OVER (PARTITION BY v.app_id ORDER BY v.created_at DESC, v.id DESC)::int AS rank,
              (v.files_snapshot IS NOT NULL OR v.r2_snapshot_key IS NOT NULL) AS has_snapshot,
              ${referenced} AS referenced_by
         FROM app_versions v
        WHERE ($1::bigint[] IS NULL OR v.app_id = ANY ($1::bigint[]))),
     ruled AS (
       SELECT r.*,
              CASE WHEN r.rank = 1 THEN 'newest'
                   WHEN r.rank <= $2::int THEN 'keep-last'
                   WHEN r.created_at >= $3::timestamptz - make_interval(secs => $4::float8 / 1000) THEN 'keep-within'
                   WHEN cardinality(r.referenced_by) > 0 THEN 'referenced' END AS first_reason
         FROM ranked r),
     needed AS (
       SELECT u.*, min(u.rank) FILTER (WHERE u.first_reason IS NOT NULL AND NOT u.has_snapshot) OVER (PARTITION BY u.app_id) AS newest_unsnapshotted_kept
         FROM ruled u)
     SELECT n.id, n.app_id, n.version_number, n.created_at, n.rank,
            (n.first_reason IS NULL AND (n.newest_unsnapshotted_kept IS NULL OR n.rank < n.newest_unsnapshotted_kept)) AS prune,
            coalesce(n.first_reason, CASE WHEN n.rank > n.newest_unsnapshotted_kept THEN 'needed-to-rebuild' END) AS kept_because,
            nullif(n.referenced_by, ARRAY[]::text[]) AS referenced_by,
            (SELECT count(*)::int FROM app_version_files f WHERE f.app_version_id = n.id) AS version_files,
            (coalesce(octet_length(v.files_snapshot), 0) + coalesce((SELECT sum(octet_length(f.content)) FROM app_version_files f WHERE f.app_version_id = n.id), 0))::float8 AS db_bytes,
            coalesce((SELECT jsonb_agg(o) FROM (
                SELECT v.r2_snapshot_key AS key, v.snapshot_size::float8 AS bytes, v.snapshot_hash AS sha256 WHERE v.r2_snapshot_key IS NOT NULL
                UNION ALL
                SELECT f.r2_content_key, f.content_size::float8, f.content_hash FROM app_version_files f WHERE f.app_version_id = n.id AND f.r2_content_key IS NOT NULL) o), '[]'::jsonb) AS objects
       FROM needed n JOIN app_versions v ON v.id = n.id
      ORDER BY n.app_id, n.rank`,
    [appIds?.length ? appIds : null, policy.keepLast, now, policy.keepWithinMs],
  );
}

/**
 * One app's versions, with their version-file rows; the caller runs it in one transaction per app. A
 * version that became referenced meanwhile makes the delete fail (the foreign key), and the app keeps all.
 */
export async function deleteVersions(trx: Queryable, appId: string, versionIds: string[]): Promise<{ versions: number; versionFiles: number }> {
  const locked = await query<{ id: string }>(trx, `SELECT id FROM app_versions WHERE app_id = $1::bigint AND id = ANY ($2::bigint[]) ORDER BY id FOR UPDATE`, [appId, versionIds]);
  const ids = locked.map((row) => row.id);
  const files = await query(trx, `DELETE FROM app_version_files WHERE app_version_id = ANY ($1::bigint[]) RETURNING id`, [ids]);
  const versions = await query(trx, `DELETE FROM app_versions WHERE id = ANY ($1::bigint[]) RETURNING id`, [ids]);
  return { versions: versions.length, versionFiles: files.length };
}

/** Version-history bytes by age (database and R2), for the report: what a retention policy would act on. */
export async function historyBytesByAge(db: Queryable, now = new Date()): Promise<{ age: string; versions: number; db_bytes: number; r2_bytes: number }[]> {
  return query(
    db,
    `WITH aged AS (
       SELECT v.id,
              CASE WHEN v.created_at >= $1::timestamptz - interval '7 days' THEN '0-7 days'
                   WHEN v.created_at >= $1::timestamptz - interval '30 days' THEN '8-30 days'
                   WHEN v.created_at >= $1::timestamptz - interval '90 days' THEN '31-90 days'
                   WHEN v.created_at >= $1::timestamptz - interval '365 days' THEN '91-365 days'
                   ELSE 'over a year' END AS age,
              coalesce(octet_length(v.files_snapshot), 0) + coalesce((SELECT sum(octet_length(f.content)) FROM app_version_files f WHERE f.app_version_id = v.id), 0) AS db_bytes,
              CASE WHEN v.r2_snapshot_key IS NOT NULL THEN coalesce(v.snapshot_size, 0) ELSE 0 END
                + coalesce((SELECT sum(f.content_size) FROM app_version_files f WHERE f.app_version_id = v.id AND f.r2_content_key IS NOT NULL), 0) AS r2_bytes
         FROM app_versions v)
     SELECT age, count(*)::int AS versions, sum(db_bytes)::float8 AS db_bytes, sum(r2_bytes)::float8 AS r2_bytes
       FROM aged GROUP BY age
      ORDER BY min(CASE age WHEN '0-7 days' THEN 1 WHEN '8-30 days' THEN 2 WHEN '31-90 days' THEN 3 WHEN '91-365 days' THEN 4 ELSE 5 END)`,
    [now],
  );
}
