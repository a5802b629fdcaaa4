import { randomBytes } from 'node:crypto';
import { createDb, query, type Db } from '../../src/db.ts';
import { OVERSKILL_TABLES_SQL } from '../../src/local/overskill-schema.ts';
import { startLocalS3, type LocalS3Server } from '../../src/local/s3-server.ts';
import { ObjectStore } from '../../src/object-store.ts';
import { applySchema } from '../../src/ops/schema.ts';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/local/embedded-postgres.ts';
import type { StorageContext } from '../../src/context.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** True on a machine without PostgreSQL: each test file then gets its own embedded PGlite (see global-setup.ts). */
export const ON_PGLITE = process.env.OVERSKILL_TEST_PGLITE === '1';

/** The server tests run against: TEST_DATABASE_URL, else the local PostgreSQL. */
export const ADMIN_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export function databaseUrlFor(name: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

export interface TestEnv {
  databaseUrl: string;
  db: Db;
  s3: LocalS3Server;
  store: ObjectStore;
  context: StorageContext;
  /** Environment for running the CLI against this database and bucket. */
  cliEnv: NodeJS.ProcessEnv;
  requests: Map<string, number>;
  close(): Promise<void>;
}

/**
 * A fresh database (OverSkill's tables, optionally the tool's schema) and a fresh S3 server, both dropped
 * by close(). Each test file gets its own, so files run in parallel without sharing state. `encoding` makes a
 * database of another encoding (SQL_ASCII, LATIN1) on PostgreSQL; PGlite's is always UTF8.
 */
export async function createTestEnv(options: { schema?: boolean; s3?: LocalS3Server; encoding?: string } = {}): Promise<TestEnv> {
  const name = `oss_test_${randomBytes(6).toString('hex')}`;
  let embedded: EmbeddedPostgres | undefined;
  let databaseUrl: string;
  if (ON_PGLITE) {
    embedded = await startEmbeddedPostgres();
    databaseUrl = embedded.url;
  } else {
    const admin = createDb({ url: ADMIN_URL, poolSize: 2 });
    await query(admin, `CREATE DATABASE ${name}${options.encoding ? ` ENCODING '${options.encoding}' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'` : ''}`);
    await admin.destroy();
    databaseUrl = databaseUrlFor(name);
  }
  // PGlite interleaves the protocol messages of concurrent connections: one connection there.
  const db = createDb({ url: databaseUrl, poolSize: ON_PGLITE ? 1 : 6 });
  await db.raw(OVERSKILL_TABLES_SQL);
  if (options.schema !== false) await applySchema(db);
  const s3 = options.s3 ?? (await startLocalS3());
  const requests = new Map<string, number>();
  const store = new ObjectStore(
    { endpoint: s3.endpoint, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, bucket: s3.bucket, region: 'auto', allowInsecureEndpoint: false },
    { onRequest: (command) => requests.set(command, (requests.get(command) ?? 0) + 1), requestTimeoutMs: 10_000, maxAttempts: 3 },
  );
  const cliEnv: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    DATABASE_URL: databaseUrl,
    R2_ENDPOINT: s3.endpoint,
    R2_ACCESS_KEY_ID: s3.accessKeyId,
    R2_SECRET_ACCESS_KEY: s3.secretAccessKey,
    R2_BUCKET: s3.bucket,
    NO_COLOR: '1',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    // No app writes meanwhile in most tests: the closing repair pass need not wait (the races set their own).
    OVERSKILL_STORAGE_SETTLE: '0s',
    ...(ON_PGLITE ? { OVERSKILL_STORAGE_DB_CONNECTIONS: '1' } : {}),
  };
  return {
    databaseUrl,
    db,
    s3,
    store,
    context: { db, store, databaseUrl },
    cliEnv,
    requests,
    close: async () => {
      store.destroy();
      await db.destroy();
      if (!options.s3) await s3.stop();
      if (embedded) {
        await embedded.stop();
        return;
      }
      const cleanup = createDb({ url: ADMIN_URL, poolSize: 2 });
      await query(cleanup, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await cleanup.destroy();
    },
  };
}
