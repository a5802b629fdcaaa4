import { query, type Queryable } from '../db.ts';
import type { StoredTable } from '../tables.ts';

export interface TableDiskSize {
  table: string;
  /** The table's own pages (main fork, free space map, visibility map). */
  heapBytes: number;
  /** Its TOAST table and TOAST index, where large contents live, compressed. */
  toastBytes: number;
  indexBytes: number;
  totalBytes: number;
}

/** What each table takes on disk now (pg_total_relation_size and its parts); catalog reads only. */
export async function tableDiskSizes(db: Queryable, tables: StoredTable[]): Promise<TableDiskSize[]> {
  return query<TableDiskSize>(
    db,
    `SELECT u.name AS table,
            pg_table_size(c.oid)::float8 - coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)::float8 AS "heapBytes",
            coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)::float8 AS "toastBytes",
            pg_indexes_size(c.oid)::float8 AS "indexBytes",
            pg_total_relation_size(c.oid)::float8 AS "totalBytes"
       FROM unnest($1::text[], $2::text[]) AS u(name, relation)
       JOIN pg_class c ON c.oid = to_regclass(u.relation)
      ORDER BY array_position($1::text[], u.name)`,
    [tables.map((t) => t.name), tables.map((t) => t.table)],
  );
}
