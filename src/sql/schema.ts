import { query, type Queryable } from '../db.ts';

/** One piece of the Phase 1 schema (plus what this tool needs to verify versions and coordinate workers). */
export interface SchemaItem {
  kind: 'table' | 'column' | 'nullable' | 'index';
  table: string;
  name: string;
  /** Why the item exists; shown by `schema`. */
  purpose: string;
  /** Statements that add the item; index builds run CONCURRENTLY so a live table is never blocked. */
  statements: string[];
  concurrent?: boolean;
}

export const CLAIMS_TABLE = 'overskill_storage_claims';
export const STAGING_TABLE = 'overskill_storage_staging';

const column = (table: string, name: string, type: string, purpose: string): SchemaItem => ({
  kind: 'column',
  table,
  name,
  purpose,
  statements: [`ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${name} ${type}`],
});

const index = (table: string, columnName: string, unique: boolean, purpose: string): SchemaItem => {
  const name = `index_${table}_on_${columnName}`;
  // Keys are compared in byte order (COLLATE "C") so a keyset walk by key lines up with S3's listing order.
  const expression = columnName.startsWith('r2_') ? `${columnName} COLLATE "C"` : columnName;
  return {
    kind: 'index',
    table,
    name,
    purpose,
    concurrent: true,
    statements: [`CREATE ${unique ? 'UNIQUE ' : ''}INDEX CONCURRENTLY IF NOT EXISTS ${name} ON ${table} (${expression})`],
  };
};

export const SCHEMA_ITEMS: SchemaItem[] = [
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
  index('app_files', 'storage_location', false, 'find rows by location'),
  index('app_files', 'r2_object_key', true, 'one row per object'),
  index('app_files', 'content_hash', false, 'look rows up by content'),
  index('app_versions', 'storage_strategy', false, 'find versions by location'),
  index('app_versions', 'r2_snapshot_key', true, 'one version per snapshot object'),
  index('app_version_files', 'r2_content_key', true, 'one row per object'),
  index('app_version_files', 'storage_location', false, 'find rows by location'),
];

export const BASE_TABLES = ['apps', 'app_files', 'app_versions', 'app_version_files'];

interface ColumnRow {
  table_name: string;
  column_name: string;
  is_nullable: string;
}
interface IndexRow {
  table_name: string;
  column_name: string;
  is_unique: boolean;
  is_valid: boolean;
  index_name: string;
}

export interface SchemaState {
  missingTables: string[];
  missing: SchemaItem[];
  present: SchemaItem[];
  /** Indexes left INVALID by an interrupted concurrent build; --apply rebuilds them. */
  invalidIndexes: string[];
}

export async function readSchemaState(db: Queryable): Promise<SchemaState> {
  const columns = await query<ColumnRow>(
    db,
    `SELECT table_name, column_name, is_nullable FROM information_schema.columns
      WHERE table_schema = current_schema() AND table_name = ANY($1::text[])`,
    [[...BASE_TABLES, CLAIMS_TABLE, STAGING_TABLE]],
  );
  const indexes = await query<IndexRow>(
    db,
    `SELECT ct.relname AS table_name, a.attname AS column_name, i.indisunique AS is_unique, i.indisvalid AS is_valid, ci.relname AS index_name
       FROM pg_index i
       JOIN pg_class ct ON ct.oid = i.indrelid
       JOIN pg_class ci ON ci.oid = i.indexrelid
       JOIN pg_namespace n ON n.oid = ct.relnamespace AND n.nspname = current_schema()
       JOIN pg_attribute a ON a.attrelid = ct.oid AND a.attnum = i.indkey[0]
      WHERE ct.relname = ANY($1::text[])`,
    [BASE_TABLES],
  );
  const tables = new Set(columns.map((row) => row.table_name));
  const hasColumn = (table: string, name: string) => columns.some((row) => row.table_name === table && row.column_name === name);
  const missing: SchemaItem[] = [];
  const present: SchemaItem[] = [];
  const invalidIndexes: string[] = [];
  for (const item of SCHEMA_ITEMS) {
    let ok: boolean;
    if (item.kind === 'table') ok = tables.has(item.table);
    else if (item.kind === 'column') ok = hasColumn(item.table, item.name);
    else if (item.kind === 'nullable') ok = columns.some((row) => row.table_name === item.table && row.column_name === item.name && row.is_nullable === 'YES');
    else {
      const columnName = item.name.replace(`index_${item.table}_on_`, '');
      const unique = item.statements[0].startsWith('CREATE UNIQUE');
      const candidates = indexes.filter((row) => row.table_name === item.table && row.column_name === columnName && (!unique || row.is_unique));
      ok = candidates.some((row) => row.is_valid);
      if (!ok) invalidIndexes.push(...candidates.filter((row) => !row.is_valid).map((row) => row.index_name));
    }
    (ok ? present : missing).push(item);
  }
  return { missingTables: BASE_TABLES.filter((table) => !tables.has(table)), missing, present, invalidIndexes };
}
