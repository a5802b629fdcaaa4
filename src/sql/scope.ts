import { query, type Queryable } from '../db.ts';
import { sqlRolloutBucket } from './filters.ts';
import { TABLES, TABLE_NAMES } from '../tables.ts';

/** Of `appIds`, those that are no app of this database. */
export async function unknownAppIds(db: Queryable, appIds: string[]): Promise<string[]> {
  if (!appIds.length) return [];
  const rows = await query<{ id: string }>(db, 'SELECT id::text AS id FROM apps WHERE id = ANY($1::bigint[])', [appIds]);
  const known = new Set(rows.map((row) => row.id));
  return appIds.filter((id) => !known.has(id));
}

/** How many apps there are, and how many of them a rollout percentage (within `appIds`, when given) takes. */
export async function appsInRollout(db: Queryable, percent: number, appIds?: string[]): Promise<{ apps: number; selected: number }> {
  const [row] = await query<{ apps: number; selected: number }>(
    db,
    `SELECT count(*)::int AS apps, count(*) FILTER (WHERE ${sqlRolloutBucket('a.id')} < $1::numeric)::int AS selected
       FROM apps a WHERE $2::bigint[] IS NULL OR a.id = ANY($2::bigint[])`,
    [percent, appIds?.length ? appIds : null],
  );
  return row;
}

/** Rows of the three content tables, and how many of them shard `index` of `count` takes (by row id). */
export async function rowsInShard(db: Queryable, index: number, count: number): Promise<{ rows: number; selected: number }> {
  const parts = TABLE_NAMES.map((name) => `SELECT count(*)::int AS rows, count(*) FILTER (WHERE mod(id, $2::bigint) = $1::bigint)::int AS selected FROM ${TABLES[name].table}`);
  const [row] = await query<{ rows: number; selected: number }>(db, `SELECT sum(rows)::int AS rows, sum(selected)::int AS selected FROM (${parts.join(' UNION ALL ')}) s`, [index, count]);
  return row;
}
