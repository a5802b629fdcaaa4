import type { StorageContext } from '../context.ts';
import { TABLES, type StoredTable, type TableName } from '../tables.ts';
import { keyIdentity } from '../keys.ts';
import type { RowFilter } from '../sql/filters.ts';
import { countStoredRows, type KeyedRow } from '../sql/keyed-rows.ts';
import { contradictoryRows } from '../sql/contradictions.ts';
import { walkBucketByApp } from './bucket-walk.ts';
import { mapLimit } from '../pool.ts';
import { md5Hex } from '../hashing.ts';
import { assertSnapshotJson } from '../snapshot.ts';
import { errorMessage, IntegrityError } from '../errors.ts';
import type { Reporter } from '../reporter.ts';
import type { StoredObject } from '../object-store.ts';
import { assertSchemaReady } from './schema.ts';
import { assertScopeSelects } from './scope.ts';
import { LOCATION, inR2 } from '../placement.ts';

export interface VerifyOptions {
  tables: StoredTable[];
  filter: RowFilter;
  /** Download every object and hash it, instead of trusting listings (size, ETag) and the DB. */
  deep: boolean;
  orphans: boolean;
  /** Percent of rows to check (a stable choice by row); orphans are not reported while sampling. */
  samplePercent?: number;
  /**
   * Which window of the sample: window w takes the rows whose stable position falls in the w-th slice of
   * `samplePercent`, so consecutive windows (maintain: one per day) cover every row in 100 / percent of them.
   */
  sampleWindow?: number;
  concurrency: number;
  limit?: number;
  /** Problems kept in the result; the counts are always complete. */
  maxListed?: number;
  signal?: AbortSignal;
}

export interface VerifyProblem {
  table: TableName;
  id: string;
  appId: string;
  path: string | null;
  key: string | null;
  problem: string;
}

export interface VerifyResult {
  checked: Record<string, number>;
  problemCount: number;
  problems: VerifyProblem[];
  orphanCount: number;
  orphanBytes: number;
  orphans: { key: string; size: number; lastModified?: string }[];
  deep: boolean;
  sampled: boolean;
  interrupted: boolean;
  /** Objects downloaded (--deep), and how many of those downloads failed outright (availability, not content). */
  reads: { attempted: number; failed: number };
}

/** Stable pseudo-random choice of a row for --sample; `window` shifts the slice taken (a rotating sample). */
function sampled(row: KeyedRow, percent: number, window = 0): boolean {
  const digest = md5Hex(`${row.table}:${row.id}`);
  const slice = Math.round(percent * 100);
  const position = parseInt(digest.slice(0, 8), 16) % 10000;
  return (((position - window * slice) % 10000) + 10000) % 10000 < slice;
}

/**
 * Checks every row that lives (partly) in R2: its object exists, size and content match, the database
 * copy (where kept) still matches content_hash, and its flags agree with its columns. The default mode
 * needs one list request per 1000 objects; --deep downloads and hashes each object.
 */
