import { query, type Queryable } from '../db.ts';
import { sqlKeyIdentity } from '../tables.ts';
import { databaseIsUtf8 } from './database-access.ts';

/** One piece of the Phase 1 schema (plus what this tool needs to verify versions and coordinate workers). */
export interface SchemaItem {
  kind: 'table' | 'column' | 'nullable' | 'index';
  table: string;
  name: string;
  /** Why the item exists; shown by `schema`. */
  purpose: string;
  /** Statements that add the item; index builds run CONCURRENTLY so a live table is never blocked. */
  statements: string[];
  /** For indexes: whether it must be unique (true), must not be (false), or either will do ('either'). */
  unique?: boolean | 'either';
  /** For indexes: the column it is on. */
  column?: string;
  /** For expression indexes (found by name): the expression it indexes. */
  expression?: string;
  /** For partial indexes: the predicate (rows without an object have no entry: no query of ours looks them up by key). */
  where?: string;
}

/**
 * How objects are keyed. 'path' is the plan's layout; 'content-addressed' (apps/{app}/blobs/{sha256})
 * shares one object among identical contents, which a unique index on the key column forbids.
 */
import type { KeyLayout } from '../key-layouts.ts';
export { KEY_LAYOUTS, type KeyLayout } from '../key-layouts.ts';

/** Key columns whose index is unique in the path layout and must not be in the content-addressed one. */
export const SHAREABLE_KEY_COLUMNS: readonly { table: string; column: string }[] = [
  { table: 'app_files', column: 'r2_object_key' },
  { table: 'app_version_files', column: 'r2_content_key' },
];

import { RUN_TABLE_DDL, RUNS_TABLE, RUN_WORKERS_TABLE } from './run-tables.ts';
import { BASELINE_COLUMNS, BASELINE_DDL, BASELINE_TABLE } from './baseline.ts';
import { RESTORES_DDL, RESTORES_TABLE } from './restores-table.ts';
import { REPORT_HISTORY_DDL, REPORT_HISTORY_TABLE } from './report-history.ts';
import { LEASES_DDL, LEASES_TABLE } from './worker-leases.ts';

export const CLAIMS_TABLE = 'overskill_storage_claims';
export const STAGING_TABLE = 'overskill_storage_staging';

const column = (table: string, name: string, type: string, purpose: string): SchemaItem => ({
  kind: 'column',
  table,
  name,
  purpose,
  statements: [`ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${name} ${type}`],
});

export function indexName(table: string, columnName: string): string {
  return `index_${table}_on_${columnName}`;
}

/** Key columns: only a row with an object has one, and every lookup by key names one. */
const isKeyColumn = (columnName: string) => columnName.startsWith('r2_');
const onlyKeyed = (columnName: string) => `${columnName} IS NOT NULL`;

export function createIndexSql(table: string, columnName: string, unique: boolean, name = indexName(table, columnName)): string {
  // Keys are compared in byte order (COLLATE "C"), the order S3 lists them in. A key index covers only the rows
  // that name an object: a NULL key is never looked up, and its entry would cost an index tuple per row.
  const [expression, where] = isKeyColumn(columnName) ? [`${columnName} COLLATE "C"`, ` WHERE ${onlyKeyed(columnName)}`] : [columnName, ''];
  return `CREATE ${unique ? 'UNIQUE ' : ''}INDEX CONCURRENTLY IF NOT EXISTS ${name} ON ${table} (${expression})${where}`;
}

const index = (table: string, columnName: string, unique: boolean, purpose: string): SchemaItem => ({
  kind: 'index',
  table,
  name: indexName(table, columnName),
  column: columnName,
  unique,
  purpose,
  ...(isKeyColumn(columnName) ? { where: onlyKeyed(columnName) } : {}),
  statements: [createIndexSql(table, columnName, unique)],
});

/**
 * An index on a key column's identity under the store's key rules (R2 NFC-normalises key names): every "does
 * a row name this object" question is asked through it, so another spelling of a key finds its row.
 */
