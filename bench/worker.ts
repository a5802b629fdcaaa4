/**
 * Runs one measured operation in its own process (so peak RSS is the operation's own) and prints one JSON
 * line: seconds, objects, bytes, S3 requests by command, SQL statements, and peak RSS.
 */
import pg from 'pg';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import http from 'node:http';
import { createDb, query } from '../src/db.ts';
import { ObjectStore } from '../src/object-store.ts';
import { migrate } from '../src/ops/migrate.ts';
import { verify } from '../src/ops/verify.ts';
import { buildReport } from '../src/ops/report.ts';
import { cleanup } from '../src/ops/cleanup.ts';
import { defaultRunOptions } from '../src/ops/options.ts';
import { FILES } from '../src/tables.ts';
import { DEFAULT_POLICY } from '../src/placement.ts';
import { DEFAULT_PRICES } from '../src/cost.ts';
import { Limiter } from '../src/pool.ts';
import { sha256Hex, md5Hex, hexToBase64 } from '../src/hashing.ts';
import { fileKey } from '../src/keys.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const [operation, databaseUrl, endpoint, bucket, concurrencyArg, extra, appIdsArg] = process.argv.slice(2);
const appIds = appIdsArg ? appIdsArg.split(',') : undefined;
const concurrency = Number(concurrencyArg ?? 16);

let statements = 0;
const originalQuery = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  statements++;
  return (originalQuery as (...a: unknown[]) => unknown).apply(this, args);
} as typeof pg.Client.prototype.query;

const requests: Record<string, number> = {};
const count = (command: string) => (requests[command] = (requests[command] ?? 0) + 1);
const storeConfig = { endpoint, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', bucket, region: 'auto', allowInsecureEndpoint: false };

async function main() {
  const db = createDb({ url: databaseUrl, poolSize: Math.min(concurrency, 8) + 2 });
  const store = new ObjectStore(storeConfig, { onRequest: count, maxSockets: concurrency * 2, requestTimeoutMs: 120_000 });
  const context = { db, store, databaseUrl };
  const started = process.hrtime.bigint();
  const startedAt = Date.now();
  let objects = 0;
  let bytes = 0;
  let batches = 0;
  let extraResult: unknown;
  if (operation === 'migrate') {
    const limit = extra ? Number(extra) : undefined;
    const batchSize = process.env.BENCH_BATCH_SIZE ? Number(process.env.BENCH_BATCH_SIZE) : undefined;
    const result = await migrate(context, defaultRunOptions({ tables: [FILES], concurrency, limit, filter: { appIds }, ...(batchSize ? { batchSize } : {}) }), { stage: () => undefined });
    objects = result.uploaded;
    bytes = result.uploadedBytes;
    batches = Math.ceil(result.tables[0].attempted / 200);
    extraResult = { problems: result.problems };
  } else if (operation === 'raw') {
    // A bare PutObject loop: same bodies, same concurrency, no database, no verification.
    const rows = await query<{ app_id: string; path: string; content: string }>(db, `SELECT app_id, path, content FROM app_files WHERE octet_length(content) >= 1024 ORDER BY id ${extra ? `LIMIT ${Number(extra)}` : ''}`);
    const client = new S3Client({
      endpoint,
      region: 'auto',
      forcePathStyle: true,
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      requestHandler: new NodeHttpHandler({ httpAgent: new http.Agent({ keepAlive: true, maxSockets: concurrency * 2 }) }),
    });
    client.middlewareStack.add((next, ctx) => async (args) => { count(String(ctx.commandName)); return next(args); }, { step: 'finalizeRequest', name: 'count' });
    // A fresh prefix per run: every PUT creates a new object, as migrate's do (overwrites are cheaper).
    const prefix = `raw-${process.pid}-${Date.now()}`;
    const bodies = rows.map((row) => {
      const key = fileKey(row.app_id, row.path);
      return { key: `${prefix}/${key.ok ? key.key : row.path}`, body: Buffer.from(row.content) };
    });
    rows.length = 0;
    const t0 = process.hrtime.bigint();
    const limiter = new Limiter(concurrency);
    await Promise.all(bodies.map((item) => limiter.run(() => client.send(new PutObjectCommand({ Bucket: bucket, Key: item.key, Body: item.body, ContentLength: item.body.length })))));
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    objects = bodies.length;
    bytes = bodies.reduce((sum, item) => sum + item.body.length, 0);
    client.destroy();
    print({ seconds, objects, bytes, batches, statements, requests, maxRssMb: process.resourceUsage().maxRSS / 1024, cpuSeconds: cpuSeconds() });
    await db.destroy();
    store.destroy();
    return;
  } else if (operation === 'naive') {
    // The plan's MigrateFilesToR2Job: one file at a time: read it, upload it, update its row.
    const limit = Number(extra ?? 300);
    const ids = await query<{ id: string }>(db, `SELECT id FROM app_files WHERE storage_location = 'database' AND octet_length(content) >= 1024 ORDER BY id LIMIT $1`, [limit]);
    for (const { id } of ids) {
      const [row] = await query<{ app_id: string; path: string; content: string }>(db, 'SELECT app_id, path, content FROM app_files WHERE id = $1', [id]);
      const body = Buffer.from(row.content);
      const key = (fileKey(row.app_id, row.path) as { key: string }).key;
      const hash = sha256Hex(body);
      await store.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length, ContentMD5: hexToBase64(md5Hex(body)), Metadata: { sha256: hash } }));
      await query(db, "UPDATE app_files SET storage_location = 'hybrid', r2_object_key = $2, content_hash = $3 WHERE id = $1", [id, key, hash]);
      objects++;
      bytes += body.length;
    }
  } else if (operation === 'verify' || operation === 'verify-deep') {
    const result = await verify(context, { tables: [FILES], filter: {}, deep: operation === 'verify-deep', orphans: false, concurrency });
    objects = Object.values(result.checked).reduce((a, b) => a + b, 0);
    extraResult = { problems: result.problemCount };
  } else if (operation === 'verify-head') {
    // The naive alternative to listings: one HEAD per row.
    const rows = await query<{ key: string }>(db, `SELECT r2_object_key AS key FROM app_files WHERE r2_object_key IS NOT NULL`);
    const limiter = new Limiter(concurrency);
    await Promise.all(rows.map((row) => limiter.run(() => store.head(row.key))));
    objects = rows.length;
  } else if (operation === 'cleanup') {
    const result = await cleanup(context, { appIds: extra ? extra.split(',') : undefined, graceMs: 0, apply: true, concurrency });
    objects = result.deleted;
    extraResult = { deleteWindow: result.deleteWindow, refused: result.refused.length, failed: result.failed.length };
  } else if (operation === 'report') {
    await buildReport(db, [FILES], DEFAULT_POLICY, DEFAULT_PRICES, {});
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  print({ seconds, objects, bytes, batches, statements, requests, maxRssMb: process.resourceUsage().maxRSS / 1024, cpuSeconds: cpuSeconds(), startedAt, endedAt: Date.now(), extra: extraResult });
  store.destroy();
  await db.destroy();
}

function cpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

function print(result: unknown) {
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((error) => {
  process.stderr.write(String(error?.stack ?? error) + '\n');
  process.exit(1);
});
