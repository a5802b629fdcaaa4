import type { Db } from '../db.ts';
import type { StoredTable } from '../tables.ts';
import type { Params } from '../sql/params.ts';
import type { RowFilter } from '../sql/filters.ts';
import { selectionTotals, type SelectionTotals } from '../sql/aggregates.ts';
import { classACost, classBCost, retrievalCost, storageCost, type Prices, DEFAULT_PRICES } from '../cost.ts';
import { DEFAULT_PART_SIZE } from '../object-store.ts';
import type { PlacementPolicy } from '../placement.ts';
import type { CommonRunOptions } from './options.ts';
import { hasAppWriter } from '../sql/stranded-writes.ts';
import { atLocation, finalizeMove, planLinesOf, takenInRun, inR2Sql, migrateMove, refreshMove, repairStrandedMove, rollbackMove, staysInDatabaseSql, type RowMove } from '../sql/row-moves.ts';
import { LOCATION } from '../placement.ts';

/** One line of a plan: what happens to how many rows of a table, and how many bytes. */
export interface PlanLine {
  table: string;
  action: string;
  rows: number;
  bytes: number;
}

/** What a write command would do, shown before it asks, and alone with --dry-run. */
export interface Plan {
  operation: string;
  lines: PlanLine[];
  /** Rows the run would change. */
  rows: number;
  bytes: number;
  requests: { classA: number; classB: number; free: number };
  /** `retrieval`: the fee for the bytes the run reads back (Infrequent Access only). */
  cost: { requests: number; storagePerMonth: number; retrieval: number };
  /**
   * Database bytes the operation frees now, or would free at finalize: what the contents take where PostgreSQL
   * keeps them (pg_column_size, TOAST's compression included), the space VACUUM makes reusable.
   */
  databaseBytesFreed: number;
  databaseBytesFreedLater: number;
  /** The same contents' own bytes (what R2 stores of them, uncompressed). */
  contentBytesFreed: number;
  contentBytesFreedLater: number;
  notes: PlanNote[];
}

/**
 * What a plan must also make known, as a reason with its figures: commands/support/render/plan-notes.ts
 * words each one, in the plan, its JSON and the step summary alike.
 */
export type PlanNote =
  | { note: 'infrequent-access'; retrievalPerGb: number }
  | { note: 'migrate-never-clears' }
  | { note: 'space-reusable-after-vacuum' }
  | { note: 'purge-after-verify' }
  | { note: 'purge-ignored-with-keep-hybrid' }
  | { note: 'hybrid-band-read-from-r2-only' }
  | { note: 'store-check'; dryRun: boolean; requests: number; prefix: string };

export interface PlanScope {
  tables: StoredTable[];
  filter: RowFilter;
  limit?: number;
  order?: 'id' | 'size-desc';
  policy: PlacementPolicy;
  inlineMaxBytes: number;
  prices?: Prices;
}

/** The plan's view of a walk: which rows, how many, under which thresholds, at which prices. */
export function planScopeOf(options: CommonRunOptions, prices?: Prices): PlanScope {
  return { tables: options.tables, filter: options.filter, limit: options.limit, order: options.order, policy: options.policy, inlineMaxBytes: options.inlineMaxBytes, prices };
}

function emptyPlan(operation: string): Plan {
  return {
    operation,
    lines: [],
    rows: 0,
    bytes: 0,
    requests: { classA: 0, classB: 0, free: 0 },
    cost: { requests: 0, storagePerMonth: 0, retrieval: 0 },
    databaseBytesFreed: 0,
    databaseBytesFreedLater: 0,
    contentBytesFreed: 0,
    contentBytesFreedLater: 0,
    notes: [],
  };
}

