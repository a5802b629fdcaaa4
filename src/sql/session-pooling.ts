import pg from 'pg';
import { acquireSession, type Db } from '../db.ts';

/**
 * Whether each connection of the tool's keeps one database session. A pooler in transaction mode (PgBouncer's
 * `pool_mode = transaction`, the mode of many managed poolers) hands every transaction whatever server
 * connection is free, so session state does not survive between two statements: session advisory locks, SET,
 * and the like (PgBouncer's "Features" page lists what each pool mode supports). The tool needs none of them for
 * its runs (workers hold leases in a table, settings are made per transaction: src/db.ts), but what needs a
 * session of its own (pg_repack, CREATE INDEX CONCURRENTLY with its settings) takes a direct URL there.
 *
 * Found by asking, not guessed from a port: connection A asks for its backend, connection B opens a
 * transaction (and so holds a server connection), and A asks again. On a kept session A's backend is the same
 * both times; behind transaction pooling B is handed A's idle backend, and A moves to another.
 */
export interface SessionPooling {
  /** 'unknown': the probe's second connection was refused (a connection limit): settings are then made per transaction, which is right either way. */
  kind: 'transaction' | 'kept' | 'unknown';
  /** The port the URL names, and the port the server itself listens on (null over a Unix socket). */
  urlPort: number;
  serverPort: number | null;
  seen: string;
}

export async function detectSessionPooling(db: Db, url: string): Promise<SessionPooling> {
  const urlPort = Number(new URL(url).port || 5432);
  const a = await acquireSession(db, { bare: true });
  const b = new pg.Client({ connectionString: url, application_name: 'overskill-storage pooling probe' });
  try {
    const first = (await a.connection.query('SELECT pg_backend_pid() AS pid, inet_server_port() AS port, version() AS version')).rows[0] as { pid: number; port: number | null; version: string };
    // The embedded server (the demo's) is one backend serving its connections one at a time: nothing pools it,
    // and a second connection's open transaction would wait on the first.
    if (/PGlite/.test(first.version)) return { kind: 'kept', urlPort, serverPort: null, seen: 'embedded (PGlite): one session, nothing pooled' };
    try {
      await b.connect();
    } catch (error) {
      return { kind: 'unknown', urlPort, serverPort: first.port === null ? null : Number(first.port), seen: `cannot tell: a second connection for the probe was refused (${(error as Error).message})` };
    }
    await b.query('BEGIN');
    const held = (await b.query('SELECT pg_backend_pid() AS pid')).rows[0] as { pid: number };
    const again = (await a.connection.query('SELECT pg_backend_pid() AS pid')).rows[0] as { pid: number };
    await b.query('COMMIT');
    const serverPort = first.port === null ? null : Number(first.port);
    // Only A moving proves it (an embedded server, PGlite, answers every connection from one backend).
    if (again.pid !== first.pid) {
      return {
        kind: 'transaction',
        urlPort,
        serverPort,
        seen: `transaction pooling: two statements of one connection ran on backends ${first.pid} and ${again.pid}${held.pid === first.pid ? `, and another connection's transaction on ${held.pid}` : ''} (a pooler at port ${urlPort}, e.g. PgBouncer with pool_mode = transaction)`,
      };
    }
    const between = serverPort !== null && serverPort !== urlPort;
    return {
      kind: 'kept',
      urlPort,
      serverPort,
      seen: between ? `sessions kept, through something at port ${urlPort} (the server listens on ${serverPort}): a pooler in session mode, or a proxy` : 'direct: each connection keeps its session',
    };
  } finally {
    // Never connected where the probe stopped early: end() then has nothing to close.
    await b.end().catch(() => undefined);
    await a.release();
  }
}

/** "a pooler that does not keep sessions (…)", for sentences that refuse a step needing a session of its own. */
export function describeTransactionPooling(pooling: SessionPooling): string {
  return `${pooling.seen.replace(/^transaction pooling: /, 'a pooler that does not keep sessions (')})`;
}