export async function verify(context: StorageContext, options: VerifyOptions, reporter: Reporter = {}): Promise<VerifyResult> {
  await assertSchemaReady(context.db);
  await assertScopeSelects(context.db, options.filter);
  const maxListed = options.maxListed ?? 10_000;
  const result: VerifyResult = {
    checked: Object.fromEntries(options.tables.map((t) => [t.name, 0])),
    problemCount: 0,
    problems: [],
    orphanCount: 0,
    orphanBytes: 0,
    orphans: [],
    deep: options.deep,
    sampled: options.samplePercent !== undefined && options.samplePercent < 100,
    interrupted: false,
    reads: { attempted: 0, failed: 0 },
  };
  const report = (row: Pick<KeyedRow, 'table' | 'id' | 'app_id' | 'path'> & { key: string | null }, problem: string) => {
    result.problemCount++;
    if (result.problems.length < maxListed) {
      result.problems.push({ table: row.table, id: row.id, appId: row.app_id, path: row.path, key: row.key, problem });
    }
  };

  for (const table of options.tables) {
    for (const row of await contradictoryRows(context.db, table, options.filter, maxListed)) {
      report({ table: table.name, id: row.id, app_id: row.app_id, path: row.path, key: row.key }, row.problem);
    }
  }

  const stage = options.deep ? 'verify objects (deep)' : 'verify objects';
  reporter.stage?.(stage, { items: await countStoredRows(context.db, options.tables, options.filter) });
  let budget = options.limit ?? Number.POSITIVE_INFINITY;
  for await (const group of walkBucketByApp(context, { tables: options.tables, filter: options.filter, withMd5: !options.deep, signal: options.signal })) {
    const listing = new ListingByIdentity(group.objects);
    const referenced = new Set<string>();
    const toCheck: { row: KeyedRow; object: StoredObject }[] = [];
    const encodedCandidates: { row: KeyedRow; object: StoredObject }[] = [];
    const stored = group.rows.filter((row) => inR2(row.location));
    for (const [row, problem] of await sharedObjectProblems(context, stored)) report(row, problem);
    const found = new Map<KeyedRow, StoredObject | undefined>();
    await mapLimit(stored, options.concurrency, async (row) => found.set(row, await listing.find(context, row.key)));
    for (const row of group.rows) {
      referenced.add(keyIdentity(row.key));
      if (!inR2(row.location)) continue; // flag problems were reported above
      if (result.sampled && !sampled(row, options.samplePercent!, options.sampleWindow)) continue;
      if (budget <= 0) break;
      budget--;
      result.checked[row.table] = (result.checked[row.table] ?? 0) + 1;
      const object = found.get(row);
      if (!object) {
        report(row, row.location === LOCATION.r2 ? 'object is missing and the database holds no copy: content is lost unless restored from a backup' : 'object is missing');
        continue;
      }
      const expectedSize = row.db_bytes ?? row.size;
      // A compressed object is smaller than its content: its metadata (one HEAD) says whether that is why.
      if (expectedSize !== null && object.size !== expectedSize) encodedCandidates.push({ row, object });
      else for (const problem of shallowProblems(row, object)) report(row, problem);
      if (options.deep) toCheck.push({ row, object });
    }
    if (encodedCandidates.length) {
      await mapLimit(encodedCandidates, options.concurrency, async ({ row, object }) => {
        const head = await context.store.head(row.key).catch(() => undefined);
        const expectedSize = row.db_bytes ?? row.size;
        const encodedRight = head?.encoding && head.size === object.size && head.contentSize === expectedSize && (!row.hash || head.sha256 === row.hash);
        // Encoded by someone else, with no content size recorded: only decoding it tells, which --deep does.
        if (head?.encoding && !encodedRight && options.deep) return;
        for (const problem of shallowProblems(row, object, encodedRight ? head!.contentSize : undefined)) report(row, problem);
      });
      encodedCandidates.length = 0;
    }
    if (toCheck.length) {
      await mapLimit(toCheck, options.concurrency, async ({ row }) => {
        result.reads.attempted++;
        for (const problem of await deepProblems(context, row, () => result.reads.failed++)) report(row, problem);
      });
    }
    reporter.advance?.(stored.length, stored.reduce((sum, row) => sum + (found.get(row)?.size ?? 0), 0));
    if (options.orphans && !result.sampled) {
      for (const object of group.objects) {
        if (referenced.has(keyIdentity(object.key))) continue;
        result.orphanCount++;
        result.orphanBytes += object.size;
        if (result.orphans.length < maxListed) result.orphans.push({ key: object.key, size: object.size, lastModified: object.lastModified?.toISOString() });
      }
    }
    if (budget <= 0) break;
  }
  result.interrupted = options.signal?.aborted ?? false;
  // A sampled deep verify lists every stored row but hashes only its sample: said as such.
  const listed = Object.values(result.checked).reduce((sum, n) => sum + n, 0);
  reporter.stageDone?.(stage, result.sampled ? `${listed} stored row${listed === 1 ? '' : 's'} in today's sample, ${result.reads.attempted} downloaded and hashed` : undefined);
  return result;
}

/**
 * One app group's listing, looked up as the store looks keys up. A row's own spelling is found at once; another
 * spelling of it (R2 lists the spelling uploaded last) is confirmed with one HEAD of the row's key, so a store
 * that keeps spellings apart is not taken to hold an object it does not.
 */
class ListingByIdentity {
  private readonly exact = new Map<string, StoredObject>();
  private readonly equivalent = new Map<string, StoredObject>();

  constructor(objects: StoredObject[]) {
    for (const object of objects) {
      this.exact.set(object.key, object);
      this.equivalent.set(keyIdentity(object.key), object);
    }
  }

  async find(context: StorageContext, key: string): Promise<StoredObject | undefined> {
    const listed = this.exact.get(key);
    if (listed) return listed;
    const other = this.equivalent.get(keyIdentity(key));
    if (!other) return undefined;
    const head = await context.store.head(key);
    return head ? { ...other, key, size: head.size, etag: head.etag } : undefined;
  }
}