function finishCost(plan: Plan, prices: Prices, storedBytesDelta: number, bytesReadBack = 0): Plan {
  plan.cost.requests = classACost(plan.requests.classA, prices) + classBCost(plan.requests.classB, prices);
  plan.cost.storagePerMonth = storageCost(storedBytesDelta, prices);
  plan.cost.retrieval = retrievalCost(bytesReadBack, prices);
  if (prices.storageClass === 'infrequent-access') {
    plan.notes.push({ note: 'infrequent-access', retrievalPerGb: prices.retrievalPerGb ?? 0 });
  }
  return plan;
}

/**
 * App writes a stale partial save left where no reader looks (sql/stranded-writes.ts): every command that
 * flips rows puts them back first, so they are part of its plan (one HEAD or GET each, at most).
 */
async function planStrandedRepairs(db: Db, plan: Plan, scope: PlanScope): Promise<void> {
  const repair = repairStrandedMove(scope.policy.hybridMin);
  for (const table of scope.tables.filter(hasAppWriter)) {
    const stranded = await selectionTotals(db, table, (params) => repair.takes(table, params), scope.filter);
    if (!stranded.rows) continue;
    plan.lines.push({ table: table.name, action: lineOf(repair), rows: stranded.rows, bytes: stranded.bytes });
    plan.rows += stranded.rows;
    plan.requests.classB += stranded.rows;
  }
}

/** What is left of --limit, as the selection takes it (no limit when there was none). */
function limitOf(remaining: number): number | undefined {
  return Number.isFinite(remaining) ? remaining : undefined;
}

/** One PutObject per inline content; create + parts + complete per streamed one. */
function uploadRequestsFor(selection: SelectionTotals): number {
  return selection.rows - selection.rows_streamed + selection.rows_streamed * 2 + selection.parts_streamed;
}

/** A move's plan line where it has one line for all its rows. */
function lineOf(move: RowMove<unknown>): string {
  const [[from, line], ...more] = planLinesOf(move);
  if (from !== undefined || more.length) throw new Error(`the ${move.name} move has one plan line per location`);
  return line;
}

export async function planMigrate(db: Db, scope: PlanScope, minBytes: number, refreshStale = false): Promise<Plan> {
  const plan = emptyPlan('migrate');
  const move = migrateMove(minBytes);
  const refresh = refreshStale ? refreshMove(minBytes) : undefined;
  const prices = scope.prices ?? DEFAULT_PRICES;
  await planStrandedRepairs(db, plan, scope);
  let remaining = scope.limit ?? Number.POSITIVE_INFINITY;
  for (const table of scope.tables) {
    const moving = await selectionTotals(db, table, (params) => takenInRun(move)(table, params), scope.filter, {
      limit: limitOf(remaining),
      order: scope.order ?? 'id',
      above: scope.policy.r2Above,
      streamAbove: scope.inlineMaxBytes,
      partSize: DEFAULT_PART_SIZE,
      notUtf8Apart: true,
    });
    remaining -= moving.rows + moving.rows_not_utf8;
    const staying = await selectionTotals(db, table, (params) => staysInDatabaseSql(table, minBytes, params), scope.filter);
    const already = await selectionTotals(db, table, () => inR2Sql(table), scope.filter);
    plan.lines.push(
      { table: table.name, action: lineOf(move), rows: moving.rows - moving.rows_above, bytes: moving.bytes - moving.bytes_above },
      { table: table.name, action: 'upload, then hybrid; r2 only after finalize', rows: moving.rows_above, bytes: moving.bytes_above },
      { table: table.name, action: 'stays in database (too small)', rows: staying.rows, bytes: staying.bytes },
      { table: table.name, action: 'already in R2 (skipped)', rows: already.rows, bytes: already.bytes },
    );
    const refused = { rows: moving.rows_not_utf8, bytes: moving.bytes_not_utf8 };
    plan.rows += moving.rows;
    plan.bytes += moving.bytes;
    plan.requests.classA += uploadRequestsFor(moving);
    plan.databaseBytesFreedLater += moving.stored_bytes_above;
    plan.contentBytesFreedLater += moving.bytes_above;
    if (refresh) {
      const stale = await selectionTotals(db, table, (params) => takenInRun(refresh)(table, params), scope.filter, {
        limit: limitOf(remaining),
        order: 'id',
        above: 0,
        streamAbove: scope.inlineMaxBytes,
        partSize: DEFAULT_PART_SIZE,
        notUtf8Apart: true,
      });
      remaining -= stale.rows + stale.rows_not_utf8;
      plan.lines.push({ table: table.name, action: lineOf(refresh), rows: stale.rows, bytes: stale.bytes });
      plan.rows += stale.rows;
      plan.bytes += stale.bytes;
      plan.requests.classA += uploadRequestsFor(stale);
      refused.rows += stale.rows_not_utf8;
      refused.bytes += stale.bytes_not_utf8;
    }
    // Only a SQL_ASCII database holds such rows; elsewhere the line would always read 0.
    if (refused.rows) plan.lines.push({ table: table.name, action: 'refused: not valid UTF-8 (stays in database)', ...refused });
  }
  plan.notes.push({ note: 'migrate-never-clears' });
  return finishCost(plan, prices, plan.bytes);
}

