import { query, type Queryable } from '../db.ts';

/** What this database lets the connected role do, as PostgreSQL itself says. */
export interface DatabaseAccess {
  user: string;
  /** Writes are refused here: a standby, or a role or database whose transactions are read-only by default. */
  readOnly: boolean;
  inRecovery: boolean;
  superuser: boolean;
  encoding: string;
  /** Tables present whose privileges the role lacks, e.g. "UPDATE on app_files". */
  missingPrivileges: string[];
  /** The content columns, with their types (text or character varying are what the tool reads). */
  contentColumns: { table: string; column: string; type: string }[];
  /** Whether the role may create tables in the schema (schema --apply adds the tool's tables). */
  canCreate: boolean;
}

/** The privileges each table needs for the tool's writes: its own tables fully, the app's three to read and flip. */
export const NEEDED_PRIVILEGES: { table: string; privileges: string[] }[] = [
  { table: 'apps', privileges: ['SELECT'] },
  { table: 'app_files', privileges: ['SELECT', 'UPDATE'] },
  { table: 'app_versions', privileges: ['SELECT', 'UPDATE'] },
  { table: 'app_version_files', privileges: ['SELECT', 'UPDATE'] },
  ...[
    'overskill_storage_claims',
    'overskill_storage_staging',
    'overskill_storage_restores',
    'overskill_storage_runs',
    'overskill_storage_run_workers',
    'overskill_storage_run_items',
    'overskill_storage_baseline',
    'overskill_storage_report_history',
  ].map((table) => ({ table, privileges: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'] })),
];

export const CONTENT_COLUMNS = [
  { table: 'app_files', column: 'content' },
  { table: 'app_versions', column: 'files_snapshot' },
  { table: 'app_version_files', column: 'content' },
];

export async function inspectDatabaseAccess(db: Queryable): Promise<DatabaseAccess> {
  const [facts] = await query<{ user: string; read_only: boolean; in_recovery: boolean; superuser: boolean; encoding: string; can_create: boolean }>(
    db,
    `SELECT current_user AS user, current_setting('transaction_read_only') = 'on' AS read_only, pg_is_in_recovery() AS in_recovery,
            coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false) AS superuser,
            current_setting('server_encoding') AS encoding, has_schema_privilege(current_schema(), 'CREATE') AS can_create`,
  );
  const checks = NEEDED_PRIVILEGES.flatMap(({ table, privileges }) => privileges.map((privilege) => ({ table, privilege })));
  const granted = await query<{ table: string; privilege: string; held: boolean | null }>(
    db,
    `SELECT u.relation AS "table", u.privilege,
            CASE WHEN to_regclass(quote_ident(u.relation)) IS NULL THEN NULL ELSE has_table_privilege(to_regclass(quote_ident(u.relation)), u.privilege) END AS held
       FROM unnest($1::text[], $2::text[]) AS u (relation, privilege)`,
    [checks.map((c) => c.table), checks.map((c) => c.privilege)],
  );
  const columns = await query<{ table: string; column: string; type: string }>(
    db,
    `SELECT c.relname AS "table", a.attname AS "column", format_type(a.atttypid, NULL) AS type
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
      WHERE a.attnum > 0 AND NOT a.attisdropped AND (c.relname::text, a.attname::text) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
    [CONTENT_COLUMNS.map((c) => c.table), CONTENT_COLUMNS.map((c) => c.column)],
  );
  return {
    user: facts.user,
    readOnly: facts.read_only || facts.in_recovery,
    inRecovery: facts.in_recovery,
    superuser: facts.superuser,
    encoding: facts.encoding,
    missingPrivileges: granted.filter((g) => g.held === false).map((g) => `${g.privilege} on ${g.table}`),
    contentColumns: columns,
    canCreate: facts.can_create,
  };
}

/** Tables of `tables` the role does not own (ALTER TABLE and CREATE INDEX need the owner), with their owners. */
export async function tablesNotOwned(db: Queryable, tables: string[]): Promise<{ table: string; owner: string }[]> {
  if (!tables.length) return [];
  return query<{ table: string; owner: string }>(
    db,
    `SELECT c.relname AS "table", pg_get_userbyid(c.relowner) AS owner FROM pg_class c
      WHERE c.oid = ANY(SELECT to_regclass(quote_ident(t)) FROM unnest($1::text[]) AS t) AND NOT pg_has_role(c.relowner, 'USAGE')`,
    [tables],
  );
}

/** The content column types the tool reads and writes as text. */
export const TEXT_TYPES = ['text', 'character varying'];

/** True when this session cannot write (a standby, or read-only transactions by default). */
export async function sessionIsReadOnly(db: Queryable): Promise<boolean> {
  const [row] = await query<{ read_only: boolean }>(db, "SELECT current_setting('transaction_read_only') = 'on' OR pg_is_in_recovery() AS read_only");
  return row.read_only;
}

/** Of `tables`, those that exist in the current schema. */
export async function existingTables(db: Queryable, tables: string[]): Promise<string[]> {
  if (!tables.length) return [];
  const rows = await query<{ name: string }>(db, 'SELECT t AS name FROM unnest($1::text[]) AS t WHERE to_regclass(quote_ident(t)) IS NOT NULL', [tables]);
  return rows.map((row) => row.name);
}

const utf8ByDatabase = new WeakMap<object, Promise<boolean>>();

/**
 * Whether the database's encoding is UTF8, asked once per database (a transaction shares its pool's
 * answer). Only there can PostgreSQL compare keys under Unicode normalisation; elsewhere the client does.
 */
export function databaseIsUtf8(db: Queryable): Promise<boolean> {
  const cacheKey = (db as unknown as { client?: { config?: object } }).client?.config ?? db;
  let answer = utf8ByDatabase.get(cacheKey);
  if (!answer) {
    answer = query<{ utf8: boolean }>(db, "SELECT getdatabaseencoding() = 'UTF8' AS utf8").then(([row]) => row.utf8);
    answer.catch(() => utf8ByDatabase.delete(cacheKey));
    utf8ByDatabase.set(cacheKey, answer);
  }
  return answer;
}
