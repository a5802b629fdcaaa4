/**
 * What every measurement runs against: a scratch database with OverSkill's tables and the tool's schema, and
 * the bench's store (two s3rver processes on one directory) with proxies in front of it; and the ways to put
 * both back to a quiet, comparable state between runs.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createDb, query, type Db } from '../src/db.ts';
import { OVERSKILL_TABLES_SQL } from '../src/local/overskill-schema.ts';
import { startLocalS3, type LocalS3Server } from '../src/local/s3-server.ts';
import { applySchema } from '../src/ops/schema.ts';
import { S3Proxy } from '../test/support/http-proxy.ts';
import { ADMIN } from './options.ts';

export async function scratchDatabase(): Promise<{ url: string; db: Db; drop: () => Promise<void> }> {
  const name = `oss_bench_${randomBytes(4).toString('hex')}`;
  const admin = createDb({ url: ADMIN });
  await query(admin, `CREATE DATABASE ${name}`);
  const url = new URL(ADMIN);
  url.pathname = `/${name}`;
  const db = createDb({ url: url.toString(), poolSize: 4 });
  await db.raw(OVERSKILL_TABLES_SQL);
  await applySchema(db);
  return {
    url: url.toString(),
    db,
    drop: async () => {
      await db.destroy();
      await query(admin, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.destroy();
    },
  };
}

/**
 * The bench's store: two s3rver processes on one directory, so one bucket, each request going to either.
 * One s3rver is one thread; at c=64 through the proxy it was the ceiling for both clients (its own time per
 * request, queueing included, about half the proxy's 50 ms), and the comparison measured it instead of the
 * clients. R2 is not one thread. Direct (unproxied) measurements use the first process only.
 * The objects live in memory (tmpfs) where the machine has one: R2's disks are not the database's, and here
 * the two would share one disk, so a run would be timed partly by the writeback of the server's files
 * competing with PostgreSQL's commits.
 */
export interface BenchStore extends LocalS3Server {
  /** The other processes' ports, for the proxies to spread requests over. */
  peerPorts: number[];
  /** Every process, for the server's share of the CPU. */
  pids: number[];
}

export async function startBenchStore(bucket?: string): Promise<BenchStore> {
  const directory = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/overskill-bench-s3-') : undefined;
  const first = await startLocalS3({ bucket, bare: true, directory });
  // A peer that fails to start must not leave the first process (and its tmpfs directory) behind.
  const peer = await startLocalS3({ bucket: first.bucket, bare: true, directory: first.directory }).catch(async (error) => {
    await first.stop();
    rmSync(first.directory, { recursive: true, force: true });
    throw error;
  });
  return {
    ...first,
    peerPorts: [peer.port],
    pids: [first.pid, peer.pid],
    stop: async () => {
      await peer.stop();
      await first.stop();
      rmSync(first.directory, { recursive: true, force: true });
    },
  };
}

/** A proxy in front of every process of the store. */
export function proxyTo(store: BenchStore): S3Proxy {
  const proxy = new S3Proxy(store.port, store.bucket);
  proxy.alsoTo = store.peerPorts;
  return proxy;
}

/** A proxy in front of the store that adds `ms` to every request, started: an R2-like round trip. */
export async function latencyProxy(store: BenchStore, ms = 50): Promise<S3Proxy> {
  const proxy = await proxyTo(store).start();
  proxy.latencyMs = ms;
  return proxy;
}

/** Let PostgreSQL finish the last step's background work (dead rows, statistics, a checkpoint). */
export async function settle(db: Db): Promise<void> {
  await query(db, 'VACUUM ANALYZE app_files');
  await query(db, 'CHECKPOINT');
}

/** settle, and the page cache written back (the S3 server's objects are files). */
export async function quiet(db: Db): Promise<void> {
  await settle(db);
  spawnSync('sync');
}

let generation = 0;

/**
 * Puts every row back to 'database' under a new path, so the next run uploads to fresh keys: the objects of
 * the last run stay where they are, and migrate would only adopt them (or, for the naive job's objects, which
 * carry no writer marker, refuse to replace them) instead of uploading.
 */
export async function resetMigration(db: Db): Promise<void> {
  generation++;
  await query(
    db,
    `UPDATE app_files SET storage_location = 'database', r2_object_key = NULL, path = 'gen' || $1::int || '/' || regexp_replace(path, '^gen[0-9]+/', '')`,
    [generation],
  );
}
