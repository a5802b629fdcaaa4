import type { StorageContext } from '../context.ts';
import { query } from '../db.ts';
import { describeItem, inspectSchema } from './schema.ts';
import { existingTables, inspectDatabaseAccess, tablesNotOwned } from '../sql/database-access.ts';
import { connectionProperty, databaseProperties, sessionProperty } from './database-gate.ts';
import { detectSessionPooling } from '../sql/session-pooling.ts';
import { connectionLimits } from '../sql/connection-limits.ts';
import { DEFAULT_WALK } from './options.ts';
import { deleteGuardOf, probeStore, type StoreCheck, type StoreProperty } from '../store/preflight.ts';

export interface DoctorResult {
  ok: boolean;
  checks: StoreProperty[];
  store?: StoreCheck;
  /** What guards this tool's deletes and which keys it treats as one object, on this store. */
  guards?: StoreGuards;
}

export interface StoreGuards {
  /**
   * 'if-match': DeleteObject's If-Match (S3); 'last-modified': x-amz-if-match-last-modified-time (R2's conditional
   * delete); 'tombstone': a conditional 0-byte write, then the delete (store/deletes.ts).
   */
  deletes: 'if-match' | 'last-modified' | 'tombstone';
  /** Whether the tombstone's gap is covered by the store refusing a second write to a key within a second. */
  deleteGapCovered: boolean;
  /** The store treats Unicode-equivalent keys as one object (R2); the tool keeps rows' keys apart under that rule either way. */
  keysNormalized: boolean;
  storageClass?: string;
}

/** Which guards hold on a store, from its probes. */
export function storeGuards(check: StoreCheck): StoreGuards {
  const holds = (id: string) => check.properties.some((p) => p.id === id && p.holds);
  return {
    deletes: deleteGuardOf(check),
    deleteGapCovered: holds('sameKeyWriteLimited'),
    keysNormalized: holds('keysNormalized'),
    storageClass: check.storageClass,
  };
}

/** The database half of `doctor`: reachable with these credentials, and the schema this tool needs is there. */
export async function checkDatabase(context: Pick<StorageContext, 'db' | 'databaseUrl'>, options: DoctorOptions = {}): Promise<StoreProperty[]> {
  const [{ version }] = await query<{ version: string }>(context.db, "SELECT current_setting('server_version') AS version");
  const schema = await inspectSchema(context.db);
  const access = await inspectDatabaseAccess(context.db);
  // Only what is missing must be added, and only its tables' ownership matters.
  const altered = await existingTables(context.db, [...new Set(schema.missing.filter((item) => item.kind !== 'table').map((item) => item.table))]);
  const notOwned = await tablesNotOwned(context.db, altered);
  const missing = [...schema.missingTables.map((table) => `table ${table}`), ...schema.missing.map(describeItem)];
  return [
    { id: 'database', property: 'the database answers with these credentials', required: true, holds: true, seen: `PostgreSQL ${version}` },
    {
      id: 'schema',
      property: "OverSkill's tables and this tool's columns, indexes and tables are there",
      required: true,
      holds: missing.length === 0,
      seen: missing.length ? `missing: ${missing.slice(0, 4).join('; ')}${missing.length > 4 ? `; and ${missing.length - 4} more` : ''} (\`schema --apply\` adds them)` : 'complete',
      risk: 'every command that moves rows refuses until `schema --apply` has run',
    },
    ...(altered.length
      ? [
          {
            id: 'schemaOwner',
            property: 'the role owns the tables `schema --apply` must alter',
            required: true,
            holds: notOwned.length === 0,
            seen: notOwned.length ? notOwned.map((t) => `${t.table} is owned by "${t.owner}"`).join('; ') : `role "${access.user}" owns ${altered.join(', ')}`,
            risk: '`schema --apply` refuses; run it as the owner',
          },
        ]
      : []),
    ...databaseProperties(access),
    // The pool a run opens at the default concurrency (context.ts: min(concurrency, 8) + 2).
    connectionProperty(await connectionLimits(context.db), Math.min(DEFAULT_WALK.concurrency, 8) + 2),
    sessionProperty(await detectSessionPooling(context.db, context.databaseUrl), options.directUrlGiven ?? false),
  ];
}

/**
 * Everything this tool relies on, one property per line: the database and its schema, the bucket with these
 * credentials, and the store's semantics (src/store/preflight.ts). `ok` when every required one holds.
 */
export interface DoctorOptions {
  /** A direct database URL is configured for what needs a session of its own (behind a transaction pooler). */
  directUrlGiven?: boolean;
}

export async function doctor(context: StorageContext, connected: StoreProperty[], options: DoctorOptions = {}): Promise<DoctorResult> {
  const checks = [...connected, ...(await checkDatabase(context, options))];
  const store = await probeStore(context.store);
  checks.push(...store.properties);
  return { ok: checks.every((check) => !check.required || check.holds), checks, store, guards: storeGuards(store) };
}
