import { fileKey, snapshotKey, versionFileKey, versionOrphanKey, versionRowKey, type KeyResult } from './keys.ts';
import { contentTypeFor, SNAPSHOT_CONTENT_TYPE } from './content-type.ts';

/** The three tables whose contents move, described once so every operation treats them alike. */
export type TableName = 'files' | 'snapshots' | 'version-files';
export const TABLE_NAMES: readonly TableName[] = ['files', 'snapshots', 'version-files'];

export interface KeySource {
  id: string;
  app_id: string;
  path: string | null;
  version_id: string | null;
  file_type: string | null;
}

export interface StoredTable {
  name: TableName;
  /** SQL table name. */
  table: string;
  contentColumn: string;
  locationColumn: string;
  keyColumn: string;
  hashColumn: string;
  /** Byte size of the content, kept by us at every flip so r2 rows can be checked without their content. */
  sizeColumn: string;
  /** FROM clause; the table itself is aliased t. */
  source: string;
  appIdExpr: string;
  pathExpr: string;
  versionIdExpr: string;
  fileTypeExpr: string;
  /**
   * True when another row of the table would derive the same object key: for files the "/a" versus "a"
   * alias the plan's leading-slash rule creates (both rows are refused); for version files the same path
   * twice in one version (each row then gets a row-qualified key).
   */
  collisionExpr: string;
  /** The row's object key; `collision` says another row would derive the same one (see collisionExpr). */
  keyFor(row: KeySource, collision: boolean): KeyResult;
  contentTypeFor(row: KeySource): string;
}

const ALIAS_OF = (path: string) => `(CASE WHEN left(${path}, 1) = '/' THEN substr(${path}, 2) ELSE '/' || ${path} END)`;

export const FILES: StoredTable = {
  name: 'files',
  table: 'app_files',
  contentColumn: 'content',
  locationColumn: 'storage_location',
  keyColumn: 'r2_object_key',
  hashColumn: 'content_hash',
  sizeColumn: 'size_bytes',
  source: 'app_files t',
  appIdExpr: 't.app_id',
  pathExpr: 't.path',
  versionIdExpr: 'NULL::bigint',
  fileTypeExpr: 't.file_type',
  collisionExpr: `EXISTS (SELECT 1 FROM app_files o WHERE o.app_id = t.app_id AND o.id <> t.id AND o.path IN (t.path, ${ALIAS_OF('t.path')}))`,
  keyFor: (row, collision) =>
    collision
      ? { ok: false, reason: 'another file of this app derives the same object key (paths equal once the leading "/" is stripped); rename one of them' }
      : fileKey(row.app_id, row.path),
  contentTypeFor: (row) => contentTypeFor(row.path, row.file_type),
};

export const SNAPSHOTS: StoredTable = {
  name: 'snapshots',
  table: 'app_versions',
  contentColumn: 'files_snapshot',
  locationColumn: 'storage_strategy',
  keyColumn: 'r2_snapshot_key',
  hashColumn: 'snapshot_hash',
  sizeColumn: 'snapshot_size',
  source: 'app_versions t',
  appIdExpr: 't.app_id',
  pathExpr: 'NULL::text',
  versionIdExpr: 't.id',
  fileTypeExpr: 'NULL::text',
  collisionExpr: 'false',
  keyFor: (row) => snapshotKey(row.app_id, row.version_id ?? ''),
  contentTypeFor: () => SNAPSHOT_CONTENT_TYPE,
};

export const VERSION_FILES: StoredTable = {
  name: 'version-files',
  table: 'app_version_files',
  contentColumn: 'content',
  locationColumn: 'storage_location',
  keyColumn: 'r2_content_key',
  hashColumn: 'content_hash',
  sizeColumn: 'content_size',
  source: 'app_version_files t JOIN app_versions v ON v.id = t.app_version_id LEFT JOIN app_files af ON af.id = t.app_file_id',
  appIdExpr: 'v.app_id',
  pathExpr: 'af.path',
  versionIdExpr: 't.app_version_id',
  fileTypeExpr: 'af.file_type',
  collisionExpr: `EXISTS (SELECT 1 FROM app_version_files o JOIN app_files oaf ON oaf.id = o.app_file_id
      WHERE o.app_version_id = t.app_version_id AND o.id <> t.id AND oaf.path IN (af.path, ${ALIAS_OF('af.path')}))`,
  keyFor: (row, collision) => {
    // The app deleted the file and kept this row as history: keyed by the row itself.
    if (row.path === null) return versionOrphanKey(row.app_id, row.version_id ?? '', row.id);
    return collision ? versionRowKey(row.app_id, row.version_id ?? '', row.id, row.path) : versionFileKey(row.app_id, row.version_id ?? '', row.path);
  },
  contentTypeFor: (row) => contentTypeFor(row.path, row.file_type),
};

export const TABLES: Record<TableName, StoredTable> = { files: FILES, snapshots: SNAPSHOTS, 'version-files': VERSION_FILES };

export function parseTables(value: string | undefined): StoredTable[] {
  if (!value) return TABLE_NAMES.map((name) => TABLES[name]);
  const names = value.split(',').map((part) => part.trim()).filter(Boolean);
  const unknown = names.filter((name) => !(name in TABLES));
  if (unknown.length || names.length === 0) {
    throw new Error(`--tables takes a comma-separated list of ${TABLE_NAMES.join(', ')}; got "${value}"`);
  }
  return [...new Set(names)].map((name) => TABLES[name as TableName]);
}

/** SQL for the UTF-8 SHA-256 of a text column, as lowercase hex: the content_hash definition. */
export function sqlSha256(column: string): string {
  return `encode(sha256(convert_to(${column}, 'UTF8')), 'hex')`;
}
