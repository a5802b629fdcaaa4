/** What rollback restored, per row: the hash of the content it put back (see stranded-writes.ts). */
export const RESTORES_TABLE = 'overskill_storage_restores';

/** How long a restore is remembered: far longer than any request holds a loaded row. */
export const RESTORE_MEMORY_DAYS = 7;

export const RESTORES_DDL = `CREATE TABLE IF NOT EXISTS ${RESTORES_TABLE} (
  table_name text NOT NULL,
  row_id bigint NOT NULL,
  content_hash text NOT NULL,
  restored_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (table_name, row_id)
)`;
