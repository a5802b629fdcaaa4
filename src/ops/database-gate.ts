import type { Queryable } from '../db.ts';
import { ConfigError } from '../errors.ts';
import { inspectDatabaseAccess, TEXT_TYPES, type DatabaseAccess } from '../sql/database-access.ts';
import type { StoreProperty } from '../store/preflight.ts';

/** What in `access` stops the tool from changing rows, one phrase each (empty when nothing does). */
export function writeProblems(access: DatabaseAccess): string[] {
  const problems: string[] = [];
  if (access.readOnly) problems.push(access.inRecovery ? 'the database is a standby in recovery (read-only)' : 'transactions are read-only here (default_transaction_read_only, or a read-only role)');
  if (access.missingPrivileges.length) problems.push(`role "${access.user}" lacks ${access.missingPrivileges.join(', ')}`);
  return [...problems, ...readProblems(access)];
}

/** What stops the tool from even reading contents right. */
export function readProblems(access: DatabaseAccess): string[] {
  const problems: string[] = [];
  for (const column of access.contentColumns) {
    if (!TEXT_TYPES.includes(column.type)) problems.push(`${column.table}.${column.column} is ${column.type}, not text (the plan's contents are TEXT; the tool hashes and stores them as UTF-8 text)`);
  }
  if (access.encoding !== 'UTF8') {
    problems.push(`the database encoding is ${access.encoding}, not UTF8 (content_hash is the SHA-256 of a content's UTF-8 bytes, which such a database cannot promise)`);
  }
  return problems;
}

/**
 * Every command that changes rows asks this first, before it plans, probes the store or writes anything: a
 * read-only database, missing grants, a content column that is not text, or an encoding that is not UTF-8
 * is refused with exit 2 and one sentence naming it, instead of failing halfway with PostgreSQL's words.
 */
export async function assertDatabaseAllowsWrites(db: Queryable): Promise<void> {
  const problems = writeProblems(await inspectDatabaseAccess(db));
  if (problems.length) throw new ConfigError(`This database will not let the tool do its work, so nothing was changed: ${problems.join('; ')}. \`overskill-storage doctor\` shows every property.`);
}

/** Read-only commands (verify, report, export, cat) ask only what reading needs. */
export async function assertDatabaseReadable(db: Queryable): Promise<void> {
  const problems = readProblems(await inspectDatabaseAccess(db));
  if (problems.length) throw new ConfigError(`This database cannot be read as the tool reads it: ${problems.join('; ')}.`);
}

/** The database's side of `doctor`, one property per line. */
export function databaseProperties(access: DatabaseAccess): StoreProperty[] {
  const columns = access.contentColumns.filter((column) => !TEXT_TYPES.includes(column.type));
  return [
    {
      id: 'databaseWritable',
      property: 'the database accepts writes (not a standby, transactions not read-only)',
      required: true,
      holds: !access.readOnly,
      seen: access.readOnly ? (access.inRecovery ? 'a standby in recovery' : 'transaction_read_only is on') : 'read-write',
      risk: 'every command that moves rows refuses; status, report and verify still work',
    },
    {
      id: 'databasePrivileges',
      property: "the role may read the app's tables, flip their rows, and write the tool's own tables",
      required: true,
      holds: access.missingPrivileges.length === 0,
      seen: access.missingPrivileges.length ? `role "${access.user}" lacks ${access.missingPrivileges.join(', ')}` : `role "${access.user}" has every grant`,
      risk: 'every command that moves rows refuses (GRANT them, or run as the owner)',
    },
    {
      id: 'contentColumnTypes',
      property: 'the content columns are text (app_files.content, app_versions.files_snapshot, app_version_files.content)',
      required: true,
      holds: columns.length === 0,
      seen: columns.length ? columns.map((c) => `${c.table}.${c.column} is ${c.type}`).join('; ') : 'text',
      risk: 'contents could not be hashed and stored as the plan defines them',
    },
    {
      id: 'databaseEncoding',
      property: 'the database encoding is UTF8',
      required: true,
      holds: access.encoding === 'UTF8',
      seen: access.encoding,
      risk: "a content that is not valid UTF-8 could not be stored and read back as the same text",
    },
  ];
}
