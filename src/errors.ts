/**
 * Typed errors of the core. The CLI maps each class to one exit code (commands/support/exit.ts);
 * the core never exits or prints.
 */
export class StorageError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad flags, missing or malformed configuration, unreachable services: the operator must fix something. */
export class ConfigError extends StorageError {}

/**
 * The store lacks a property this tool's safety rests on (conditional writes, src/store/preflight.ts): the
 * command refused before writing anything.
 */
export class StoreUnsafeError extends ConfigError {}

/** A flag value or argument that cannot be used. */
export class UsageError extends StorageError {}

/** A write was asked for without a TTY and without --yes, or the operator declined. */
export class WriteRefusedError extends StorageError {}

/** The operator answered no at a prompt: nothing changed, and nothing failed (exit 0, said plainly). */
export class DeclinedError extends StorageError {}

/** The database schema lacks what the command needs. */
export class SchemaMissingError extends StorageError {}

/** The operator pressed Ctrl-C and the run stopped after its in-flight work. */
export class InterruptedError extends StorageError {}

/** The data itself is wrong (corrupt snapshot, ambiguous version, ...); nothing was changed. */
export class DataError extends StorageError {}

/** An object-store request failed after its retries. */
export class ObjectStoreError extends StorageError {
  constructor(message: string, readonly key?: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Stored bytes do not hash to what the database expects. */
export class IntegrityError extends StorageError {
  constructor(message: string, readonly key?: string) {
    super(message);
  }
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

/**
 * The object at a key is not ours to replace or delete (the app wrote it), or changed under a conditional
 * write. The row is left as it is, with its database content; it is a refusal, not a failure of the store.
 */
export class ObjectConflictError extends StorageError {
  constructor(message: string, readonly key?: string) {
    super(message);
  }
}

/**
 * Whether an error means the connection itself is gone (a restart, a failover, a terminated backend, a
 * network cut), not that one statement failed: SQLSTATE class 08 and 57P01-57P03 (PostgreSQL's "Error
 * Codes"), and the driver's words for a socket that closed.
 */
export function connectionLost(error: unknown): boolean {
  const e = error as { code?: string; message?: string } | undefined;
  if (!e) return false;
  if (typeof e.code === 'string' && (/^08/.test(e.code) || /^57P0[123]$/.test(e.code) || ['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT'].includes(e.code))) return true;
  return /Connection terminated|Connection ended unexpectedly|terminating connection|server closed the connection|not queryable|the database system is (shutting down|starting up)/i.test(e.message ?? '');
}