/**
 * Rows whose keys are different spellings of one object (R2 NFC-normalises keys): one object holds the bytes
 * of at most one of them, and every other reads those. Each row is named with the others, and which bytes the
 * object holds (its recorded SHA-256, from one HEAD). Rows sharing one spelling on purpose (content-addressed
 * blobs, a restored file and its version row) are not reported here: their bytes are checked as usual.
 */
async function sharedObjectProblems(context: StorageContext, rows: KeyedRow[]): Promise<[KeyedRow, string][]> {
  const byIdentity = new Map<string, KeyedRow[]>();
  for (const row of rows) {
    const identity = keyIdentity(row.key);
    byIdentity.set(identity, [...(byIdentity.get(identity) ?? []), row]);
  }
  const problems: [KeyedRow, string][] = [];
  for (const sharing of byIdentity.values()) {
    if (new Set(sharing.map((row) => row.key)).size < 2) continue;
    const head = await context.store.head(sharing[0].key).catch(() => undefined);
    // The app's objects carry no SHA-256 of ours: then only the bytes themselves tell whose they are.
    const sha256 = head ? (head.sha256 ?? (await context.store.readAndHash(sharing[0].key).catch(() => undefined))?.sha256) : undefined;
    const name = (row: KeyedRow) => `${TABLES[row.table].table} #${row.id} (${JSON.stringify(row.key)})`;
    const holder = sharing.find((row) => sha256 !== undefined && row.hash === sha256);
    for (const row of sharing) {
      const others = sharing.filter((other) => other !== row).map(name).join(', ');
      const holds = !head
        ? 'no object is there'
        : holder
          ? `it holds the bytes of ${holder === row ? 'this row' : name(holder)}`
          : sha256
            ? "it holds none of these rows' bytes"
            : 'its bytes could not be read to tell whose they are';
      const reads = row === holder ? 'this row reads its own bytes until another of these rows is written' : head ? 'this row reads bytes that are not its own' : 'this row reads nothing';
      problems.push([row, `shares one object with ${others}: the keys are Unicode-equivalent spellings, one object on R2; ${holds}, and ${reads}. Rename one of the files in the app and restore its content from a backup or the database`]);
    }
  }
  return problems;
}

/** `decodedSize`: the object is stored compressed and its metadata gives this content size (checked by the caller). */
function shallowProblems(row: KeyedRow, object: StoredObject, decodedSize?: number): string[] {
  const problems: string[] = [];
  const expectedSize = row.db_bytes ?? row.size;
  const size = decodedSize ?? object.size;
  if (expectedSize !== null && size !== expectedSize) {
    problems.push(`object is ${object.size} bytes, the ${row.db_bytes !== null ? 'database content' : 'recorded size'} is ${expectedSize}`);
  }
  if (decodedSize === undefined && row.db_md5 && /^[0-9a-f]{32}$/.test(object.etag) && object.etag !== row.db_md5 && object.size === row.db_bytes) {
    problems.push(`object bytes differ from the database content (ETag ${object.etag}, content MD5 ${row.db_md5})`);
  }
  if (row.db_hash_ok === false) problems.push('database content no longer matches content_hash (changed since it was uploaded); `migrate --refresh-stale` uploads it again');
  return problems;
}

async function deepProblems(context: StorageContext, row: KeyedRow, readFailed: () => void): Promise<string[]> {
  const problems: string[] = [];
  try {
    if (row.table === 'snapshots' && (row.size ?? row.db_bytes ?? 0) <= 64 * 1024 * 1024) {
      const body = await context.store.getVerified(row.key, row.hash);
      try {
        assertSnapshotJson(body.toString('utf8'), `snapshot object ${row.key}`);
      } catch (error) {
        problems.push(errorMessage(error));
      }
      return problems;
    }
    const read = await context.store.readAndHash(row.key);
    if (!row.hash) problems.push('row has no content hash to check the object against');
    else if (read.sha256 !== row.hash) problems.push(`object bytes hash to ${read.sha256.slice(0, 16)}…, content_hash is ${row.hash.slice(0, 16)}…`);
    if (read.metadataSha256 && row.hash && read.metadataSha256 !== row.hash) problems.push('object metadata sha256 differs from content_hash');
  } catch (error) {
    // Bytes that came back wrong are a content problem; a read that did not come back at all is availability's.
    if (!(error instanceof IntegrityError)) readFailed();
    problems.push(errorMessage(error));
  }
  return problems;
}
