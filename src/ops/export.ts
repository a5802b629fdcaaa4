import { constants } from 'node:fs';
import { lstat, mkdir, open, realpath, unlink } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import type { StorageContext } from '../context.ts';
import { FILES } from '../tables.ts';
import { normalizePath } from '../keys.ts';
import { contentRefs, notUtf8Refusal, streamStoredContent, type ContentSource } from './read-content.ts';
import { prepareRestore } from './restore-version.ts';
import { UsageError, errorMessage } from '../errors.ts';
import { appExists } from '../sql/versions.ts';
import { assertSchemaReady } from './schema.ts';
import { mapLimit } from '../pool.ts';
import { EXPORT_CONCURRENCY } from './options.ts';

/** Files per statement, and contents inlined up to this size (larger ones stream). */
const EXPORT_PAGE = 500;
const EXPORT_INLINE_MAX = 64 * 1024;

export interface ExportedFile {
  path: string;
  bytes: number;
  sha256: string;
  source: 'database' | 'r2' | 'snapshot';
  /**
   * False when the database content no longer matches content_hash (the content written is the database's);
   * null when the row has no content_hash to check it against (never migrated: the database is its only copy).
   */
  verified: boolean | null;
}

export interface ExportResult {
  appId: string;
  version?: string;
  directory: string;
  written: ExportedFile[];
  refused: { path: string; reason: string }[];
  failed: { path: string; reason: string }[];
}

/**
 * Resolves where `path` goes under `root`, refusing anything that could land outside it: "..", empty
 * segments, control characters, and any symbolic link already on the way (checked component by component,
 * then the file is opened with O_NOFOLLOW).
 */
export async function safeTarget(root: string, path: string): Promise<{ ok: true; target: string } | { ok: false; reason: string }> {
  if (isAbsolute(path) && !path.startsWith('/')) return { ok: false, reason: 'absolute path' };
  const normalized = normalizePath(path);
  if (!normalized.ok) return normalized;
  if (normalized.path.split('/').some((segment) => segment.includes('\\') && process.platform === 'win32')) return { ok: false, reason: 'backslash in path' };
  const target = resolve(root, ...normalized.path.split('/'));
  const rel = relative(root, target);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return { ok: false, reason: 'path escapes the output directory' };
  let current = root;
  for (const segment of rel.split(sep)) {
    current = join(current, segment);
    try {
      const stat = await lstat(current);
      if (stat.isSymbolicLink()) return { ok: false, reason: `${relative(root, current)} is a symbolic link` };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') break;
      throw error;
    }
  }
  return { ok: true, target };
}

async function writeFileSafely(root: string, path: string, chunks: AsyncIterable<Buffer>): Promise<{ bytes: number; sha256: string } | { refused: string }> {
  const checked = await safeTarget(root, path);
  if (!checked.ok) return { refused: checked.reason };
  await mkdir(dirname(checked.target), { recursive: true });
  // Re-check after creating directories: nothing on the way may have become a link meanwhile.
  const again = await safeTarget(root, path);
  if (!again.ok) return { refused: again.reason };
  const handle = await open(checked.target, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o644);
  const digest = createHash('sha256');
  let bytes = 0;
  try {
    for await (const chunk of chunks) {
      await handle.write(chunk);
      digest.update(chunk);
      bytes += chunk.length;
    }
  } catch (error) {
    // Bytes that failed verification must not be left behind looking like a good export.
    await handle.close();
    await unlink(checked.target).catch(() => undefined);
    throw error;
  }
  await handle.close();
  return { bytes, sha256: digest.digest('hex') };
}

/** Writes an app's current files (or one version's) under `directory`, by hybrid retrieval, verified. */
export async function exportApp(context: StorageContext, options: { appId: string; directory: string; version?: string; concurrency?: number }): Promise<ExportResult> {
  await assertSchemaReady(context.db);
  if (!(await appExists(context.db, options.appId))) throw new UsageError(`App ${options.appId} does not exist.`);
  await mkdir(options.directory, { recursive: true });
  const root = await realpath(options.directory);
  const result: ExportResult = { appId: options.appId, version: options.version, directory: root, written: [], refused: [], failed: [] };
  if (options.version) {
    const prepared = await prepareRestore(context, options.appId, options.version);
    for (const [path, content] of prepared.files) {
      const body = Buffer.from(content, 'utf8');
      try {
        const outcome = await writeFileSafely(root, path, (async function* () {
          yield body;
        })());
        if ('refused' in outcome) result.refused.push({ path, reason: outcome.refused });
        else result.written.push({ path, bytes: outcome.bytes, sha256: outcome.sha256, source: 'snapshot', verified: true });
      } catch (error) {
        result.failed.push({ path, reason: errorMessage(error) });
      }
    }
    return result;
  }
  // One statement per EXPORT_PAGE files (an app's files in one, typically), then the R2 reads concurrently.
  let after = '0';
  for (;;) {
    const refs = await contentRefs(context.db, FILES, 't.app_id = $1::bigint AND t.id > $2::bigint', [options.appId, after], EXPORT_INLINE_MAX, EXPORT_PAGE);
    if (!refs.length) break;
    after = refs[refs.length - 1].id;
    type Outcome = { written: ExportedFile } | { refused: { path: string; reason: string } } | { failed: { path: string; reason: string } };
    const outcomes = await mapLimit(refs, options.concurrency ?? EXPORT_CONCURRENCY, async (ref): Promise<Outcome> => {
      const path = String(ref.path);
      const info: Partial<ContentSource> = {};
      if (ref.utf8 === false) return { refused: { path, reason: notUtf8Refusal(ref) } };
      try {
        const outcome = await writeFileSafely(root, path, streamStoredContent(context, ref, info));
        if ('refused' in outcome) return { refused: { path, reason: outcome.refused } };
        return { written: { path, bytes: outcome.bytes, sha256: outcome.sha256, source: info.source ?? 'database', verified: ref.hash ? (info.verified ?? outcome.sha256 === ref.hash) : null } };
      } catch (error) {
        return { failed: { path, reason: errorMessage(error) } };
      }
    });
    for (const outcome of outcomes) {
      if ('written' in outcome) result.written.push(outcome.written);
      else if ('refused' in outcome) result.refused.push(outcome.refused);
      else result.failed.push(outcome.failed);
    }
    if (refs.length < EXPORT_PAGE) break;
  }
  return result;
}
