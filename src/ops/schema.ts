import type { Db } from '../db.ts';
import { recordBaseline } from '../sql/baseline.ts';
import { acquireSession, query } from '../db.ts';
import { originOf, readSchemaState, SHAREABLE_KEY_COLUMNS, type KeyLayout, type SchemaItem, type SchemaState } from '../sql/schema.ts';
import { ConfigError, SchemaMissingError } from '../errors.ts';
import { existingTables, inspectDatabaseAccess, tablesNotOwned } from '../sql/database-access.ts';
import { encodingProblem } from './database-gate.ts';
import { TABLE_NAMES, TABLES, type StoredTable } from '../tables.ts';

const STORED_TABLES = TABLE_NAMES.map((name) => TABLES[name]);

export interface SchemaReport extends SchemaState {
  ok: boolean;
  /** Full key indexes this role may not rebuild (only a table's owner may): they stay full, which costs space, not correctness. */
  narrowingSkipped: { table: string; name: string; reason: string }[];
  /** Each index the migration adds that is present, with whose it is, why it is there and what it takes on disk (with `indexSizes`; else empty). */
  indexes: { table: string; name: string; origin: 'plan' | 'tool'; purpose: string; bytes: number }[];
}

/** `indexSizes`: also what each present index takes on disk (the `schema` command shows them; the checks before a data command do not need them). */
export async function inspectSchema(db: Db, layout?: KeyLayout, options: { indexSizes?: boolean } = {}): Promise<SchemaReport> {
  const state = await readSchemaState(db, layout);
  const narrowingSkipped = await withoutNarrowingNotAllowed(db, state);
  const present = options.indexSizes ? state.present.filter((item) => item.kind === 'index') : [];
  const sizes = new Map(
    present.length
      ? (await query<{ name: string; bytes: number }>(db, 'SELECT n AS name, coalesce(pg_relation_size(to_regclass(n)), 0)::float8 AS bytes FROM unnest($1::text[]) n', [present.map((item) => item.name)])).map((row) => [row.name, row.bytes])
      : [],
  );
  const indexes = present.map((item) => ({ table: item.table, name: item.name, origin: originOf(item), purpose: item.purpose, bytes: sizes.get(item.name) ?? 0 }));
  return { ...state, indexes, narrowingSkipped, ok: state.missing.length === 0 && state.missingTables.length === 0 };
}

/**
 * Rebuilding a full key index as a partial one is an economy: where this session may not (a standby, or a role
 * that does not own the table), it is taken out of what --apply runs and said, so a complete schema never makes
 * --apply refuse.
 */
async function withoutNarrowingNotAllowed(db: Db, state: SchemaState): Promise<SchemaReport['narrowingSkipped']> {
  if (!state.indexesToNarrow.length) return [];
  const access = await inspectDatabaseAccess(db);
  const notOwned = access.readOnly ? [] : await tablesNotOwned(db, [...new Set(state.indexesToNarrow.map((index) => index.table))]);
  const skipped = state.indexesToNarrow.flatMap((index) => {
    const owner = notOwned.find((row) => row.table === index.table)?.owner;
    if (access.readOnly) return [{ table: index.table, name: index.name, reason: 'this session is read-only' }];
    return owner === undefined ? [] : [{ table: index.table, name: index.name, reason: `only ${index.table}'s owner ("${owner}") may rebuild it; role "${access.user}" does not own it` }];
  });
  state.indexesToNarrow = state.indexesToNarrow.filter((index) => !skipped.some((s) => s.name === index.name));
  return skipped;
}

/** The statements `schema --apply` would run, in order (also what --dry-run prints). */
export function statementsFor(state: SchemaState): string[] {
  const drops = [...new Set(state.indexesToDrop)].map((name) => `DROP INDEX CONCURRENTLY IF EXISTS ${name}`);
  return [...drops, ...state.missing.flatMap((item) => item.statements), ...state.indexesToNarrow.flatMap((index) => index.statements)];
}

export interface ApplyResult {
  applied: string[];
  before: SchemaReport;
  after: SchemaReport;
}

/**
 * Adds what is missing. Columns are added with constant defaults (no table rewrite on PostgreSQL 11+);
 * indexes are built CONCURRENTLY so the app keeps writing; an index left INVALID by an interrupted build
 * is dropped and rebuilt. Running it twice is a no-op. Refuses up front (nothing changed) when the path
 * layout's unique key index cannot be built because rows already share objects.
 */
/**
 * What `schema --apply` needs of the role for the items still missing: a writable database, ownership of each
 * table it alters or indexes, and CREATE on the schema for the tables it adds. Refused (exit 2) before the
 * first statement, so it never stops halfway with PostgreSQL's "must be owner of table".
 */
export async function assertSchemaApplicable(db: Db, state: SchemaState): Promise<void> {
  const access = await inspectDatabaseAccess(db);
  const problems: string[] = [];
  if (access.readOnly) problems.push(access.inRecovery ? 'the database is a standby in recovery (read-only)' : 'transactions are read-only here');
  const encoding = encodingProblem(access.encoding);
  if (encoding) problems.push(encoding);
  const altered = await existingTables(db, [...new Set([...state.missing.filter((item) => item.kind !== 'table').map((item) => item.table), ...state.indexesToNarrow.map((index) => index.table)])]);
  for (const { table, owner } of await tablesNotOwned(db, altered)) problems.push(`role "${access.user}" does not own ${table} (its owner is "${owner}"), which ALTER TABLE, CREATE INDEX and DROP INDEX need`);
  const created = state.missing.filter((item) => item.kind === 'table').map((item) => item.table);
  if (created.length && !access.canCreate) problems.push(`role "${access.user}" may not create tables in this schema (${created.join(', ')} are to be added)`);
  if (problems.length) {
    throw new ConfigError(`schema --apply cannot finish here, so nothing was changed: ${problems.join('; ')}. Run it as the tables' owner (the role the app's migrations run as).`);
  }
}

