import { query, type Db } from '../../src/db.ts';
import type { ObjectStore } from '../../src/object-store.ts';

export async function insertApp(db: Db, name = 'app'): Promise<string> {
  const rows = await query<{ id: string }>(db, 'INSERT INTO apps (name) VALUES ($1) RETURNING id', [name]);
  return rows[0].id;
}

export async function insertFile(db: Db, appId: string, path: string, content: string, fileType: string | null = null): Promise<string> {
  const rows = await query<{ id: string }>(
    db,
    'INSERT INTO app_files (app_id, path, content, file_type, size_bytes) VALUES ($1, $2, $3, $4, octet_length($3)) RETURNING id',
    [appId, path, content, fileType],
  );
  return rows[0].id;
}

export async function insertVersion(db: Db, appId: string, versionNumber: string, snapshot: string | null, changelog = ''): Promise<string> {
  const rows = await query<{ id: string }>(
    db,
    'INSERT INTO app_versions (app_id, version_number, files_snapshot, changelog) VALUES ($1, $2, $3, $4) RETURNING id',
    [appId, versionNumber, snapshot, changelog],
  );
  return rows[0].id;
}

export async function insertVersionFile(db: Db, versionId: string, fileId: string | null, action: string, content: string | null): Promise<string> {
  const rows = await query<{ id: string }>(
    db,
    'INSERT INTO app_version_files (app_version_id, app_file_id, action, content) VALUES ($1, $2, $3, $4) RETURNING id',
    [versionId, fileId, action, content],
  );
  return rows[0].id;
}

export function text(bytes: number, seed = 'x'): string {
  return seed.repeat(Math.ceil(bytes / seed.length)).slice(0, bytes);
}

export interface FileRow {
  id: string;
  app_id: string;
  path: string;
  content: string | null;
  storage_location: string;
  r2_object_key: string | null;
  content_hash: string | null;
}

export async function fileRow(db: Db, id: string): Promise<FileRow> {
  const rows = await query<FileRow>(db, 'SELECT id, app_id, path, content, storage_location, r2_object_key, content_hash FROM app_files WHERE id = $1', [id]);
  return rows[0];
}

/** A fingerprint of every byte and flag in the three tables (for "nothing changed" assertions). */
export async function databaseFingerprint(db: Db): Promise<string> {
  const rows = await query<{ fingerprint: string }>(
    db,
    `SELECT md5(coalesce((SELECT string_agg(md5(f::text), ',' ORDER BY id) FROM app_files f), '') || '|' ||
                coalesce((SELECT string_agg(md5(v::text), ',' ORDER BY id) FROM app_versions v), '') || '|' ||
                coalesce((SELECT string_agg(md5(vf::text), ',' ORDER BY id) FROM app_version_files vf), '') || '|' ||
                coalesce((SELECT string_agg(md5(c::text), ',' ORDER BY row_id) FROM overskill_storage_claims c), '')) AS fingerprint`,
  );
  return rows[0].fingerprint;
}

/** Every object's key, size and ETag, sorted (for "the bucket did not change" assertions). */
export async function bucketFingerprint(store: ObjectStore): Promise<string[]> {
  const entries: string[] = [];
  for await (const object of store.list('')) entries.push(`${object.key} ${object.size} ${object.etag}`);
  return entries.sort();
}

/** An object's bytes as text, read raw (no hash check: tests compare the bytes themselves). */
export async function objectText(store: ObjectStore, key: string): Promise<string> {
  const { body } = await store.getStream(key);
  const parts: Buffer[] = [];
  for await (const chunk of body) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts).toString('utf8');
}
