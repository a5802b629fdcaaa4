import type { StorageContext } from '../context.ts';
import type { StoredTable } from '../tables.ts';
import type { ClaimedRow } from '../sql/claim-batch.ts';
import type { UploadedRow } from '../sql/flip-to-hybrid.ts';
import { migrateMove, refreshMove } from '../sql/row-moves.ts';
import { readContentChunks } from '../sql/content-chunks.ts';
import { runBatches, type ItemOutcome, type TableRunResult } from './batch-runner.ts';
import { Limiter } from '../pool.ts';
import { md5Hex, sha256Hex } from '../hashing.ts';
import { blobKey, normalizePath, type KeyResult } from '../keys.ts';
import type { RefreshedRow } from '../sql/refresh-hybrid.ts';
import { mergeRuns } from './batch-runner.ts';
import type { KeyLayout } from '../sql/schema.ts';
import { assertLayoutAllowed } from './schema.ts';
import { prepareWalk } from './prepare-walk.ts';
import { planMigrate, planScopeOf, type Plan } from './plan.ts';
import { retrySelection } from './runs.ts';
import { storeCheckNote } from './store-gate.ts';
import type { Prices } from '../cost.ts';
import type { Db } from '../db.ts';
import { assertSnapshotJson } from '../snapshot.ts';
import { DataError, ObjectConflictError, UsageError, errorMessage } from '../errors.ts';
import { keysStillReferenced } from '../sql/references.ts';
import type { WriteIntent } from '../object-store.ts';
import type { Reporter } from '../reporter.ts';
import { LARGE_ITEM_CONCURRENCY, type CommonRunOptions } from './options.ts';
import { countProblems, runTotals, withWorker } from './worker-run.ts';
import { selectionTotals } from '../sql/aggregates.ts';
import { recordBaseline } from '../sql/baseline.ts';
import { encodeForStore, type ContentEncoding } from '../store/encoding.ts';

export interface MigrateOptions extends CommonRunOptions {
  /** Only rows at least this large (bytes); never below the policy's hybrid threshold. */
  minSize?: number;
  /** 'content-addressed' keys file and version-file contents by their SHA-256 (apps/{app}/blobs/{sha256}). */
  keyLayout?: KeyLayout;
  /** Also re-upload hybrid rows whose database content changed after upload (it hashes every hybrid content). */
  refreshStale?: boolean;
  /** Store contents compressed where it saves at least 10% (store/encoding.ts); streamed contents decide by their first 64 KiB. */
  compress?: ContentEncoding;
}

export interface MigrateResult {
  tables: TableRunResult[];
  interrupted: boolean;
  /** The run was cancelled from another terminal: why, and by whom. */
  cancelled?: string;
  sessionLost?: string;
  uploaded: number;
  uploadedBytes: number;
  problems: number;
  /** Eligible rows still in the database after the run (refused, failed, changed meanwhile, locked by the app, or another worker's). */
  remaining: number;
  /** With --compress: objects stored compressed, their content bytes and the bytes stored for them. */
  compression?: { objects: number; contentBytes: number; storedBytes: number };
}

export function migrateMinBytes(options: MigrateOptions): number {
  return Math.max(options.policy.hybridMin, options.minSize ?? 0);
}

/** A migration checked and scoped, ready to plan and run. */
export interface PreparedMigrate {
  /** The options the plan and the run share; with --retry-failed, scoped to that run's items. */
  options: MigrateOptions;
  /** With --retry-failed: the run whose failed and refused items this one retries, and how many there are. */
  retrying?: { runId: string; items: number };
}

/**
 * What a migration checks before its run is recorded, in dry runs too (so CI catches it before a real run):
 * the database-load probe gives a number, the schema is in place, and a retried run was a migrate that has
 * ended.
 */
export async function prepareMigrate(db: Db, walk: MigrateOptions, retryFailed?: string): Promise<PreparedMigrate> {
  const options = await prepareWalk(db, walk);
  if (!retryFailed) return { options };
  const selection = await retrySelection(db, retryFailed);
  if (selection.command !== 'migrate') throw new UsageError(`Run ${retryFailed} was a ${selection.command}, not a migrate: its items are retried by rerunning ${selection.command}.`);
  return { options: { ...options, filter: { ...options.filter, rowIds: selection.rowIds } }, retrying: { runId: retryFailed, items: selection.items } };
}