const identityIndex = (table: string, columnName: string): SchemaItem => {
  const name = `index_${table}_on_${columnName}_identity`;
  const expression = sqlKeyIdentity(columnName);
  return {
    kind: 'index',
    table,
    name,
    expression,
    unique: false,
    where: onlyKeyed(columnName),
    purpose: "find rows by object under the store's key identity (R2 stores Unicode-equivalent keys as one object)",
    statements: [createIdentityIndexSql(table, name, expression, onlyKeyed(columnName))],
  };
};

function createIdentityIndexSql(table: string, name: string, expression: string, where: string): string {
  return `CREATE INDEX CONCURRENTLY IF NOT EXISTS ${name} ON ${table} ((${expression})) WHERE ${where}`;
}

/**
 * The name a narrower copy of an index is built under before it takes the index's place (build, drop the old,
 * rename: the table is never without the index). Also how an interrupted rebuild is found and finished.
 */
export function narrowedName(name: string): string {
  return `${name}_narrowed`;
}

/** The statement that builds `item`'s index under another name (to replace a wider one), unique as the one it replaces. */
function createSqlNamed(item: SchemaItem, name: string, unique: boolean): string {
  if (item.expression) return createIdentityIndexSql(item.table, name, item.expression, item.where!);
  return createIndexSql(item.table, item.column!, unique, name);
}

/** The schema for a key layout; without one, what every command needs whatever the layout. */
export function schemaItems(layout?: KeyLayout): SchemaItem[] {
  return SCHEMA_ITEMS.map((item) => {
    const shareable = item.kind === 'index' && SHAREABLE_KEY_COLUMNS.some((k) => k.table === item.table && k.column === item.column);
    if (!shareable) return item;
    if (layout === undefined) return { ...item, unique: 'either' as const };
    if (layout === 'content-addressed') {
      return { ...item, unique: false, purpose: 'find rows by object (not unique: identical contents share one object)', statements: [createIndexSql(item.table, item.column!, false)] };
    }
    return item;
  });
}

/** What the plan's own Phase 1 migrations add; every other column and index of SCHEMA_ITEMS is this tool's. */
const PLAN_ADDS = new Set([
  'app_files.storage_location',
  'app_files.r2_object_key',
  'app_files.content_hash',
  'index_app_files_on_storage_location',
  'index_app_files_on_r2_object_key',
  'index_app_files_on_content_hash',
  'app_versions.storage_strategy',
  'app_versions.r2_snapshot_key',
  'index_app_versions_on_storage_strategy',
  'index_app_versions_on_r2_snapshot_key',
  'app_version_files.r2_content_key',
  'index_app_version_files_on_r2_content_key',
]);

/** Whose a schema item is: the plan's migrations add it, or this tool does (for its own queries and checks). */
export function originOf(item: Pick<SchemaItem, 'kind' | 'table' | 'name'>): 'plan' | 'tool' {
  return PLAN_ADDS.has(item.kind === 'index' ? item.name : `${item.table}.${item.name}`) ? 'plan' : 'tool';
}

/** The columns and indexes the migration adds to a content table, by whose they are. */
export function addedTo(table: string): { columns: string[]; indexes: { name: string; origin: 'plan' | 'tool' }[] } {
  const items = SCHEMA_ITEMS.filter((item) => item.table === table);
  return {
    columns: items.filter((item) => item.kind === 'column').map((item) => item.name),
    indexes: items.filter((item) => item.kind === 'index').map((item) => ({ name: item.name, origin: originOf(item) })),
  };
}

