import knexFactory, { type Knex } from 'knex';
import pg from 'pg';
import { ConfigError } from './errors.ts';
import { redact, describeDatabaseUrl } from './secrets.ts';

// bigint ids stay strings end to end (Rails ids can exceed 2^53); counts are cast in SQL where needed.
pg.types.setTypeParser(pg.types.builtins.INT8, (value: string) => value);

export type Db = Knex;
export type Queryable = Knex | Knex.Transaction;

export interface DbOptions {
  url: string;
  poolSize?: number;
  statementTimeoutMs?: number;
  applicationName?: string;
}

/**
 * How the tool's connections reach PostgreSQL: 'kept' where each connection is one server session (directly,
 * or through a pooler in session mode), 'transaction' behind a pooler in transaction mode (each transaction
 * may run on another server connection, so session state neither stays with us nor stays ours: a SET would
 * be left on a server connection the app's requests then use). Until it is found out, sessions are taken as
 * kept (src/sql/session-pooling.ts finds it out).
 */
export type Pooling = 'unknown' | 'kept' | 'transaction';

interface SessionSettings {
  statementTimeoutMs: number;
  pooling: Pooling;
}

export function createDb(options: DbOptions): Db {
  const db = knexFactory({
    client: 'pg',
    connection: {
      connectionString: options.url,
      application_name: options.applicationName ?? 'overskill-storage',
      connectionTimeoutMillis: 10_000,
    },
    pool: { min: 0, max: Math.max(1, options.poolSize ?? 4), acquireTimeoutMillis: 60_000 },
    acquireConnectionTimeout: 60_000,
    // knex would print "Connection Error: ..." for each pooled connection a restart drops; the command that
    // meets the lost connection says it once, in a sentence with the way on (commands/support/flow/exit.ts).
    log: { warn: () => undefined },
  });
  clientOf(db).config.overskillSession = { statementTimeoutMs: Math.max(0, Math.floor(options.statementTimeoutMs ?? 0)), pooling: 'unknown' };
  return db;
}

/** Tells the Db how its connections reach the server (found by detectSessionPooling); see prepareSession. */
export function setPooling(db: Db, pooling: Exclude<Pooling, 'unknown'>): void {
  settingsOf(db).pooling = pooling;
}

export function poolingOf(db: Queryable): Pooling {
  return settingsOf(db).pooling;
}

/*
 * Every session of the tool's is set up as pg_dump and pg_repack set up theirs, by SET and not by startup
 * parameters (a pooler such as PgBouncer refuses unknown ones: its "ignore_startup_parameters"):
 * - timeouts: a role's `statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout` (Rails
 *   deployments set them for the app's requests) would cut the tool's whole-table statements and its waits
 *   for the app's row locks. The tool's own bounds apply instead: `statementTimeoutMs` where a caller asked for
 *   one, a bounded `lock_timeout` around DDL (ops/schema.ts), and no transaction of the tool's idles
 *   (PostgreSQL's "Client Connection Defaults": each is a session setting SET may change).
 * - text: in a SQL_ASCII database text is bytes in no declared encoding, and PostgreSQL refuses to send a UTF8
 *   client a value that is not valid UTF-8: one such path or content would fail a whole statement. There the
 *   session asks for the bytes as stored; the rows that are not UTF-8 are recognised in SQL (sqlIsUtf8) and
 *   refused by name, never moved or handed out. Any other encoding is converted to UTF-8 by PostgreSQL.
 * Where sessions are kept, once per connection (set_config(..., false)). Behind transaction pooling the same
 * settings are made LOCAL to each transaction (set_config(..., true)): a statement of its own runs in a
 * transaction of its own (BEGIN, settings, statement, COMMIT: one server connection throughout), and they end
 * with it, leaving nothing on the server connection for the next client (PostgreSQL's "SET": "SET LOCAL ...
 * effects last only till the end of the current transaction"; PgBouncer's "Features": SET is a session feature
 * transaction pooling does not support).
 */
const SETTINGS_SQL = (local: boolean) =>
  `SELECT set_config('statement_timeout', $1, ${local}), set_config('lock_timeout', '0', ${local}), set_config('idle_in_transaction_session_timeout', '0', ${local}),
          CASE WHEN current_setting('server_encoding') = 'SQL_ASCII' THEN set_config('client_encoding', 'SQL_ASCII', ${local}) END`;

/** Connections whose session settings are made (kept sessions), and transactions whose LOCAL settings are. */
const preparedConnections = new WeakSet<object>();
const preparedTransactions = new WeakSet<object>();

/** Statements PostgreSQL refuses inside a transaction block: behind transaction pooling they run bare. */
const OUTSIDE_TRANSACTION = /^\s*(VACUUM|(CREATE|DROP)\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY|REINDEX\b[^;]*\bCONCURRENTLY)/i;

async function prepareKeptSession(db: Queryable, connection: pg.PoolClient): Promise<void> {
  if (preparedConnections.has(connection)) return;
  await connection.query(SETTINGS_SQL(false), [String(settingsOf(db).statementTimeoutMs)]);
  preparedConnections.add(connection);
}

