import { query, type Queryable } from '../db.ts';
import type { StoredTable } from '../tables.ts';
import { addedTo } from './schema.ts';

/** One index of a table, with its size and whose it is. */
export interface IndexFootprint {
  name: string;
  bytes: number;
  /** 'plan': an index the plan's migration adds; 'tool': one this tool adds; 'app': the app's own. */
  origin: 'plan' | 'tool' | 'app';
  /** Whether it is partial (covers only the rows its WHERE names). */
  partial: boolean;
  unique: boolean;
  /** The columns it is on (an expression index: the columns its expression reads). */
  columns: string[];
}

/** What a content table holds besides its contents: its indexes, the migration's columns, and how many rows have an object. */
export interface TableFootprint {
  table: string;
  rows: number;
  /** Rows that name an object (hybrid and r2). */
  keyedRows: number;
  indexes: IndexFootprint[];
  /** What the columns the migration adds take, over every row (pg_column_size of each value). */
  newColumnBytes: number;
  /** Every content the table still holds, as PostgreSQL keeps it (pg_column_size). */
  storedContentBytes: number;
  /** What a keyed row's key and hash take (pg_column_size, averaged over the rows that have one; 0 with none). */
  keyBytesPerRow: number;
  hashBytesPerRow: number;
  /** Keyless rows that have a content_hash already (the app's model sets it on save). */
  keylessHashedRows: number;
}

/** B-tree leaf pages are filled to 90% (PostgreSQL's default fillfactor for indexes). */
const INDEX_FILL = 0.9;
/** An index entry's own cost: its 8-byte IndexTuple header and its 4-byte line pointer, the value MAXALIGNed. */
const INDEX_ENTRY_OVERHEAD = 16;

/**
 * What a keyless row's entry takes in a full index on its key: a NULL entry is an 8-byte IndexTuple header and
 * its null bitmap, MAXALIGNed to 16, plus its 4-byte line pointer. A non-unique index deduplicates equal keys,
 * NULLs among them, into posting lists (PostgreSQL's "B-Tree Indexes", deduplication): there a row costs only
 * its 6-byte heap pointer.
 */
const NULL_ENTRY = { unique: 20, deduplicated: 6 };

/** What the table's full indexes on its key column give back once they cover only the rows with an object. */
export function keylessEntryBytes(footprint: TableFootprint, table: StoredTable): { bytes: number; names: string[] } {
  const full = footprint.indexes.filter((index) => !index.partial && index.origin !== 'app' && index.columns.includes(table.keyColumn));
  const keyless = footprint.rows - footprint.keyedRows;
  const bytes = full.reduce((sum, index) => sum + (keyless * (index.unique ? NULL_ENTRY.unique : NULL_ENTRY.deduplicated)) / INDEX_FILL, 0);
  return { bytes: Math.round(Math.min(bytes, full.reduce((sum, index) => sum + index.bytes, 0))), names: full.map((index) => index.name) };
}

/**
 * What a keyless row takes more once it names an object: its key and hash (where it has none yet), and their
 * entries in the table's indexes on them (a partial key index gains the entry; a full one has the NULL's already).
 */
export function bytesOnceKeyed(footprint: TableFootprint, table: StoredTable, hashed: boolean): number {
  const entry = (bytes: number) => (bytes + INDEX_ENTRY_OVERHEAD) / INDEX_FILL;
  const on = (column: string) => footprint.indexes.filter((index) => index.columns.includes(column)).length;
  const key = footprint.keyBytesPerRow + on(table.keyColumn) * entry(footprint.keyBytesPerRow);
  const hash = hashed ? 0 : footprint.hashBytesPerRow + on(table.hashColumn) * entry(footprint.hashBytesPerRow);
  return key + hash;
}

/** One scan of the table (the column sizes), and the catalog for its indexes. */
export async function tableFootprint(db: Queryable, table: StoredTable): Promise<TableFootprint> {
  const added = addedTo(table.table);
  const columns = added.columns;
  const columnBytes = columns.length ? columns.map((column) => `coalesce(pg_column_size(t.${column}), 0)`).join(' + ') : '0';
  const [row] = await query<{ rows: number; keyed: number; column_bytes: number; stored: number; key_bytes: number; hash_bytes: number; keyless_hashed: number }>(
    db,
    `SELECT count(*)::float8 AS rows, count(t.${table.keyColumn})::float8 AS keyed,
            coalesce(sum(${columnBytes}), 0)::float8 AS column_bytes,
            coalesce(sum(pg_column_size(t.${table.contentColumn})), 0)::float8 AS stored,
            coalesce(avg(pg_column_size(t.${table.keyColumn})), 0)::float8 AS key_bytes,
            coalesce(avg(pg_column_size(t.${table.hashColumn})), 0)::float8 AS hash_bytes,
            count(*) FILTER (WHERE t.${table.keyColumn} IS NULL AND t.${table.hashColumn} IS NOT NULL)::float8 AS keyless_hashed
       FROM ${table.table} t`,
  );
  const indexes = await query<{ name: string; bytes: number; partial: boolean; unique: boolean; columns: string[] }>(
    db,
    `SELECT c.relname AS name, pg_relation_size(c.oid)::float8 AS bytes, i.indpred IS NOT NULL AS partial, i.indisunique AS unique,
            array(SELECT a.attname::text FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                   WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refobjsubid > 0
                  UNION SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)) AS columns
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE i.indrelid = to_regclass($1)
      ORDER BY bytes DESC, name`,
    [table.table],
  );
  return {
    table: table.name,
    rows: row.rows,
    keyedRows: row.keyed,
    indexes: indexes.map((index) => ({ ...index, origin: added.indexes.find((item) => item.name === index.name)?.origin ?? 'app' })),
    newColumnBytes: row.column_bytes,
    storedContentBytes: row.stored,
    keyBytesPerRow: row.key_bytes,
    hashBytesPerRow: row.hash_bytes,
    keylessHashedRows: row.keyless_hashed,
  };
}
