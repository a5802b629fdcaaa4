import type { Db } from '../db.ts';
import { query } from '../db.ts';
import { readSchemaState, SCHEMA_ITEMS, type SchemaItem, type SchemaState } from '../sql/schema.ts';
import { SchemaMissingError } from '../errors.ts';

export interface SchemaReport extends SchemaState {
  ok: boolean;
}

export async function inspectSchema(db: Db): Promise<SchemaReport> {
  const state = await readSchemaState(db);
  return { ...state, ok: state.missing.length === 0 && state.missingTables.length === 0 };
}

/** The statements `schema --apply` would run, in order (also what --dry-run prints). */
export function statementsFor(state: SchemaState): string[] {
  const drops = state.invalidIndexes.map((name) => `DROP INDEX CONCURRENTLY IF EXISTS ${name}`);
  return [...drops, ...state.missing.flatMap((item) => item.statements)];
}

export interface ApplyResult {
  applied: string[];
  before: SchemaReport;
  after: SchemaReport;
}

/**
 * Adds what is missing. Columns are added with constant defaults (no table rewrite on PostgreSQL 11+);
 * indexes are built CONCURRENTLY so the app keeps writing; an index left INVALID by an interrupted build
 * is dropped and rebuilt. Running it twice is a no-op.
 */
export async function applySchema(db: Db): Promise<ApplyResult> {
  const before = await inspectSchema(db);
  if (before.missingTables.length) {
    throw new SchemaMissingError(`OverSkill's tables are missing: ${before.missingTables.join(', ')}. Is DATABASE_URL the app's database?`);
  }
  const applied: string[] = [];
  for (const statement of statementsFor(before)) {
    try {
      await query(db, statement);
    } catch (error) {
      // Embedded or restricted servers may not build indexes concurrently; a plain build is still correct.
      if (/CONCURRENTLY/.test(statement) && /concurrent|cannot run inside a transaction block/i.test(String((error as Error).message))) {
        await query(db, statement.replace(' CONCURRENTLY', ''));
      } else {
        throw error;
      }
    }
    applied.push(statement);
  }
  return { applied, before, after: await inspectSchema(db) };
}

/** Every data command checks the schema first and names the fix instead of failing halfway. */
export async function assertSchemaReady(db: Db): Promise<void> {
  const report = await inspectSchema(db);
  if (report.missingTables.length) {
    throw new SchemaMissingError(`OverSkill's tables are missing: ${report.missingTables.join(', ')}. Is DATABASE_URL the app's database?`);
  }
  if (!report.ok) {
    const names = report.missing.map(describeItem).join(', ');
    throw new SchemaMissingError(`The database lacks the storage columns this tool needs (${names}). Run \`overskill-storage schema --apply\` first.`);
  }
}

export function describeItem(item: SchemaItem): string {
  if (item.kind === 'column') return `${item.table}.${item.name}`;
  if (item.kind === 'nullable') return `${item.table}.${item.name} nullable`;
  if (item.kind === 'index') return `index ${item.name}`;
  return `table ${item.name}`;
}

export { SCHEMA_ITEMS };