/**
 * What the run would do (rows, bytes, requests, cost), by the same eligibility the run claims by. The schema
 * must allow the key layout; that is checked after another run's claim on the rows (refuseConflicts), so a
 * migrate racing one of another layout is told about that run.
 */
export async function planMigration(db: Db, { options }: PreparedMigrate, prices: Prices, dryRun: boolean): Promise<Plan> {
  await assertLayoutAllowed(db, options.keyLayout ?? 'path');
  const minBytes = migrateMinBytes(options);
  const plan = await planMigrate(
    db,
    planScopeOf(options, prices),
    minBytes,
    options.refreshStale,
  );
  plan.notes.push(storeCheckNote(dryRun));
  return plan;
}

/**
 * Phase 1-2: uploads every eligible content, proves each upload, and flips rows to hybrid with a
 * compare-and-set per batch. Never clears database content.
 */
export async function migrate(context: StorageContext, options: MigrateOptions, reporter: Reporter = {}): Promise<MigrateResult> {
  const large = new Limiter(Math.min(LARGE_ITEM_CONCURRENCY, options.concurrency));
  const minBytes = migrateMinBytes(options);
  const layout = options.keyLayout ?? 'path';
  await assertLayoutAllowed(context.db, layout);
  // A database whose schema came from elsewhere gets its baseline now, before the first row moves.
  await recordBaseline(context.db, 'migrate');
  const blobs = new BlobUploads(context.store);
  const compression = { objects: 0, contentBytes: 0, storedBytes: 0 };
  const outcome = await withWorker(context, options, reporter, 'migrate', async (run, table) => {
    const addressed = layout === 'content-addressed' && table.name !== 'snapshots';
    // A stale hybrid row keeps the key it has (path layout); a content-addressed one moves to its new blob.
    const keyOf = (row: ClaimedRow, hash: string, keep?: string | null): KeyResult =>
      addressed ? blobKey(row.app_id, hash) : keep ? { ok: true, key: keep } : table.keyFor(row, row.collision);
    // A stale hybrid row's object is ours and named by the row: replaced only under If-Match on its ETag.
    // Anything else is a create: the key must be free, or hold an object of ours that no row names.
    const intentFor = (keep?: string | null): WriteIntent =>
      keep && !addressed ? { kind: 'replace-ours' } : { kind: 'create', mayReplaceOurs: async (key) => !(await keysStillReferenced(context.db, [key])).has(key) };
    const upload = async (row: ClaimedRow, keep?: string | null): Promise<ItemOutcome<UploadedRow>> => {
      if (row.utf8 === false) return { kind: 'skipped', reason: notUtf8Reason(table, row), errorClass: 'NotUtf8' };
      if (addressed && row.path !== null) {
        const path = normalizePath(row.path);
        if (!path.ok) return { kind: 'skipped', reason: `unsafe path: ${path.reason}`, errorClass: 'UnsafePath' };
      }
      const contentType = table.contentTypeFor(row);
      if (row.content !== null) {
        if (table.name === 'snapshots') {
          try {
            assertSnapshotJson(row.content, `files_snapshot of version ${row.id}`);
          } catch (error) {
            if (error instanceof DataError) return { kind: 'skipped', reason: error.message };
            throw error;
          }
        }
        const body = Buffer.from(row.content, 'utf8');
        const hash = sha256Hex(body);
        const key = keyOf(row, hash, keep);
        if (!key.ok) return { kind: 'skipped', reason: `unsafe path: ${key.reason}`, errorClass: 'UnsafePath' };
        const stored = await encodeForStore(body, options.compress, hash);
        const encoded = stored.encoding ? { encoding: stored.encoding, contentSize: body.length } : undefined;
        if (addressed) await blobs.ensure(key.key, stored.body, hash, contentType, encoded);
        else await context.store.putVerified({ key: key.key, body: stored.body, sha256: hash, contentType, intent: intentFor(keep), encoded });
        if (encoded) {
          compression.objects++;
          compression.contentBytes += body.length;
          compression.storedBytes += stored.body.length;
        }
        return { kind: 'done', value: { id: row.id, key: key.key, hash, size: body.length }, bytes: body.length };
      }
      if (!row.db_hash || row.bytes === null) return { kind: 'failed', reason: 'content vanished before it could be read' };
      const expectedHash = row.db_hash;
      const expectedSize = row.bytes;
      const key = keyOf(row, expectedHash, keep);
      if (!key.ok) return { kind: 'skipped', reason: `unsafe path: ${key.reason}`, errorClass: 'UnsafePath' };
      const put = await large.run(() =>
        context.store.putStreamVerified({ key: key.key, open: () => readContentChunks(context.db, table, row.id), sha256: expectedHash, size: expectedSize, contentType, intent: intentFor(keep), compress: options.compress }),
      );
      if (options.compress && !put.adopted && put.size < expectedSize) {
        compression.objects++;
        compression.contentBytes += expectedSize;
        compression.storedBytes += put.size;
      }
      return { kind: 'done', value: { id: row.id, key: key.key, hash: expectedHash, size: expectedSize }, bytes: expectedSize };
    };
    const moved = await runBatches(context.db, run, { table, move: migrateMove(minBytes), work: (row) => upload(row).catch(refusedOrFailed) });
    if (!options.refreshStale || run.options.signal?.aborted) return moved;
    // Hybrid rows whose content the app rewrote after upload: upload the current content, then record its hash.
    const refreshed = await runBatches(context.db, run, {
      table,
      move: refreshMove(minBytes),
      work: async (row): Promise<ItemOutcome<RefreshedRow>> => {
        const outcome = await upload(row, row.key).catch(refusedOrFailed);
        if (outcome.kind !== 'done') return outcome;
        return { kind: 'done', value: { ...outcome.value, oldKey: row.key! }, bytes: outcome.bytes };
      },
    });
    return mergeRuns(moved, refreshed);
  });
  let remaining = 0;
  for (const table of options.tables) {
    remaining += (await selectionTotals(context.db, table, (params) => migrateMove(minBytes).takes(table, params), options.filter)).rows;
  }
  return {
    ...outcome,
    remaining,
    uploaded: runTotals(outcome).rows,
    uploadedBytes: runTotals(outcome).bytes,
    problems: countProblems(outcome),
    ...(options.compress ? { compression } : {}),
  };
}

