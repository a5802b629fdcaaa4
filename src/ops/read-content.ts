import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { StorageContext } from '../context.ts';
import { FILES, sqlRowIsUtf8, TABLES, type StoredTable, type TableName } from '../tables.ts';
import { readContentChunks } from '../sql/content-chunks.ts';
import { query, type Queryable } from '../db.ts';
import { DataError, IntegrityError } from '../errors.ts';
import { sha256Hex } from '../hashing.ts';

/** What the read path needs to know about a row. */
export interface StoredContentRef {
  table: TableName;
  id: string;
  location: string | null;
  key: string | null;
  hash: string | null;
  /** Inline database content, when it was fetched with the row. */
  content?: string | null;
  hasContent: boolean;
  bytes: number | null;
  /** False when the database content or the path is not valid UTF-8 (only a SQL_ASCII database holds such text). */
  utf8?: boolean;
}

export interface ContentSource {
  /** Where the bytes come from. */
  source: 'database' | 'r2';
  /** True when the bytes were checked against content_hash. */
  verified: boolean;
}

/**
 * Hybrid retrieval, the TypeScript twin of the plan's `AppFile#content` with R2 fallback: the database
 * content when the row has it, else the R2 object, whose SHA-256 must equal content_hash (else an
 * IntegrityError: the tool never returns bytes it cannot vouch for). An object's bytes are yielded only once
 * all of them are proven (provenFirst), in bounded memory, so any size is fine.
 */
export async function* streamStoredContent(context: StorageContext, ref: StoredContentRef, info: Partial<ContentSource> = {}): AsyncGenerator<Buffer> {
  const table = TABLES[ref.table];
  if (ref.hasContent) {
    info.source = 'database';
    if (ref.utf8 === false) throw new DataError(notUtf8Refusal(ref));
    if (ref.content !== undefined && ref.content !== null) {
      info.verified = ref.hash ? sha256Hex(ref.content) === ref.hash : false;
      yield Buffer.from(ref.content, 'utf8');
      return;
    }
    const digest = createHash('sha256');
    for await (const chunk of readContentChunks(context.db, table, ref.id)) {
      digest.update(chunk);
      yield chunk;
    }
    info.verified = ref.hash ? digest.digest('hex') === ref.hash : false;
    return;
  }
  if (!ref.key) throw new DataError(`${table.table} #${ref.id} has no content in the database and no object key: its content is nowhere`);
  if (!ref.hash) throw new IntegrityError(`${table.table} #${ref.id} lives in R2 without a content_hash, so its object cannot be verified`, ref.key);
  info.source = 'r2';
  const download = await context.store.getStream(ref.key);
  const key = ref.key;
  const hash = ref.hash;
  yield* provenFirst(download.body, (actual, size) => {
    if (actual !== hash) throw new IntegrityError(`object ${key} does not match content_hash of ${table.table} #${ref.id} (${size} bytes hash to ${actual.slice(0, 12)}…)`, key);
    info.verified = true;
  });
}

/** Why a row of a SQL_ASCII database is not read out: its bytes are in no encoding the tool can vouch for as text. */
export function notUtf8Refusal(ref: Pick<StoredContentRef, 'table' | 'id'>): string {
  return `${TABLES[ref.table].table} #${ref.id} is not valid UTF-8 in its content or path (a SQL_ASCII database stores whatever bytes it is sent), so it is not handed out as text; the app reads it from the database as before`;
}

/** Bytes held in memory before a download is proven; past this they wait in a private temporary file. */
const HELD_IN_MEMORY = 8 * 1024 * 1024;

/**
 * Yields a download's bytes only after all of them arrived and `prove` accepted their SHA-256 and length: no
 * byte reaches a caller (cat's stdout, a file being written) before it is known to be the content. Up to
 * 8 MiB wait in memory; a larger content waits in a file only this process can read, removed afterwards.
 */
async function* provenFirst(chunks: AsyncIterable<Uint8Array>, prove: (sha256: string, size: number) => void): AsyncGenerator<Buffer> {
  const digest = createHash('sha256');
  let size = 0;
  const held: Buffer[] = [];
  let spool: { dir: string; file: FileHandle } | undefined;
  try {
    for await (const chunk of chunks) {
      const bytes = Buffer.from(chunk);
      digest.update(bytes);
      size += bytes.length;
      if (!spool && size <= HELD_IN_MEMORY) {
        held.push(bytes);
        continue;
      }
      if (!spool) {
        const dir = await mkdtemp(join(tmpdir(), 'overskill-read-'));
        spool = { dir, file: await open(join(dir, 'content'), 'wx', 0o600) };
        for (const part of held.splice(0)) await spool.file.write(part);
      }
      await spool.file.write(bytes);
    }
    prove(digest.digest('hex'), size);
    if (!spool) {
      yield* held;
      return;
    }
    await spool.file.close();
    for await (const part of createReadStream(join(spool.dir, 'content'))) yield part as Buffer;
  } finally {
    if (spool) {
      await spool.file.close().catch(() => undefined);
      await rm(spool.dir, { recursive: true, force: true });
    }
  }
}

