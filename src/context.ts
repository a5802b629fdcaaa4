import type { Db } from './db.ts';
import type { ObjectStore } from './object-store.ts';

/** What an operation needs from the outside world: the database, the bucket, and the URL for a worker session. */
export interface StorageContext {
  db: Db;
  store: ObjectStore;
  databaseUrl: string;
}