/** An object we may not replace is a refusal (the row keeps its database content), not a failure. */
function refusedOrFailed(error: unknown): ItemOutcome<never> {
  if (error instanceof ObjectConflictError) return { kind: 'skipped', reason: error.message, errorClass: error.name };
  return { kind: 'failed', reason: errorMessage(error), errorClass: error instanceof Error ? error.name : undefined };
}

/**
 * Content-addressed uploads: a blob is uploaded once per run (rows of one batch with the same content
 * wait for the same upload), and not at all when the bucket already holds exactly these bytes (its ETag is
 * their MD5). The memory of recent blobs is bounded; forgetting one costs only a HEAD.
 */
class BlobUploads {
  private readonly recent = new Map<string, Promise<void>>();

  constructor(private readonly store: StorageContext['store']) {}

  ensure(key: string, body: Buffer, sha256: string, contentType: string, encoded?: { encoding: ContentEncoding; contentSize: number }): Promise<void> {
    const known = this.recent.get(key);
    if (known) return known;
    const upload = (async () => {
      // A blob whose ETag is the MD5 of these bytes holds them, whoever wrote it: nothing to upload.
      const existing = await this.store.head(key);
      if (existing && existing.size === body.length && existing.etag === md5Hex(body)) return;
      // A blob's key is its content's hash, so correct bytes are right for every row that names it.
      await this.store.putVerified({ key, body, sha256, contentType, intent: { kind: 'create', mayReplaceOurs: async () => true }, encoded });
    })();
    // A failed upload is forgotten at once, so the next row with these bytes tries again.
    upload.catch(() => this.recent.delete(key));
    if (this.recent.size >= 10_000) this.recent.delete(this.recent.keys().next().value!);
    this.recent.set(key, upload);
    return upload;
  }
}

/** Why a row of a SQL_ASCII database stays where it is: its bytes are not UTF-8, which the plan's content_hash and R2's keys are defined over. */
function notUtf8Reason(table: StoredTable, row: ClaimedRow): string {
  const where = `${table.table} #${row.id}${row.path === null ? '' : ` (${JSON.stringify(row.path)})`} of app ${row.app_id}`;
  return `${where} is not valid UTF-8 (a SQL_ASCII database stores whatever bytes it is sent): it stays in the database, where the app reads it as before, until its content and path are valid UTF-8`;
}