/** Finalize's plan, at the scope's r2 threshold (the hybrid band is the same move from the hybrid threshold). */
export async function planFinalize(db: Db, scope: PlanScope): Promise<Plan> {
  const plan = emptyPlan('finalize');
  const move = finalizeMove(scope.policy.r2Above);
  const prices = scope.prices ?? DEFAULT_PRICES;
  await planStrandedRepairs(db, plan, scope);
  let remaining = scope.limit ?? Number.POSITIVE_INFINITY;
  for (const table of scope.tables) {
    const clearing = await selectionTotals(db, table, (params) => takenInRun(move)(table, params), scope.filter, { limit: limitOf(remaining), order: scope.order });
    remaining -= clearing.rows;
    plan.lines.push({ table: table.name, action: lineOf(move), rows: clearing.rows, bytes: clearing.bytes });
    plan.rows += clearing.rows;
    plan.bytes += clearing.bytes;
    plan.requests.classB += clearing.rows;
    plan.databaseBytesFreed += clearing.stored_bytes;
    plan.contentBytesFreed += clearing.bytes;
  }
  plan.notes.push({ note: 'space-reusable-after-vacuum' });
  return finishCost(plan, prices, 0, plan.bytes);
}

export async function planRollback(db: Db, scope: PlanScope, keepHybrid: boolean, purge: boolean): Promise<Plan> {
  const plan = emptyPlan('rollback');
  const prices = scope.prices ?? DEFAULT_PRICES;
  await planStrandedRepairs(db, plan, scope);
  let remaining = scope.limit ?? Number.POSITIVE_INFINITY;
  let purgedBytes = 0;
  const move = rollbackMove(keepHybrid ? LOCATION.hybrid : LOCATION.database);
  for (const table of scope.tables) {
    for (const [from, action] of planLinesOf(move)) {
      const taken = await selectionTotals(db, table, (params) => (from ? atLocation(move, from) : takenInRun(move))(table, params), scope.filter, { limit: limitOf(remaining) });
      remaining -= taken.rows;
      plan.lines.push({ table: table.name, action, rows: taken.rows, bytes: taken.bytes });
      plan.rows += taken.rows;
      if (from === LOCATION.r2) {
        // Only r2 rows are downloaded: a hybrid row's content is in the database already.
        plan.bytes += taken.bytes;
        plan.requests.classB += taken.rows;
      }
      if (purge && !keepHybrid) {
        plan.requests.free += taken.rows;
        purgedBytes += taken.bytes;
      }
    }
  }
  if (purge && !keepHybrid) plan.notes.push({ note: 'purge-after-verify' });
  if (purge && keepHybrid) plan.notes.push({ note: 'purge-ignored-with-keep-hybrid' });
  return finishCost(plan, prices, -purgedBytes, plan.bytes);
}
