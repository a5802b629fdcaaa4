import type { Db } from './db.ts';
import type { ObjectStore } from './object-store.ts';

/** What a command that reads or changes the database alone needs (dry runs, report, schema, status): no bucket is open. */
export interface DatabaseContext {
  db: Db;
  /** For a worker session of its own (leases), and what needs a connection outside the pool. */
  databaseUrl: string;
  /** Open where the command also reads the bucket (report --list-bucket, --probe-reads). */
  store?: ObjectStore;
}

/** What an operation that reads or writes objects needs: the database and the bucket, checked. */
export interface StorageContext extends DatabaseContext {
  store: ObjectStore;
}

/** The bucket of a context that a command opened with one: a context without one here is the command's mistake. */
export function withStore(context: DatabaseContext): StorageContext {
  if (!context.store) throw new Error('this step needs the bucket, and the command opened none');
  return context as StorageContext;
}
