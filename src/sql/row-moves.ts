/**
 * The row's lifecycle: every move a content row can make, declared once. Each move names the rows it takes
 * (one SQL condition on `t`, which the plan counts, the run claims by and the closing "still remaining"
 * count re-counts), what its claim reads of each row, its compare-and-set flip (one statement per batch,
 * in the flip-to-*.ts modules), and the line the plan gives it.
 *
 *   database ──migrate──▶ hybrid ──finalize──▶ r2            (finalize --hybrid-band: the same move, from the hybrid threshold)
 *   database ◀──rollback── hybrid, r2                         (rollback --keep-hybrid: r2 ──▶ hybrid)
 *   hybrid ──refresh──▶ hybrid                                (the app rewrote its content after the upload)
 *   any ──repair-stranded──▶ as the app left it               (a stale partial save of the app's; stranded-writes.ts)
 */
import type { Queryable } from '../db.ts';
import { sqlSha256, type StoredTable } from '../tables.ts';
import type { Params } from './params.ts';
import { flipToHybrid, type UploadedRow } from './flip-to-hybrid.ts';
import { flipToR2, type VerifiedCopy } from './flip-to-r2.ts';
import { flipToDatabase, type KeptCopy, type RestoredContent } from './flip-to-database.ts';
import { flipRefreshed, type RefreshedRow } from './refresh-hybrid.ts';
import { appHashOverRestoredSql, hasAppWriter, repairStranded, strandedWriteSql, type StrandedRepair } from './stranded-writes.ts';
import { LOCATION, type Location } from '../placement.ts';

export interface RowMove<Done> {
  name: string;
  /** The rows it takes: a condition on the table aliased `t`; `params` binds its values. */
  takes(table: StoredTable, params: Params): string;
  /**
   * Rows the stranded-write repair, which runs first in every flipping command, turns into rows this move
   * takes in the same run: the plan counts them with the move.
   */
  takesOnceRepaired?(table: StoredTable, params: Params): string;
  /** Rows this move takes now that the repair, which runs first, moves out of its way: the plan does not count them with the move. */
  leftOnceRepaired?(table: StoredTable): string;
  /** What the claim reads of each row: its content (to upload it), and PostgreSQL's hash of its content. */
  reads: { content: boolean; dbHash: boolean };
  /** The batch's compare-and-set flip; releases every claim of the batch and returns the ids it flipped. */
  flip(db: Queryable, table: StoredTable, worker: string, done: Done[], claimedIds: string[]): Promise<string[]>;
  /**
   * What the plan says this move does to the rows it takes: one line, or one per location the rows come from
   * (each counted by atLocation, so the lines add up to what the move takes).
   */
  planLine: string | Partial<Record<Location, string>>;
}

/** A rollback batch: r2 rows come back with their downloaded content; hybrid rows still hold theirs. */
export type RollbackItem = { restored: RestoredContent } | { kept: KeptCopy };

/** Rows at `location`, with or without an object key, holding a content of at least `minBytes` in the database. */
function contentAt(table: StoredTable, params: Params, location: Location, keyed: boolean, minBytes: number): string {
  return `t.${table.locationColumn} = '${location}' AND t.${table.keyColumn} IS ${keyed ? 'NOT NULL' : 'NULL'} AND t.${table.contentColumn} IS NOT NULL
          AND octet_length(t.${table.contentColumn}) >= ${params.add(minBytes, 'bigint')}`;
}

/** Contents of at least `minBytes` still only in the database: uploaded, then hybrid. */
export function migrateMove(minBytes: number): RowMove<UploadedRow> {
  return {
    name: 'migrate',
    takes: (table, params) => `${contentAt(table, params, LOCATION.database, false, minBytes)} AND NOT ${appHashOverRestoredSql(table)}`,
    // A hybrid row without a key holds the app's content: the repair makes it a database row, still keyless.
    takesOnceRepaired: (table, params) => (hasAppWriter(table) ? contentAt(table, params, LOCATION.hybrid, false, minBytes) : 'false'),
    reads: { content: true, dbHash: false },
    flip: flipToHybrid,
    planLine: 'upload, then hybrid (DB + R2)',
  };
}

/** The row's content is no longer the one its content_hash (and so its object) was made from. */
function contentRewrittenSql(table: StoredTable): string {
  return `${sqlSha256(`t.${table.contentColumn}`)} IS DISTINCT FROM t.${table.hashColumn}`;
}

/** Hybrid rows whose database content was rewritten after upload (the app's old write path): their object is stale. */
export function refreshMove(minBytes: number): RowMove<RefreshedRow> {
  return {
    name: 'refresh',
    takes: (table, params) => `${contentAt(table, params, LOCATION.hybrid, true, minBytes)} AND ${contentRewrittenSql(table)} AND NOT ${appHashOverRestoredSql(table)}`,
    reads: { content: true, dbHash: false },
    flip: flipRefreshed,
    planLine: 're-upload: content changed after upload (stale)',
  };
}