const SCHEMA_ITEMS: SchemaItem[] = [
  column('app_files', 'storage_location', "character varying DEFAULT 'database'", "where the content lives: 'database', 'hybrid' or 'r2'"),
  column('app_files', 'r2_object_key', 'character varying', 'object key of the R2 copy'),
  column('app_files', 'content_hash', 'character varying', 'SHA-256 (hex) of the content bytes'),
  column('app_files', 'size_bytes', 'integer', 'content size in bytes'),
  {
    kind: 'nullable',
    table: 'app_files',
    name: 'content',
    purpose: 'content is NULL once it lives only in R2',
    statements: ['ALTER TABLE app_files ALTER COLUMN content DROP NOT NULL'],
  },
  column('app_versions', 'storage_strategy', "character varying DEFAULT 'database'", "where the snapshot lives: 'database', 'hybrid' or 'r2'"),
  column('app_versions', 'r2_snapshot_key', 'character varying', 'object key of the snapshot'),
  column('app_versions', 'snapshot_hash', 'character varying', 'SHA-256 of the snapshot, so an R2-only snapshot can still be verified'),
  column('app_versions', 'snapshot_size', 'bigint', 'snapshot size in bytes'),
  column('app_version_files', 'r2_content_key', 'character varying', 'object key of this version content'),
  column('app_version_files', 'storage_location', "character varying DEFAULT 'database'", "where the content lives: 'database', 'hybrid' or 'r2'"),
  column('app_version_files', 'content_hash', 'character varying', 'SHA-256 of the content, so an R2-only content can still be verified'),
  column('app_version_files', 'content_size', 'bigint', 'content size in bytes'),
  {
    kind: 'table',
    table: CLAIMS_TABLE,
    name: CLAIMS_TABLE,
    purpose: 'rows claimed by running workers, so parallel runs never do one row twice',
    statements: [
      `CREATE TABLE IF NOT EXISTS ${CLAIMS_TABLE} (
        table_name text NOT NULL,
        row_id bigint NOT NULL,
        worker bigint NOT NULL,
        claimed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (table_name, row_id)
      )`,
    ],
  },
  {
    kind: 'table',
    table: LEASES_TABLE,
    name: LEASES_TABLE,
    purpose: "each running worker's lease, renewed every second: a worker is alive while its lease has not expired, and its claims lapse with it",
    statements: [LEASES_DDL],
  },
  {
    kind: 'table',
    table: STAGING_TABLE,
    name: STAGING_TABLE,
    purpose: 'large contents coming back from R2, written in chunks before one atomic flip',
    statements: [
      `CREATE TABLE IF NOT EXISTS ${STAGING_TABLE} (
        table_name text NOT NULL,
        row_id bigint NOT NULL,
        worker bigint NOT NULL,
        seq integer NOT NULL,
        chunk text NOT NULL,
        PRIMARY KEY (table_name, row_id, worker, seq)
      )`,
    ],
  },
  {
    kind: 'table',
    table: RESTORES_TABLE,
    name: RESTORES_TABLE,
    purpose: 'what rollback restored, so a save the app computed from the row as it was before can be found and put back',
    statements: [RESTORES_DDL],
  },
  ...RUN_TABLE_DDL.map((t): SchemaItem => ({ kind: 'table', table: t.table, name: t.table, purpose: t.purpose, statements: [t.sql] })),
  column(RUNS_TABLE, 'store_check', 'jsonb', "what the store was proven to honour before the run's first object write (doctor's properties)"),
  column(RUN_WORKERS_TABLE, 'health', 'jsonb', "each worker's items in flight, its last progress, and its HTTP pool's queue wait and latency (status names a stalled worker from it)"),
  {
    kind: 'table',
    table: REPORT_HISTORY_TABLE,
    name: REPORT_HISTORY_TABLE,
    purpose: "one snapshot of the report per `maintain` run (bytes by location, database size, monthly cost), for the report's history",
    statements: [REPORT_HISTORY_DDL],
  },
  {
    kind: 'table',
    table: BASELINE_TABLE,
    name: BASELINE_TABLE,
    purpose: 'what the tables took on disk before anything moved, for the report to measure the reduction against',
    statements: [BASELINE_DDL],
  },
  ...BASELINE_COLUMNS.map((c) => column(BASELINE_TABLE, c.name, c.type, c.purpose)),
  index('app_files', 'storage_location', false, 'find rows by location'),
  index('app_files', 'r2_object_key', true, 'one row per object'),
  index('app_files', 'content_hash', false, 'look rows up by content'),
  index('app_versions', 'storage_strategy', false, 'find versions by location'),
  index('app_versions', 'r2_snapshot_key', true, 'one version per snapshot object'),
  index('app_version_files', 'r2_content_key', true, 'one row per object'),
  index('app_version_files', 'storage_location', false, 'find rows by location'),
  identityIndex('app_files', 'r2_object_key'),
  identityIndex('app_versions', 'r2_snapshot_key'),
  identityIndex('app_version_files', 'r2_content_key'),
];

