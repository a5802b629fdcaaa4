import type { Queryable } from '../db.ts';
import { ConfigError } from '../errors.ts';
import { inspectDatabaseAccess, TEXT_TYPES, type DatabaseAccess } from '../sql/database-access.ts';
import type { StoreProperty } from '../store/preflight.ts';
import { connectionLimits, describeBindingLimit, type ConnectionLimits } from '../sql/connection-limits.ts';
import type { SessionPooling } from '../sql/session-pooling.ts';

/**
 * A command that changes rows needs its pool (`pool`, one of them open already) and a worker session of its own.
 * Where the role's or the database's CONNECTION LIMIT leaves less room than that, it is refused before anything
 * changes (it would fail mid-run, some rows flipped, with "too many connections for role"). Where only the
 * server's max_connections is short, the pool may still do with fewer (it opens connections as work needs
 * them): said as a warning, and refused only when not even two more can be had.
 */
export async function assertConnectionsAvailable(db: Queryable, pool: number, why: string): Promise<{ limits: ConnectionLimits; warning?: string }> {
  const limits = await connectionLimits(db);
  const needed = pool; // pool - 1 more for the pool, + 1 for the worker's session
  const short = limits.headroom < needed;
  if (short && (limits.binding !== 'server' || limits.headroom < 2)) {
    throw new ConfigError(
      `This command needs up to ${needed} more database connections (${why}, and a session for the run's worker), and ${describeBindingLimit(limits)}: room for ${limits.headroom}. Nothing was changed. Run it with a lower --concurrency (or --db-connections), or when fewer sessions are open.`,
    );
  }
  return { limits, ...(short ? { warning: `The server has room for ${limits.headroom} more connections (${describeBindingLimit(limits)}); this command may open up to ${needed}: if it cannot, it stops with one sentence, and a lower --concurrency is the way on.` } : {}) };
}

/**
 * doctor's view of how sessions reach the server. Runs work through any pooler (leases, per-transaction
 * settings); what needs a session of its own takes the direct URL behind one in transaction mode.
 */
export function sessionProperty(pooling: SessionPooling, directUrlGiven: boolean): StoreProperty {
  return {
    id: 'sessionsKept',
    property: 'each connection keeps its own database session (no pooler in transaction mode), or a direct URL is given for what needs one',
    required: false,
    holds: pooling.kind === 'kept' || directUrlGiven,
    seen: pooling.seen,
    risk: 'every run works through it; schema --apply and reclaim need a session of their own and refuse without --direct-database-url (or DIRECT_DATABASE_URL)',
  };
}

/** doctor's view of the connection limits against a pool of `pool`. */
export function connectionProperty(limits: ConnectionLimits, pool: number): StoreProperty {
  const binding =
    limits.binding === 'role'
      ? `role limit ${limits.role.limit}, ${limits.role.open} open`
      : limits.binding === 'database'
        ? `database limit ${limits.database.limit}, ${limits.database.open} open`
        : `max_connections ${limits.server.maxConnections}, ${limits.server.open} open`;
  return {
    id: 'databaseConnections',
    property: `the role may open the connections a run takes (a pool of ${pool} at the default --concurrency, and a worker's session)`,
    required: false,
    holds: limits.headroom >= pool,
    seen: `${Number.isFinite(limits.headroom) ? limits.headroom : 'any number'} more (${binding})`,
  };
}

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
  const encoding = encodingProblem(access.encoding);
  if (encoding) problems.push(encoding);
  return problems;
}

/**
 * UTF8 is what the plan assumes; SQL_ASCII is taken row by row (a row that is not UTF-8 is refused by name).
 * In any other encoding octet_length() counts the server's bytes, not UTF-8's, so every size the tool
 * records and compares would be wrong; such a database is refused whole, before any work.
 */
export function encodingProblem(encoding: string): string | undefined {
  if (encoding === 'UTF8' || encoding === 'SQL_ASCII') return undefined;
  return `the database encoding is ${encoding}; the tool works in UTF8 databases, and row by row in SQL_ASCII ones (in ${encoding} the byte counts it records and compares would not be UTF-8's)`;
}

/**
 * Every command that changes rows asks this first, before it plans, probes the store or writes anything: a
 * read-only database, missing grants, a content column that is not text, or an encoding other than UTF8 and
 * SQL_ASCII is refused with exit 2 and one sentence naming it, instead of failing halfway with PostgreSQL's words.
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
      property: 'the database encoding is UTF8 (SQL_ASCII is taken row by row)',
      required: true,
      holds: encodingProblem(access.encoding) === undefined,
      seen: encodingSeen(access.encoding),
      risk:
        access.encoding === 'SQL_ASCII'
          ? 'a row whose content or path is not valid UTF-8 is refused by name and stays in the database; the rest move'
          : 'every command refuses: sizes and hashes are defined over UTF-8 bytes',
    },
  ];
}

function encodingSeen(encoding: string): string {
  if (encoding === 'UTF8') return 'UTF8';
  if (encoding === 'SQL_ASCII') return 'SQL_ASCII: a row that is not valid UTF-8 is refused by name';
  return `${encoding}: neither UTF8 nor SQL_ASCII`;
}