export async function applySchema(db: Db, layout: KeyLayout = 'path'): Promise<ApplyResult> {
  const before = await inspectSchema(db, layout);
  if (before.missingTables.length) {
    throw new SchemaMissingError(`OverSkill's tables are missing: ${before.missingTables.join(', ')}. Is DATABASE_URL the app's database?`);
  }
  if (before.sharedKeys.length) {
    const example = before.sharedKeys[0];
    throw new SchemaMissingError(
      `Rows share objects (content-addressed layout; e.g. ${example.rows} rows of ${example.table} name ${example.key}), so the path layout's unique index on ${example.table}.${example.column} cannot be built. Keep \`--key-layout content-addressed\`, or roll those rows back first. Nothing was changed.`,
    );
  }
  if (statementsFor(before).length) await assertSchemaApplicable(db, before);
  const applied: string[] = [];
  for (const statement of statementsFor(before)) {
    try {
      await runDdl(db, statement);
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
  // The first apply is the moment before anything moves: what the tables take now is the baseline.
  await recordBaseline(db, 'schema --apply');
  if (applied.length) {
    // New columns have no statistics yet; without them the planner walks claims through the wrong index.
    for (const statement of analyzeStatements()) {
      await query(db, statement);
      applied.push(statement);
    }
  }
  return { applied, before, after: await inspectSchema(db, layout, { indexSizes: true }) };
}

/** How long one DDL statement that locks a table out (ALTER TABLE) may wait for the lock before it tries again. */
const DDL_LOCK_TIMEOUT_MS = 3000;
const DDL_ATTEMPTS = 20;

/**
 * One DDL statement. ALTER TABLE takes an ACCESS EXCLUSIVE lock, and while it waits for one every query of the
 * app's on that table queues behind it (PostgreSQL's "Explicit Locking"): it waits at most a bounded
 * lock_timeout, then gives the app its table back and tries again after a pause, as long as a few minutes
 * allow. Index builds are CONCURRENTLY: they never block the app's writes and wait as long as they must.
 */
async function runDdl(db: Db, statement: string): Promise<void> {
  if (!/^ALTER (TABLE|INDEX)/i.test(statement)) {
    await query(db, statement);
    return;
  }
  const session = await acquireSession(db);
  try {
    await session.connection.query("SELECT set_config('lock_timeout', $1, false)", [String(DDL_LOCK_TIMEOUT_MS)]);
    for (let attempt = 1; ; attempt++) {
      try {
        await session.connection.query(statement);
        return;
      } catch (error) {
        if ((error as { code?: string }).code !== '55P03' || attempt >= DDL_ATTEMPTS) throw error;
        await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** attempt)));
      }
    }
  } finally {
    await session.connection.query("SELECT set_config('lock_timeout', '0', false)").catch(() => undefined);
    await session.release();
  }
}

/** ANALYZE of the columns this tool filters on, table by table. */
export function analyzeStatements(tables = STORED_TABLES): string[] {
  return tables.map((t) => `ANALYZE ${t.table} (${t.locationColumn}, ${t.keyColumn}, ${t.hashColumn})`);
}

/**
 * Tables whose storage columns were never analyzed (the columns were added outside this tool, or just now)
 * get statistics before a run claims from them: a claim planned without them reads the whole table.
 */
export async function ensureStatistics(db: Db, tables: StoredTable[]): Promise<void> {
  const rows = await query<{ tablename: string }>(
    db,
    `SELECT tablename FROM pg_stats WHERE schemaname = current_schema() AND tablename = ANY($1::text[]) AND attname = ANY($2::text[])`,
    [tables.map((t) => t.table), tables.map((t) => t.locationColumn)],
  );
  const analyzed = new Set(rows.map((row) => row.tablename));
  for (const statement of analyzeStatements(tables.filter((t) => !analyzed.has(t.table)))) await query(db, statement);
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

/**
 * The content-addressed layout shares one object among identical contents: a unique index on the key
 * column would reject the second row's flip. Checked before any upload, so a run never fails halfway.
 */
export async function assertLayoutAllowed(db: Db, layout: KeyLayout): Promise<void> {
  if (layout !== 'content-addressed') return;
  const report = await inspectSchema(db, layout);
  const blocking = report.missing.filter((item) => item.kind === 'index' && SHAREABLE_KEY_COLUMNS.some((k) => k.table === item.table && k.column === item.column));
  if (blocking.length) {
    throw new SchemaMissingError(
      `The content-addressed layout cannot coexist with a unique index on ${blocking.map((item) => `${item.table}.${item.column}`).join(' and ')}: identical contents share one object, so several rows name one key. Run \`overskill-storage schema --apply --key-layout content-addressed\` to make those indexes non-unique, or use the default path layout.`,
    );
  }
}

export function describeItem(item: SchemaItem): string {
  if (item.kind === 'column') return `${item.table}.${item.name}`;
  if (item.kind === 'nullable') return `${item.table}.${item.name} nullable`;
  if (item.kind === 'index') return `${item.unique === false ? 'non-unique ' : item.unique === true ? 'unique ' : ''}index ${item.name}`;
  return `table ${item.name}`;
}
