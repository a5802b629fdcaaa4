import type { StorageContext } from '../context.ts';
import { query } from '../db.ts';
import { describeItem, inspectSchema } from './schema.ts';
import { probeStore, type StoreCheck, type StoreProperty } from '../store/preflight.ts';

export interface DoctorResult {
  ok: boolean;
  checks: StoreProperty[];
  store?: StoreCheck;
}

/** The database half of `doctor`: reachable with these credentials, and the schema this tool needs is there. */
export async function checkDatabase(context: Pick<StorageContext, 'db'>): Promise<StoreProperty[]> {
  const [{ version }] = await query<{ version: string }>(context.db, "SELECT current_setting('server_version') AS version");
  const schema = await inspectSchema(context.db);
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
  ];
}

/**
 * Everything this tool relies on, one property per line: the database and its schema, the bucket with these
 * credentials, and the store's semantics (src/store/preflight.ts). `ok` when every required one holds.
 */
export async function doctor(context: StorageContext, connected: StoreProperty[]): Promise<DoctorResult> {
  const checks = [...connected, ...(await checkDatabase(context))];
  const store = await probeStore(context.store);
  checks.push(...store.properties);
  return { ok: checks.every((check) => !check.required || check.holds), checks, store };
}
