import type { Db } from '../db.ts';
import { assertDbLoadProbe } from '../db-load.ts';
import type { CommonRunOptions } from './options.ts';
import { assertSchemaReady } from './schema.ts';
import { assertScopeSelects } from './scope.ts';

/**
 * What every row-walking command (migrate, finalize, rollback) checks before its run is recorded, in dry runs
 * too, so CI catches it before a real run: the database-load probe gives a number, the schema is in place,
 * and the scope names something. The walk it returns is not checked again when it runs (withWorker checks
 * only a walk no one prepared: a library caller's).
 */
export async function prepareWalk<Options extends CommonRunOptions>(db: Db, options: Options): Promise<Options> {
  await assertDbLoadProbe(db, options.dbLoad);
  await assertSchemaReady(db);
  await assertScopeSelects(db, options.filter);
  return { ...options, prepared: true };
}
