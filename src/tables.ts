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
   * Another row of the table whose key would name the same object, as JSON {id, path}, or NULL: for files the
   * "/a" versus "a" alias the plan's leading-slash rule creates, and paths that are Unicode-equivalent (R2
   * stores them as one object; see keyIdentity), both refused; for version files the same path twice in one
   * version, by either rule (each row then gets a row-qualified key). `utf8`: whether the database can
   * normalise (only a UTF8 one can); elsewhere the SQL compares spellings byte for byte, and
   * unicode-siblings.ts does the rest. Two texts, not one with a CASE: a CASE there changes the planner's
   * estimate, and with it the plan (a walk of the whole table per claimed row instead of its app's rows).
   */
  collisionExpr(utf8: boolean): string;
  /**
   * The rows among which collisionExpr looks (alias o, path and group as SQL, and a claimed row's group), so
   * that the client can compare paths under keyIdentity where PostgreSQL cannot (unicode-siblings.ts).
   */
  pathSiblings?: { source: string; groupExpr: string; pathExpr: string; groupOf(row: KeySource): string | null };
  /** The row's object key; `collision` names another row that would derive the same one (see collisionExpr). */
  keyFor(row: KeySource, collision: Collision | null): KeyResult;
  contentTypeFor(row: KeySource): string;
}

/** Another row that would name the same object (see StoredTable.collisionExpr). */
export interface Collision {
  id: string;
  path: string | null;
}

const ALIAS_OF = (path: string) => `(CASE WHEN left(${path}, 1) = '/' THEN substr(${path}, 2) ELSE '/' || ${path} END)`;

/**
 * SQL: `other` names the same object as `path` or its leading-slash alias, under the store's key identity
 * where the database can normalise (`utf8`); elsewhere byte for byte (PostgreSQL's normalize() would fail
 * the whole statement outside UTF8, and unicode-siblings.ts finds those collisions from the client instead).
 */
const SAME_OBJECT_PATH = (other: string, path: string, utf8: boolean) =>
  utf8
    ? `(${other} IN (${path}, ${ALIAS_OF(path)}) OR ((${sqlHasNonAscii(other)} OR ${sqlHasNonAscii(path)}) AND ${sqlKeyIdentity(other)} IN (${sqlKeyIdentity(path)}, ${sqlKeyIdentity(ALIAS_OF(path))})))`
    : `(${other} IN (${path}, ${ALIAS_OF(path)}))`;

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
  collisionExpr: (utf8) => `(SELECT json_build_object('id', o.id::text, 'path', o.path) FROM app_files o
      WHERE o.app_id = t.app_id AND o.id <> t.id AND ${SAME_OBJECT_PATH('o.path', 't.path', utf8)} ORDER BY o.id LIMIT 1)`,
  pathSiblings: { source: 'app_files o', groupExpr: 'o.app_id', pathExpr: 'o.path', groupOf: (row) => row.app_id },
  keyFor: (row, collision) =>
    collision
      ? {
          ok: false,
          reason: `app_files #${row.id} (${JSON.stringify(row.path)}) and app_files #${collision.id} (${JSON.stringify(collision.path)}) of app ${row.app_id} would be one object in the store (${describeAliasing(row.path, collision.path)}); both stay in the database until one is renamed`,
        }
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
  collisionExpr: () => 'false',
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
  collisionExpr: (utf8) => `(SELECT json_build_object('id', o.id::text, 'path', oaf.path) FROM app_version_files o JOIN app_files oaf ON oaf.id = o.app_file_id
      WHERE o.app_version_id = t.app_version_id AND o.id <> t.id AND ${SAME_OBJECT_PATH('oaf.path', 'af.path', utf8)} ORDER BY o.id LIMIT 1)`,
  pathSiblings: { source: 'app_version_files o JOIN app_files oaf ON oaf.id = o.app_file_id', groupExpr: 'o.app_version_id', pathExpr: 'oaf.path', groupOf: (row) => row.version_id },
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

/** Why two paths name one object: the leading "/" rule, or Unicode equivalence (R2 NFC-normalises keys). */
function describeAliasing(a: string | null, b: string | null): string {
  const strip = (path: string | null) => (path ?? '').replace(/^\//, '');
  if (strip(a) === strip(b)) return 'the paths are equal once the leading "/" is stripped';
  return 'the paths are Unicode-equivalent spellings, which R2 stores under one key';
}

/** SQL: the key identity of a text expression (keyIdentity in keys.ts): its NFC form. */
export function sqlKeyIdentity(expression: string): string {
  return `normalize(${expression}, NFC)`;
}

/** SQL: the text has a character outside ASCII, in any database encoding (a byte above 0x7f in SQL_ASCII). */
export function sqlHasNonAsciiInAnyEncoding(expression: string): string {
  return `${expression} ~ '${String.raw`[^\x01-\x7f]`}'`;
}

/** SQL: the text has a character outside ASCII (only such text can have another spelling under NFC). */
export function sqlHasNonAscii(expression: string): string {
  return `octet_length(${expression}) <> char_length(${expression})`;
}

/**
 * SQL: a text's bytes as content_hash covers them. Its UTF-8 bytes; in a SQL_ASCII database, where text is
 * bytes in no declared encoding, the bytes as stored (the same bytes for valid UTF-8, and what the app's own
 * hash covers for the rest), so that one row that is not UTF-8 cannot fail a statement over many rows.
 */
export function sqlContentBytes(column: string): string {
  return `convert_to(${column}, CASE WHEN getdatabaseencoding() = 'SQL_ASCII' THEN 'SQL_ASCII' ELSE 'UTF8' END)`;
}

/** SQL for the UTF-8 SHA-256 of a text column, as lowercase hex: the content_hash definition. */
export function sqlSha256(column: string): string {
  return `encode(sha256(${sqlContentBytes(column)}), 'hex')`;
}

/** Well-formed UTF-8, byte by byte (RFC 3629 section 4): no overlong forms, no surrogates, nothing above U+10FFFF. */
const UTF8_SEQUENCE = String.raw`^([\x01-\x7f]|[\xc2-\xdf][\x80-\xbf]|\xe0[\xa0-\xbf][\x80-\xbf]|[\xe1-\xec\xee\xef][\x80-\xbf]{2}|\xed[\x80-\x9f][\x80-\xbf]|\xf0[\x90-\xbf][\x80-\xbf]{2}|[\xf1-\xf3][\x80-\xbf]{3}|\xf4[\x80-\x8f][\x80-\xbf]{2})*$`;

/**
 * SQL: the text can be given as UTF-8. Always so in a database with a real encoding (PostgreSQL checks text
 * as it enters); a SQL_ASCII database stores whatever bytes it is sent, so there the bytes are matched
 * against UTF-8's grammar (a regular expression over bytes, since SQL_ASCII text is one character per byte).
 */
export function sqlIsUtf8(expression: string): string {
  return `CASE WHEN getdatabaseencoding() <> 'SQL_ASCII' OR ${expression} IS NULL THEN true ELSE ${expression} ~ '${UTF8_SEQUENCE}' END`;
}

/** SQL: the row's content and path can be given as UTF-8 (see sqlIsUtf8); a row that cannot is refused by name. */
export function sqlRowIsUtf8(table: StoredTable): string {
  return `((${sqlIsUtf8(`t.${table.contentColumn}`)}) AND (${sqlIsUtf8(table.pathExpr)}))`;
}