/**
 * Hybrid rows above `r2Above` (exclusive) whose copy is proven: the database content is cleared. The hybrid
 * band (`finalize --hybrid-band`) is this move from the hybrid threshold up.
 */
export function finalizeMove(r2Above: number): RowMove<VerifiedCopy> {
  return {
    name: 'finalize',
    // Above r2Above, exclusive: a content of r2Above + 1 bytes and more (lengths are whole bytes).
    takes: (table, params) => `${contentAt(table, params, LOCATION.hybrid, true, r2Above + 1)} AND t.${table.hashColumn} IS NOT NULL`,
    reads: { content: false, dbHash: true },
    flip: flipToR2,
    planLine: 'read back, verify, clear DB content (r2)',
  };
}

/**
 * Rows with an object, back to the database (`to` 'database': r2 and hybrid rows, which lose their key) or
 * only as far as hybrid (--keep-hybrid: r2 rows get their content back and keep their object).
 */
export function rollbackMove(to: 'database' | 'hybrid'): RowMove<RollbackItem> {
  const from = to === 'hybrid' ? `= '${LOCATION.r2}'` : `IN ('${LOCATION.hybrid}', '${LOCATION.r2}')`;
  return {
    name: 'rollback',
    takes: (table) => `t.${table.locationColumn} ${from} AND t.${table.keyColumn} IS NOT NULL`,
    // An r2 row holding content holds the app's: the repair makes it a database row, which rollback leaves.
    leftOnceRepaired: (table) => (hasAppWriter(table) ? `t.${table.locationColumn} = '${LOCATION.r2}' AND t.${table.contentColumn} IS NOT NULL` : 'false'),
    reads: { content: false, dbHash: false },
    flip: (db, table, worker, done, claimedIds) => {
      const restored = done.flatMap((item) => ('restored' in item ? [item.restored] : []));
      const kept = done.flatMap((item) => ('kept' in item ? [item.kept] : []));
      return flipToDatabase(db, table, worker, restored, kept, to, claimedIds);
    },
    planLine:
      to === 'hybrid'
        ? { r2: 'download, verify, write back to DB (hybrid)' }
        : { r2: 'download, verify, write back to DB (database)', hybrid: 'flip hybrid back to database (content already there)' },
  };
}

/** The states a stale partial save of the app's leaves (stranded-writes.ts), put back as the app meant them. */
export function repairStrandedMove(hybridMin: number): RowMove<StrandedRepair> {
  return {
    name: 'repair-stranded',
    takes: (table) => strandedWriteSql(table, hybridMin),
    reads: { content: false, dbHash: true },
    flip: repairStranded,
    planLine: "put back the app's writes a stale save left unreadable",
  };
}

/** A move's plan lines, each with the location its rows come from (none: all the rows the move takes). */
export function planLinesOf(move: RowMove<unknown>): [Location | undefined, string][] {
  return typeof move.planLine === 'string' ? [[undefined, move.planLine]] : (Object.entries(move.planLine) as [Location, string][]);
}

/** Every row a run of the move takes: those it takes now but for the ones the repair before it moves away, and those the repair hands it. */
export function takenInRun(move: RowMove<unknown>): RowMove<unknown>['takes'] {
  return (table, params) => {
    const now = move.leftOnceRepaired ? `(${move.takes(table, params)}) AND NOT (${move.leftOnceRepaired(table)})` : move.takes(table, params);
    return move.takesOnceRepaired ? `((${now}) OR (${move.takesOnceRepaired(table, params)}))` : now;
  };
}

/** Rows a run of the move takes (takenInRun) that are at `location`: how a plan splits one move's rows into its lines. */
export function atLocation(move: RowMove<unknown>, location: Location): RowMove<unknown>['takes'] {
  return (table, params) => `(${takenInRun(move)(table, params)}) AND t.${table.locationColumn} = '${location}'`;
}

/** Rows no move takes because they are too small for R2 (the plan's "stays in database" line). */
export function staysInDatabaseSql(table: StoredTable, minBytes: number, params: Params): string {
  return `t.${table.locationColumn} = '${LOCATION.database}' AND t.${table.contentColumn} IS NOT NULL AND octet_length(t.${table.contentColumn}) < ${params.add(minBytes, 'bigint')}`;
}

/** Rows that have left the database already (the plan's "already in R2" line). */
export function inR2Sql(table: StoredTable): string {
  return `t.${table.locationColumn} IN ('${LOCATION.hybrid}', '${LOCATION.r2}')`;
}