/** Hybrid retrieval into memory (for contents the caller must hold, like snapshots). */
export async function readStoredContent(context: StorageContext, ref: StoredContentRef): Promise<{ content: string } & ContentSource> {
  const info: Partial<ContentSource> = {};
  const parts: Buffer[] = [];
  for await (const chunk of streamStoredContent(context, ref, info)) parts.push(chunk);
  return { content: Buffer.concat(parts).toString('utf8'), source: info.source ?? 'database', verified: info.verified ?? false };
}

interface RefRow {
  id: string;
  location: string | null;
  key: string | null;
  hash: string | null;
  content: string | null;
  has_content: boolean;
  bytes: number | null;
  utf8: boolean;
}

/**
 * Fetches rows' read references in one statement; contents up to `inlineMax` come along, larger ones are
 * streamed later. Only the columns reading needs are selected (never a large content beyond the limit).
 */
export async function contentRefs(
  db: Queryable,
  table: StoredTable,
  where: string,
  params: unknown[],
  inlineMax = 8 * 1024 * 1024,
  limit?: number,
): Promise<(StoredContentRef & { path: string | null })[]> {
  const rows = await query<RefRow & { path: string | null }>(
    db,
    `SELECT t.id, ${table.pathExpr} AS path, t.${table.locationColumn} AS location, t.${table.keyColumn} AS key, t.${table.hashColumn} AS hash,
            CASE WHEN octet_length(t.${table.contentColumn}) <= ${Number(inlineMax)} THEN t.${table.contentColumn} END AS content,
            (t.${table.contentColumn} IS NOT NULL) AS has_content,
            coalesce(octet_length(t.${table.contentColumn}), t.${table.sizeColumn})::float8 AS bytes,
            ${sqlRowIsUtf8(table)} AS utf8
       FROM ${table.source} WHERE ${where} ORDER BY t.id ${limit ? `LIMIT ${Math.floor(limit)}` : ''}`,
    params,
  );
  return rows.map((row) => ({ table: table.name, id: row.id, path: row.path, location: row.location, key: row.key, hash: row.hash, content: row.content, hasContent: row.has_content, bytes: row.bytes, utf8: row.utf8 }));
}

/**
 * The content of one app file by path (a leading "/" optional), by hybrid retrieval. For other Node code:
 *   const text = await readAppFile(context, appId, 'src/App.tsx');
 */
export async function readAppFile(context: StorageContext, appId: string, path: string, options: { cache?: ContentCache } = {}): Promise<string> {
  const candidates = path.startsWith('/') ? [path, path.slice(1)] : [path, `/${path}`];
  const refs = await contentRefs(context.db, FILES, 't.app_id = $1::bigint AND t.path = ANY($2::text[])', [appId, candidates]);
  const ref = refs.find((row) => row.path === path) ?? refs[0];
  if (!ref) throw new DataError(`app ${appId} has no file ${JSON.stringify(path)}`);
  const cache = options.cache;
  // Only R2-only contents are worth caching: the others came with the row.
  if (!cache || ref.hasContent || !ref.key || !ref.hash) return (await readStoredContent(context, ref)).content;
  const cached = cache.get(ref.key, ref.hash);
  if (cached) return cached.toString('utf8');
  const read = await readStoredContent(context, ref);
  cache.set(ref.key, ref.hash, Buffer.from(read.content, 'utf8'));
  return read.content;
}

/**
 * A bounded in-process cache for R2 reads (the plan's "with caching"): at most `maxBytes` of contents,
 * least recently used first out, keyed by object key and content hash so a rewritten file is a new entry.
 * Every hit is hashed again before it is served; bytes that no longer match are dropped, never returned.
 */
export class ContentCache {
  private readonly entries = new Map<string, Buffer>();
  private bytes = 0;
  hits = 0;
  misses = 0;

  constructor(readonly maxBytes: number = 32 * 1024 * 1024) {}

  get(key: string, sha256: string): Buffer | undefined {
    const id = `${sha256}:${key}`;
    const entry = this.entries.get(id);
    if (!entry) {
      this.misses++;
      return undefined;
    }
    this.entries.delete(id);
    if (sha256Hex(entry) !== sha256) {
      this.bytes -= entry.length;
      this.misses++;
      return undefined;
    }
    this.entries.set(id, entry);
    this.hits++;
    return entry;
  }

  set(key: string, sha256: string, body: Buffer): void {
    if (body.length > this.maxBytes) return;
    const id = `${sha256}:${key}`;
    const old = this.entries.get(id);
    if (old) {
      this.bytes -= old.length;
      this.entries.delete(id);
    }
    this.entries.set(id, body);
    this.bytes += body.length;
    for (const [oldest, value] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= value.length;
    }
  }

  get size(): number {
    return this.bytes;
  }
}
