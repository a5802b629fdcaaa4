import { DataError } from './errors.ts';

/** A version snapshot: path → content. `files_snapshot` holds it as JSON. */
export type FileMap = Map<string, string>;

/**
 * Parses a files_snapshot. The documented form is an object mapping paths to contents; an array of
 * {path, content} objects (an older form) is accepted too. Anything else is a DataError naming the problem.
 */
export function decodeSnapshot(json: string, label = 'snapshot'): FileMap {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (error) {
    throw new DataError(`${label} is not valid JSON (${(error as Error).message}); it may be truncated`);
  }
  const files: FileMap = new Map();
  if (Array.isArray(parsed)) {
    for (const [index, entry] of parsed.entries()) {
      const item = entry as { path?: unknown; content?: unknown };
      if (!item || typeof item.path !== 'string' || typeof item.content !== 'string') {
        throw new DataError(`${label}: entry ${index} is not a {path, content} object with string values`);
      }
      if (files.has(item.path)) throw new DataError(`${label}: path ${JSON.stringify(item.path)} appears twice`);
      files.set(item.path, item.content);
    }
    return files;
  }
  if (parsed === null || typeof parsed !== 'object') throw new DataError(`${label} is JSON but not an object of path → content`);
  for (const [path, value] of Object.entries(parsed as Record<string, unknown>)) {
    // A file's entry is its content, or (richer snapshots) an object carrying it as `content`.
    const content = typeof value === 'object' && value !== null ? (value as { content?: unknown }).content : value;
    if (typeof content !== 'string') throw new DataError(`${label}: the content of ${JSON.stringify(path)} is not a string`);
    files.set(path, content);
  }
  return files;
}

/**
 * Checks that a stored snapshot is whole JSON, as migrate and verify need: the bytes are moved as they are,
 * so their shape is restore's concern, but a truncated or malformed snapshot must not be moved or trusted.
 */
export function assertSnapshotJson(json: string, label = 'snapshot'): void {
  try {
    JSON.parse(json);
  } catch (error) {
    throw new DataError(`${label} is not valid JSON (${(error as Error).message}); it may be truncated`);
  }
}

/** Encodes a file map as the documented object form, paths in a stable order. */
export function encodeSnapshot(files: FileMap): string {
  const object: Record<string, string> = Object.create(null);
  for (const path of [...files.keys()].sort()) object[path] = files.get(path)!;
  return JSON.stringify(object);
}
