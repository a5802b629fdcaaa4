/**
 * Object keys. The layout is the plan's:
 *   apps/{app_id}/files/{path}
 *   apps/{app_id}/versions/{version_id}/{path}
 *   apps/{app_id}/versions/{version_id}@{row_id}/{path}   (a path twice in one version)
 *   apps/{app_id}/versions/{version_id}@{row_id}          (a version-file row whose app_file was deleted)
 *   apps/{app_id}/snapshots/{version_id}/snapshot.json
 *   apps/{app_id}/blobs/{sha256}            (content-addressed layout)
 *
 * Derivation is injective on the paths it accepts: one leading "/" is stripped (the plan's rule), and any
 * path that could otherwise alias another ("a//b", "./a", "a/../b", control characters, invalid Unicode)
 * is refused with a reason instead of being rewritten. The only aliasing left, "/a" versus "a" within
 * one app, is caught by the claim query, which refuses both rows (see sql/claim-batch.ts).
 */
export const MAX_KEY_BYTES = 1024;

export type KeyResult = { ok: true; key: string } | { ok: false; reason: string };

const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const DECIMAL_ID = /^[0-9]{1,20}$/;

export function normalizePath(path: unknown): { ok: true; path: string } | { ok: false; reason: string } {
  if (typeof path !== 'string') return { ok: false, reason: 'path is missing' };
  if (LONE_SURROGATE.test(path)) return { ok: false, reason: 'path is not valid Unicode' };
  if (CONTROL_CHARACTERS.test(path)) return { ok: false, reason: 'path contains control characters' };
  const stripped = path.startsWith('/') ? path.slice(1) : path;
  if (stripped.length === 0) return { ok: false, reason: 'path is empty' };
  for (const segment of stripped.split('/')) {
    if (segment === '') return { ok: false, reason: 'path has an empty segment ("//", or a leading or trailing "/")' };
    if (segment === '.' || segment === '..') return { ok: false, reason: `path has a "${segment}" segment` };
  }
  return { ok: true, path: stripped };
}

function checkId(label: string, id: unknown): string | undefined {
  const text = String(id);
  return DECIMAL_ID.test(text) ? undefined : `${label} "${text}" is not a positive integer id`;
}

function finish(key: string): KeyResult {
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > MAX_KEY_BYTES) return { ok: false, reason: `object key would be ${bytes} bytes; S3 allows at most ${MAX_KEY_BYTES}` };
  return { ok: true, key };
}

export function fileKey(appId: string | number, path: unknown): KeyResult {
  const bad = checkId('app id', appId);
  if (bad) return { ok: false, reason: bad };
  const normalized = normalizePath(path);
  if (!normalized.ok) return normalized;
  return finish(`apps/${appId}/files/${normalized.path}`);
}

export function versionFileKey(appId: string | number, versionId: string | number, path: unknown): KeyResult {
  const bad = checkId('app id', appId) ?? checkId('version id', versionId);
  if (bad) return { ok: false, reason: bad };
  const normalized = normalizePath(path);
  if (!normalized.ok) return normalized;
  return finish(`apps/${appId}/versions/${versionId}/${normalized.path}`);
}

/**
 * For a version-file row that shares its version and path with another row (the same file edited twice in
 * one version), the plain key cannot hold both contents: each such row gets `{version_id}@{row_id}` in place
 * of the version id. No version id contains "@", so these keys never meet a plain one or each other.
 */
export function versionRowKey(appId: string | number, versionId: string | number, rowId: string | number, path: unknown): KeyResult {
  const bad = checkId('app id', appId) ?? checkId('version id', versionId) ?? checkId('row id', rowId);
  if (bad) return { ok: false, reason: bad };
  const normalized = normalizePath(path);
  if (!normalized.ok) return normalized;
  return finish(`apps/${appId}/versions/${versionId}@${rowId}/${normalized.path}`);
}

/**
 * For a version-file row whose app_file was deleted (the app clears app_file_id and keeps the row as history),
 * there is no path to key it by: it is keyed by its own id, `{version_id}@{row_id}` with nothing after it.
 * Path keys always have a "/" after the version part, so this never meets one of them.
 */
export function versionOrphanKey(appId: string | number, versionId: string | number, rowId: string | number): KeyResult {
  const bad = checkId('app id', appId) ?? checkId('version id', versionId) ?? checkId('row id', rowId);
  if (bad) return { ok: false, reason: bad };
  return finish(`apps/${appId}/versions/${versionId}@${rowId}`);
}

/** The file path a plain version-file key stands for (apps/{app}/versions/{version_id}/{path}), if it is one. */
export function pathOfVersionFileKey(key: string): string | undefined {
  return /^apps\/[0-9]+\/versions\/[0-9]+(?:@[0-9]+)?\/(.+)$/.exec(key)?.[1];
}

export function snapshotKey(appId: string | number, versionId: string | number): KeyResult {
  const bad = checkId('app id', appId) ?? checkId('version id', versionId);
  if (bad) return { ok: false, reason: bad };
  return finish(`apps/${appId}/snapshots/${versionId}/snapshot.json`);
}

export function blobKey(appId: string | number, sha256Hex: string): KeyResult {
  const bad = checkId('app id', appId);
  if (bad) return { ok: false, reason: bad };
  if (!/^[0-9a-f]{64}$/.test(sha256Hex)) return { ok: false, reason: 'content hash is not a lowercase hex SHA-256' };
  return finish(`apps/${appId}/blobs/${sha256Hex}`);
}

/** The path a key stands for, relative to its app's area; used by orphan listings and exports. */
export function appIdOfKey(key: string): string | undefined {
  return /^apps\/([0-9]+)\//.exec(key)?.[1];
}

/**
 * Which keys the store treats as one object. R2 NFC-normalises key names before storing them ("Unicode
 * interoperability" in R2's reference): `café` written as one code point and as `e` + U+0301 are one object,
 * and a listing shows the spelling uploaded last. Every "is this the same object" decision compares keys by
 * this identity, on every store: a bucket that is not R2 today may be copied to R2 tomorrow, and two rows
 * that would share an object there must not be given keys that only a byte-oriented store keeps apart.
 */
export function keyIdentity(key: string): string {
  return key.normalize('NFC');
}