/** Inside an open transaction behind transaction pooling: the settings, once per transaction. */
export async function prepareTransaction(db: Queryable, connection: pg.PoolClient, transaction: object = connection): Promise<void> {
  const settings = settingsOf(db);
  if (settings.pooling !== 'transaction') return prepareKeptSession(db, connection);
  if (preparedTransactions.has(transaction)) return;
  await connection.query(SETTINGS_SQL(true), [String(settings.statementTimeoutMs)]);
  preparedTransactions.add(transaction);
}

/**
 * Runs one native, parameterised statement ($1, $2, ...) on a pooled connection (or the transaction's own).
 * Native placeholders keep array parameters whole, which `unnest($1::bigint[], ...)` batching relies on.
 */
export async function query<Row = Record<string, unknown>>(db: Queryable, sql: string, params: unknown[] = []): Promise<Row[]> {
  const client = clientOf(db);
  const connection = await client.acquireConnection();
  try {
    const inTransaction = (db as { isTransaction?: boolean }).isTransaction === true;
    if (settingsOf(db).pooling !== 'transaction' || inTransaction) {
      await prepareTransaction(db, connection, inTransaction ? (db as object) : connection);
      return (await connection.query(sql, params)).rows as Row[];
    }
    if (OUTSIDE_TRANSACTION.test(sql)) return (await connection.query(sql, params)).rows as Row[];
    await connection.query('BEGIN');
    try {
      await connection.query(SETTINGS_SQL(true), [String(settingsOf(db).statementTimeoutMs)]);
      const rows = (await connection.query(sql, params)).rows as Row[];
      await connection.query('COMMIT');
      return rows;
    } catch (error) {
      await connection.query('ROLLBACK').catch(() => undefined);
      throw error;
    }
  } finally {
    await client.releaseConnection(connection);
  }
}

/**
 * A pooled connection of its own, for statements that must share one session (a cursor, a transaction). Where
 * sessions are kept it comes with the tool's settings made; behind transaction pooling they are the caller's
 * to make once its transaction is open (prepareTransaction). `bare`: nothing set (probes of the connection).
 */
export async function acquireSession(db: Queryable, options: { bare?: boolean } = {}): Promise<{ connection: pg.PoolClient; release: () => Promise<void> }> {
  const client = clientOf(db);
  const connection = await client.acquireConnection();
  try {
    if (!options.bare && settingsOf(db).pooling !== 'transaction' && !(db as { isTransaction?: boolean }).isTransaction) await prepareKeptSession(db, connection);
  } catch (error) {
    await client.releaseConnection(connection);
    throw error;
  }
  return { connection, release: () => client.releaseConnection(connection) };
}

function clientOf(db: Queryable): KnexClient {
  return (db as unknown as { client: KnexClient }).client;
}

function settingsOf(db: Queryable): SessionSettings {
  // A transaction's client shares its Db's config object (knex's makeTxClient), and with it these settings.
  return (clientOf(db).config.overskillSession ??= { statementTimeoutMs: 0, pooling: 'unknown' });
}

interface KnexClient {
  acquireConnection(): Promise<pg.PoolClient>;
  releaseConnection(connection: pg.PoolClient): Promise<void>;
  config: { overskillSession?: SessionSettings };
}

/** Connects once and turns driver errors into one sentence naming what to fix. */
export async function checkConnection(db: Db, url: string): Promise<void> {
  try {
    // Bare: nothing is set on a session before it is known whether the session is ours to set.
    const session = await acquireSession(db, { bare: true });
    try {
      await session.connection.query('SELECT 1');
    } finally {
      await session.release();
    }
  } catch (error) {
    throw describeConnectionError(error, url);
  }
}

export function describeConnectionError(error: unknown, url: string): ConfigError {
  const err = error as { code?: string; message?: string };
  const where = describeDatabaseUrl(url);
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  const host = parsed ? `${parsed.hostname}:${parsed.port || 5432}` : 'the database host';
  const user = parsed ? decodeURIComponent(parsed.username) || 'the default user' : 'the user';
  const database = parsed ? decodeURIComponent(parsed.pathname.slice(1)) : 'the database';
  switch (err.code) {
    case 'ECONNREFUSED':
      return new ConfigError(`Cannot reach the database at ${host}: connection refused. Is PostgreSQL running, and is DATABASE_URL right?`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new ConfigError(`Cannot resolve the database host in DATABASE_URL (${host}).`);
    case 'ETIMEDOUT':
      return new ConfigError(`Timed out connecting to the database at ${host}.`);
    case '28P01':
    case '28000':
      return new ConfigError(`The database refused the login for user "${user}": check the user and password in DATABASE_URL.`);
    case '3D000':
      return new ConfigError(`Database "${database}" does not exist on ${host}.`);
    default:
      if (/timeout/i.test(err.message ?? '')) return new ConfigError(`Timed out connecting to the database at ${host}.`);
      return new ConfigError(`Cannot connect to the database ${where}: ${redact(err.message ?? String(error))}`);
  }
}
