import type { StorageContext } from '../context.ts';
import type { Db } from '../db.ts';
import { query } from '../db.ts';
import type { StoredTable } from '../tables.ts';
import { encodeForStore } from '../store/encoding.ts';
import { walkBucketByApp } from './bucket-walk.ts';
import { inR2 } from '../placement.ts';

/** What compression would save, from a sample of contents compressed here the way migrate would. */
export interface CompressionEstimate {
  sampledContents: number;
  sampledBytes: number;
  /** Share of the sampled bytes gzip saves, counting only contents it would compress (10% or more saved). */
  savingShare: number;
  /** That share applied to the contents still to migrate (the report's pending bytes). */
  estimatedSavedBytes: number;
  eligibleBytes: number;
}

/** What the bucket holds against the contents its objects stand for (listing sizes): measured, not sampled. */
export interface CompressionMeasured {
  objects: number;
  contentBytes: number;
  storedBytes: number;
  savedBytes: number;
}

const SAMPLE_ROWS = 200;
/** Sampled contents are held in memory: larger ones are left out of the sample. */
const SAMPLE_MAX_BYTES = 1024 * 1024;

/**
 * Compresses up to 200 contents picked at random (a page sample sized from the planner's row estimate,
 * so no table is counted or sorted for it) and applies the saving to what is still to migrate.
 */
export async function estimateCompression(db: Db, tables: StoredTable[], hybridMin: number, pendingBytes: number): Promise<CompressionEstimate> {
  let sampledContents = 0;
  let sampledBytes = 0;
  let savedBytes = 0;
  for (const table of tables) {
    const [{ estimate }] = await query<{ estimate: number }>(db, 'SELECT greatest(reltuples, 0)::float8 AS estimate FROM pg_class WHERE oid = to_regclass($1)', [table.table]);
    const percent = estimate > 0 ? Math.min(100, (SAMPLE_ROWS * 4 * 100) / estimate) : 100;
    const sample = await query<{ content: string }>(
      db,
      `SELECT ${table.contentColumn} AS content FROM ${table.table} TABLESAMPLE SYSTEM ($3::float4)
        WHERE ${table.locationColumn} = 'database' AND octet_length(${table.contentColumn}) BETWEEN $1 AND $2 LIMIT ${SAMPLE_ROWS}`,
      [hybridMin, SAMPLE_MAX_BYTES, percent],
    );
    for (const { content } of sample) {
      const body = Buffer.from(content, 'utf8');
      const stored = await encodeForStore(body, 'gzip');
      sampledContents++;
      sampledBytes += body.length;
      savedBytes += body.length - stored.body.length;
    }
  }
  const savingShare = sampledBytes ? savedBytes / sampledBytes : 0;
  return { sampledContents, sampledBytes, savingShare, estimatedSavedBytes: Math.round(pendingBytes * savingShare), eligibleBytes: pendingBytes };
}

/** Lists the bucket (one request per 1,000 objects) and sets each object's size against its row's content size. */
export async function measureCompression(context: StorageContext, tables: StoredTable[]): Promise<CompressionMeasured> {
  const measured = { objects: 0, contentBytes: 0, storedBytes: 0, savedBytes: 0 };
  for await (const group of walkBucketByApp(context, { tables, filter: {}, withMd5: false })) {
    const objects = new Map(group.objects.map((object) => [object.key, object]));
    // A key belongs to one app, so rows sharing an object (content-addressed) are all in this group.
    const counted = new Set<string>();
    for (const row of group.rows) {
      if (!inR2(row.location)) continue;
      const object = objects.get(row.key);
      const size = row.db_bytes ?? row.size;
      if (!object || size === null || counted.has(row.key)) continue;
      counted.add(row.key);
      measured.objects++;
      measured.contentBytes += size;
      measured.storedBytes += object.size;
    }
  }
  measured.savedBytes = measured.contentBytes - measured.storedBytes;
  return measured;
}