export const BASE_TABLES = ['apps', 'app_files', 'app_versions', 'app_version_files'];

interface ColumnRow {
  table_name: string;
  column_name: string;
  is_nullable: string;
}
interface IndexRow {
  table_name: string;
  /** NULL for an expression index. */
  column_name: string | null;
  is_unique: boolean;
  is_valid: boolean;
  index_name: string;
  /** The partial index's predicate as PostgreSQL prints it, or NULL for a full index. */
  predicate: string | null;
}

/** An index that holds an entry for every row where a partial one over the rows with an object would do. */
export interface IndexToNarrow {
  table: string;
  name: string;
  /** The predicate it is rebuilt with. */
  where: string;
  /** Build the narrow copy, drop the wide index, give the copy its name; what is left of an interrupted rebuild only. */
  statements: string[];
}

export interface SchemaState {
  missingTables: string[];
  missing: SchemaItem[];
  present: SchemaItem[];
  /** Indexes to drop before their item can be built: left INVALID by an interrupted build, or of the wrong kind for the layout. */
  indexesToDrop: string[];
  /** Key indexes that must become unique (path layout) although rows share objects: --apply refuses. */
  sharedKeys: { table: string; column: string; key: string; rows: number }[];
  /** Present indexes that cover every row where only the rows with an object are looked up: --apply rebuilds them partial. */
  indexesToNarrow: IndexToNarrow[];
}

/** `(r2_object_key IS NOT NULL)` as PostgreSQL prints a predicate, and `r2_object_key IS NOT NULL` as we write it, compare equal. */
const samePredicate = (printed: string, written: string) => {
  const bare = (text: string) => text.replace(/[()\s]/g, '').toLowerCase();
  return bare(printed) === bare(written);
};

/**
 * What is left to do for a present index that should be partial. A full one is rebuilt: its narrow copy is built
 * CONCURRENTLY beside it, then the wide one is dropped CONCURRENTLY and the copy renamed, so lookups always have
 * an index. An interrupted rebuild is found by the copy's name and finished (or its INVALID copy dropped).
 */
function narrowingOf(item: SchemaItem, indexes: IndexRow[]): { drops: string[]; statements: string[] } {
  const where = item.where!;
  const found = indexes.find((row) => row.index_name === item.name);
  const copyName = narrowedName(item.name);
  const copy = indexes.find((row) => row.index_name === copyName);
  const copyReady = copy !== undefined && copy.is_valid && copy.predicate !== null && samePredicate(copy.predicate, where);
  const drops = copy && !copyReady ? [copyName] : [];
  // An INVALID index under the item's name serves nothing: it goes, and a ready copy takes the name.
  const own = found?.is_valid ? found : undefined;
  if (found && !own) drops.push(item.name);
  const rename = `ALTER INDEX ${copyName} RENAME TO ${item.name}`;
  if (!own) return { drops, statements: copyReady ? [rename] : [] };
  if (own.predicate !== null) return { drops: copy ? [copyName] : [], statements: [] };
  return { drops, statements: [...(copyReady ? [] : [createSqlNamed(item, copyName, own.is_unique)]), `DROP INDEX CONCURRENTLY IF EXISTS ${item.name}`, rename] };
}

