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

export function createDb(options: DbOptions): Db {
  return knexFactory({
    client: 'pg',
    connection: {
      connectionString: options.url,
      application_name: options.applicationName ?? 'overskill-storage',
      connectionTimeoutMillis: 10_000,
    },
    pool: { min: 0, max: Math.max(1, options.poolSize ?? 4), acquireTimeoutMillis: 60_000, afterCreate: prepareSession(options.statementTimeoutMs) },
    acquireConnectionTimeout: 60_000,
  });
}

/**
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
 */
function prepareSession(statementTimeoutMs?: number) {
  const sql = `SELECT set_config('statement_timeout', $1, false), set_config('lock_timeout', '0', false), set_config('idle_in_transaction_session_timeout', '0', false),
                      CASE WHEN current_setting('server_encoding') = 'SQL_ASCII' THEN set_config('client_encoding', 'SQL_ASCII', false) END`;
  return (connection: pg.PoolClient, done: (error: Error | null, connection: pg.PoolClient) => void): void => {
    connection.query(sql, [String(Math.max(0, Math.floor(statementTimeoutMs ?? 0)))]).then(
      () => done(null, connection),
      (error: Error) => done(error, connection),
    );
  };
}

/**
 * Runs one native, parameterised statement ($1, $2, ...) on a pooled connection (or the transaction's own).
 * Native placeholders keep array parameters whole, which `unnest($1::bigint[], ...)` batching relies on.
 */
export async function query<Row = Record<string, unknown>>(db: Queryable, sql: string, params: unknown[] = []): Promise<Row[]> {
  const client = (db as unknown as { client: KnexClient }).client;
  const connection = await client.acquireConnection();
  try {
    const result = await connection.query(sql, params);
    return result.rows as Row[];
  } finally {
    await client.releaseConnection(connection);
  }
}

/** A pooled connection of its own, for statements that must share one session (a cursor, a transaction). */
export async function acquireSession(db: Queryable): Promise<{ connection: pg.PoolClient; release: () => Promise<void> }> {
  const client = (db as unknown as { client: KnexClient }).client;
  const connection = await client.acquireConnection();
  return { connection, release: () => client.releaseConnection(connection) };
}

interface KnexClient {
  acquireConnection(): Promise<pg.PoolClient>;
  releaseConnection(connection: pg.PoolClient): Promise<void>;
}

/** Connects once and turns driver errors into one sentence naming what to fix. */
export async function checkConnection(db: Db, url: string): Promise<void> {
  try {
    await query(db, 'SELECT 1');
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
