import { query, type Queryable } from '../db.ts';

/**
 * How many more sessions this role may open to this database now: the role's CONNECTION LIMIT, the database's,
 * and max_connections less the slots reserved for superusers (PostgreSQL's CREATE ROLE, CREATE DATABASE and
 * "Connections and Authentication"), each against the sessions open now. A superuser is held to none but
 * max_connections itself; -1 means no limit.
 */
export interface ConnectionLimits {
  role: { name: string; limit: number; open: number; superuser: boolean };
  database: { name: string; limit: number; open: number };
  server: { maxConnections: number; reserved: number; open: number };
  /** Sessions this role may still open here (the smallest headroom of the three); Infinity where none binds. */
  headroom: number;
  /** Which limit is the smallest: 'role', 'database' or 'server'. */
  binding: 'role' | 'database' | 'server';
}

export async function connectionLimits(db: Queryable): Promise<ConnectionLimits> {
  const [row] = await query<{
    role: string; role_limit: number; superuser: boolean; role_open: number;
    database: string; database_limit: number; database_open: number;
    max_connections: number; reserved: number; server_open: number;
  }>(
    db,
    `SELECT r.rolname AS role, r.rolconnlimit AS role_limit, r.rolsuper AS superuser,
            (SELECT count(*)::int FROM pg_stat_activity a WHERE a.usename = r.rolname AND a.backend_type = 'client backend') AS role_open,
            d.datname AS database, d.datconnlimit AS database_limit,
            (SELECT count(*)::int FROM pg_stat_activity a WHERE a.datname = d.datname AND a.backend_type = 'client backend') AS database_open,
            current_setting('max_connections')::int AS max_connections,
            current_setting('superuser_reserved_connections')::int AS reserved,
            (SELECT count(*)::int FROM pg_stat_activity a WHERE a.backend_type = 'client backend') AS server_open
       FROM pg_roles r, pg_database d
      WHERE r.rolname = current_user AND d.datname = current_database()`,
  );
  const room = (limit: number, open: number) => (limit < 0 ? Number.POSITIVE_INFINITY : Math.max(0, limit - open));
  const headrooms = {
    role: row.superuser ? Number.POSITIVE_INFINITY : room(row.role_limit, row.role_open),
    database: row.superuser ? Number.POSITIVE_INFINITY : room(row.database_limit, row.database_open),
    server: room(row.max_connections - (row.superuser ? 0 : row.reserved), row.server_open),
  };
  const binding = (Object.keys(headrooms) as (keyof typeof headrooms)[]).reduce((a, b) => (headrooms[b] < headrooms[a] ? b : a));
  return {
    role: { name: row.role, limit: row.role_limit, open: row.role_open, superuser: row.superuser },
    database: { name: row.database, limit: row.database_limit, open: row.database_open },
    server: { maxConnections: row.max_connections, reserved: row.reserved, open: row.server_open },
    headroom: headrooms[binding],
    binding,
  };
}

/** The limit that binds, in words. */
export function describeBindingLimit(limits: ConnectionLimits): string {
  if (limits.binding === 'role') return `role "${limits.role.name}" may open ${limits.role.limit} (CONNECTION LIMIT), ${limits.role.open} open now`;
  if (limits.binding === 'database') return `database "${limits.database.name}" takes ${limits.database.limit} (CONNECTION LIMIT), ${limits.database.open} open now`;
  return `the server takes ${limits.server.maxConnections} (max_connections${limits.role.superuser ? '' : `, ${limits.server.reserved} of them reserved for superusers`}), ${limits.server.open} open now`;
}