export async function readSchemaState(db: Queryable, layout?: KeyLayout): Promise<SchemaState> {
  const columns = await query<ColumnRow>(
    db,
    // pg_catalog, not information_schema: the latter hides the columns of tables the role has no grant on,
    // which would call a table that is there "missing".
    `SELECT c.relname AS table_name, a.attname AS column_name, CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END AS is_nullable
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p')
       JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
      WHERE c.relname = ANY($1::text[]) AND a.attnum > 0 AND NOT a.attisdropped`,
    [[...BASE_TABLES, ...SCHEMA_ITEMS.filter((item) => item.kind === 'table').map((item) => item.table)]],
  );
  const indexes = await query<IndexRow>(
    db,
    `SELECT ct.relname AS table_name, a.attname AS column_name, i.indisunique AS is_unique, i.indisvalid AS is_valid, ci.relname AS index_name,
            pg_get_expr(i.indpred, i.indrelid) AS predicate
       FROM pg_index i
       JOIN pg_class ct ON ct.oid = i.indrelid
       JOIN pg_class ci ON ci.oid = i.indexrelid
       JOIN pg_namespace n ON n.oid = ct.relnamespace AND n.nspname = current_schema()
       LEFT JOIN pg_attribute a ON a.attrelid = ct.oid AND a.attnum = i.indkey[0]
      WHERE ct.relname = ANY($1::text[])`,
    [BASE_TABLES],
  );
  const tables = new Set(columns.map((row) => row.table_name));
  const hasColumn = (table: string, name: string) => columns.some((row) => row.table_name === table && row.column_name === name);
  const state: SchemaState = { missingTables: BASE_TABLES.filter((table) => !tables.has(table)), missing: [], present: [], indexesToDrop: [], sharedKeys: [], indexesToNarrow: [] };
  // An index serves the item when it covers at least the rows the item's does: every row, or exactly its predicate.
  const covers = (row: IndexRow, item: SchemaItem) => row.predicate === null || (item.where !== undefined && samePredicate(row.predicate, item.where));
  // The identity indexes normalise keys, which PostgreSQL does only in a UTF8 database; elsewhere the
  // client compares keys under their identity (references.ts), through the byte-ordered key indexes.
  const utf8 = await databaseIsUtf8(db);
  for (const item of schemaItems(layout).filter((item) => utf8 || !item.expression)) {
    let ok: boolean;
    if (item.kind === 'table') ok = tables.has(item.table);
    else if (item.kind === 'column') ok = hasColumn(item.table, item.name);
    else if (item.kind === 'nullable') ok = columns.some((row) => row.table_name === item.table && row.column_name === item.name && row.is_nullable === 'YES');
    else if (item.expression) {
      const named = indexes.filter((row) => row.index_name === item.name || row.index_name === narrowedName(item.name));
      ok = named.some((row) => row.is_valid && covers(row, item));
      if (!ok) state.indexesToDrop.push(...named.map((row) => row.index_name));
    } else {
      const onColumn = indexes.filter((row) => row.table_name === item.table && row.column_name === item.column);
      const fits = (row: IndexRow) => (item.unique === 'either' || row.is_unique === item.unique) && covers(row, item);
      ok = onColumn.some((row) => row.is_valid && fits(row)) && (item.unique !== false || !onColumn.some((row) => row.is_unique));
      if (!ok) {
        // An invalid build, a unique index where objects are to be shared, or an index of ours of the wrong kind.
        for (const row of onColumn) {
          if (!row.is_valid || (item.unique === false && row.is_unique) || (row.index_name === item.name && !fits(row))) state.indexesToDrop.push(row.index_name);
        }
      }
    }
    (ok ? state.present : state.missing).push(item);
    if (ok && item.where) {
      const narrowing = narrowingOf(item, indexes);
      state.indexesToDrop.push(...narrowing.drops);
      if (narrowing.statements.length) state.indexesToNarrow.push({ table: item.table, name: item.name, where: item.where, statements: narrowing.statements });
    }
  }
  if (layout === 'path') {
    for (const { table, column } of SHAREABLE_KEY_COLUMNS) {
      if (!hasColumn(table, column) || !state.missing.some((item) => item.kind === 'index' && item.table === table && item.column === column)) continue;
      const shared = await query<{ key: string; rows: number }>(
        db,
        `SELECT ${column} AS key, count(*)::int AS rows FROM ${table} WHERE ${column} IS NOT NULL GROUP BY ${column} HAVING count(*) > 1 LIMIT 5`,
      );
      state.sharedKeys.push(...shared.map((row) => ({ table, column, key: row.key, rows: row.rows })));
    }
  }
  return state;
}
