import type { Queryable } from '../db.ts';
import { UsageError } from '../errors.ts';
import type { RowFilter } from '../sql/filters.ts';
import { appsInRollout, rowsInShard, unknownAppIds } from '../sql/scope.ts';

/** "1 app", "50 apps". */
const apps = (n: number) => `${n.toLocaleString('en-US')} app${n === 1 ? '' : 's'}`;

/**
 * The rows a filter takes, in an operator's words: "all 50 apps", "apps 7, 9", "rollout 10% = 5 of 50 apps",
 * "shard 0/4 (rows with id mod 4 = 0)". Said by every plan before it asks.
 */
export async function describeScope(db: Queryable, filter: RowFilter, extra: { limit?: number } = {}): Promise<string> {
  const parts: string[] = [];
  const named = filter.appIds?.length ? `${filter.appIds.length === 1 ? 'app' : 'apps'} ${filter.appIds.join(', ')}` : undefined;
  if (filter.rolloutPercent !== undefined && filter.rolloutPercent < 100) {
    const { apps: total, selected } = await appsInRollout(db, filter.rolloutPercent, filter.appIds);
    parts.push(`rollout ${filter.rolloutPercent}% = ${selected.toLocaleString('en-US')} of ${apps(total)}${named ? ` (of ${named})` : ''}`);
  } else if (named) {
    parts.push(named);
  } else {
    const { apps: total } = await appsInRollout(db, 100);
    parts.push(`all ${apps(total)}`);
  }
  if (filter.shard && filter.shard.count > 1) parts.push(`shard ${filter.shard.index}/${filter.shard.count} (rows with id mod ${filter.shard.count} = ${filter.shard.index})`);
  if (extra.limit !== undefined) parts.push(`at most ${extra.limit.toLocaleString('en-US')} rows`);
  return parts.join(' · ');
}

/**
 * A scope that selects nothing that exists is the operator's mistake, not an empty success: an `--app` id that
 * is no app, a `--rollout` that takes none of the apps there are, a `--shard` that takes none of the rows.
 * Refused (exit 2) before anything is planned, so "nothing to do" and "no problems found" are said only of a
 * scope that names something.
 */
export async function assertScopeSelects(db: Queryable, filter: RowFilter): Promise<void> {
  if (filter.appIds?.length) {
    const unknown = await unknownAppIds(db, filter.appIds);
    if (unknown.length) {
      throw new UsageError(`${unknown.length === 1 ? `There is no app ${unknown[0]}` : `There are no apps ${unknown.join(', ')}`} in this database (--app): nothing was done. Check the id${unknown.length === 1 ? '' : 's'}.`);
    }
  }
  if (filter.rolloutPercent !== undefined && filter.rolloutPercent < 100) {
    const { apps: total, selected } = await appsInRollout(db, filter.rolloutPercent, filter.appIds);
    if (total > 0 && selected === 0) {
      throw new UsageError(`--rollout ${filter.rolloutPercent}% takes none of the ${apps(total)} in scope (each app's place is a stable hash of its id): nothing was done. Use a larger percentage.`);
    }
  }
  if (filter.shard && filter.shard.count > 1) {
    const { rows, selected } = await rowsInShard(db, filter.shard.index, filter.shard.count);
    if (rows > 0 && selected === 0) {
      throw new UsageError(`--shard ${filter.shard.index}/${filter.shard.count} takes none of the ${rows} rows (shards split rows by id): nothing was done. Use fewer shards.`);
    }
  }
}
