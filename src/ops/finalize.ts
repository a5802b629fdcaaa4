import type { StorageContext } from '../context.ts';
import type { Db } from '../db.ts';
import type { Prices } from '../cost.ts';
import { planFinalize, planScopeOf, type Plan } from './plan.ts';
import type { ClaimedRow } from '../sql/claim-batch.ts';
import type { VerifiedCopy } from '../sql/flip-to-r2.ts';
import { finalizeMove } from '../sql/row-moves.ts';
import { runBatches, type ItemOutcome, type TableRunResult } from './batch-runner.ts';
import { errorMessage } from '../errors.ts';
import type { Reporter } from '../reporter.ts';
import type { CommonRunOptions } from './options.ts';
import { countProblems, runTotals, withWorker } from './worker-run.ts';
import { assertLifecycleKeepsObjects } from './store-gate.ts';

export interface FinalizeResult {
  tables: TableRunResult[];
  interrupted: boolean;
  sessionLost?: string;
  cleared: number;
  /** Database bytes no longer held: what the cleared contents took there (pg_column_size, TOAST's compression included). */
  bytesFreed: number;
  /** The cleared contents' own bytes. */
  contentBytesFreed: number;
  problems: number;
  /** What reclaims the space (not run by this tool: it is the operator's call when to take the I/O). */
  vacuumCommands: string[];
}

/** Finalize's plan (the hybrid band's when `hybridBand`: the options' r2 threshold is then the hybrid threshold). */
export async function planFinalization(db: Db, options: CommonRunOptions, prices: Prices, hybridBand: boolean): Promise<Plan> {
  const plan = await planFinalize(db, planScopeOf(options, prices));
  if (hybridBand) plan.notes.push({ note: 'hybrid-band-read-from-r2-only' });
  return plan;
}

/**
 * Phase 3: for hybrid rows above the r2 threshold, read the object back, check its SHA-256 against
 * content_hash and against the database content (hashed by PostgreSQL), and only then clear the database
 * content in a compare-and-set batch. A row whose copy is missing or different is reported and untouched.
 */
export async function finalize(context: StorageContext, options: CommonRunOptions, reporter: Reporter = {}): Promise<FinalizeResult> {
  // A lifecycle rule that expires the tool's keys would delete the only copy of what this clears.
  await assertLifecycleKeepsObjects(context.store);
  const outcome = await withWorker(context, options, reporter, 'finalize', (run, table) => {
    const check = async (row: ClaimedRow): Promise<ItemOutcome<VerifiedCopy>> => {
      if (!row.key || !row.hash) return { kind: 'skipped', reason: 'row has no key or hash' };
      if (row.db_hash !== row.hash) {
        return {
          kind: 'skipped',
          reason: 'database content no longer matches content_hash (changed since migrate); the R2 copy is stale. `migrate --refresh-stale` uploads it again',
        };
      }
      const read = await context.store.readAndHash(row.key);
      if (read.sha256 !== row.hash || (row.bytes !== null && read.size !== row.bytes)) {
        return {
          kind: 'failed',
          key: row.key,
          reason: `R2 copy does not match (object ${read.size} bytes, SHA-256 ${read.sha256.slice(0, 12)}…; database ${row.bytes} bytes, ${row.hash.slice(0, 12)}…); database content kept`,
        };
      }
      return { kind: 'done', value: { id: row.id, key: row.key, hash: row.hash }, bytes: read.size };
    };
    return runBatches(context.db, run, {
      table,
      move: finalizeMove(options.policy.r2Above),
      work: (row) => check(row).catch((error): ItemOutcome<VerifiedCopy> => ({ kind: 'failed', key: row.key ?? undefined, reason: errorMessage(error) })),
    });
  });
  const touched = outcome.tables.filter((r) => r.flipped > 0).map((r) => options.tables.find((t) => t.name === r.table)!.table);
  return {
    ...outcome,
    cleared: runTotals(outcome).rows,
    bytesFreed: runTotals(outcome).storedBytes,
    contentBytesFreed: runTotals(outcome).bytes,
    problems: countProblems(outcome),
    vacuumCommands: touched.map((table) => `VACUUM (ANALYZE) ${table};`),
  };
}
