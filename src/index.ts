/**
 * The library entry (`import … from 'overskill-storage'`): the read path the app's own Node code can use
 * (the TypeScript twin of the plan's `AppFile#content` with R2 fallback), and what it needs to connect.
 */
export { createDb, type Db } from './db.ts';
export { ObjectStore, type ObjectStoreOptions } from './object-store.ts';
export { readAppFile, readStoredContent, streamStoredContent, contentRefs, ContentCache } from './ops/read-content.ts';
export type { StorageContext } from './context.ts';
export type { ObjectStoreConfig } from './config.ts';
export { StorageError, ConfigError, DataError, IntegrityError, ObjectStoreError, ObjectConflictError } from './errors.ts';
