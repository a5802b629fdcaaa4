/**
 * The plan's read path through the 50 ms proxy: `export` of one app of 85 files of about 5 KB, every file
 * R2-only (the CLI, start-up included, and the library call alone), and readAppFile p50/p99 over 200 reads
 * without and with the bounded cache.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { query, type Db } from '../../src/db.ts';
import { median, percentile } from '../figures.ts';
import { latencyProxy, type BenchStore } from '../fixture.ts';
import { UNCONDITIONAL } from '../options.ts';
import { cliAsync, cliEnvFor } from '../processes.ts';

export async function measureReadPath(db: Db, url: string, s3: BenchStore): Promise<Record<string, unknown>> {
  const proxy = await latencyProxy(s3);
  const config = { endpoint: proxy.endpoint, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, bucket: s3.bucket, region: 'auto', allowInsecureEndpoint: false };
  const [{ ObjectStore }, { exportApp }, { readAppFile, ContentCache }] = await Promise.all([import('../../src/object-store.ts'), import('../../src/ops/export.ts'), import('../../src/ops/read-content.ts')]);
  const store = new ObjectStore(config, { maxSockets: 128 });
  const context = { db, store, databaseUrl: url };
  const [{ app }] = await query<{ app: string }>(db, "INSERT INTO apps (name) VALUES ('read path') RETURNING id AS app");
  await query(db, `INSERT INTO app_files (app_id, path, content) SELECT $1::bigint, 'src/c' || i || '.tsx', left(repeat(md5(i::text || 'read'), 200), 4500 + (i * 37) % 1100) FROM generate_series(1, 85) i`, [app]);
  const env = cliEnvFor(url, s3);
  await cliAsync(['migrate', '--yes', ...UNCONDITIONAL, '--app', app, '--tables', 'files'], env, { quiet: true });
  await cliAsync(['finalize', '--yes', '--app', app, '--tables', 'files', '--hybrid-threshold', '512', '--r2-threshold', '1KiB'], env, { quiet: true });
  const [{ r2 }] = await query<{ r2: number }>(db, "SELECT count(*)::int AS r2 FROM app_files WHERE app_id = $1 AND storage_location = 'r2' AND content IS NULL", [app]);
  const rtt = 50;
  const out = mkdtempSync(join(tmpdir(), 'overskill-export-'));
  const library: number[] = [];
  for (let round = 0; round < 5; round++) {
    const started = performance.now();
    const result = await exportApp(context, { appId: app, directory: join(out, `lib${round}`) });
    library.push(performance.now() - started);
    if (result.written.length !== 85 || result.failed.length) throw new Error(`export wrote ${result.written.length} files, ${result.failed.length} failed`);
  }
  // The same export straight to the S3 server: what the server itself takes (on loopback it is the ceiling).
  const directStore = new ObjectStore({ ...config, endpoint: s3.endpoint }, { maxSockets: 128 });
  const direct: number[] = [];
  for (let round = 0; round < 5; round++) {
    const started = performance.now();
    await exportApp({ ...context, store: directStore }, { appId: app, directory: join(out, `direct${round}`) });
    direct.push(performance.now() - started);
  }
  directStore.destroy();
  // One GET through the proxy: the round trip everything is measured against.
  const [{ key }] = await query<{ key: string }>(db, 'SELECT r2_object_key AS key FROM app_files WHERE app_id = $1 LIMIT 1', [app]);
  const single: number[] = [];
  for (let round = 0; round < 20; round++) {
    const started = performance.now();
    await store.readAndHash(key);
    single.push(performance.now() - started);
  }
  const cli: number[] = [];
  for (let round = 0; round < 3; round++) {
    const started = performance.now();
    const done = await cliAsync(['export', app, '--out', join(out, `cli${round}`)], { ...env, R2_ENDPOINT: proxy.endpoint });
    cli.push(performance.now() - started);
    if (done.status !== 0) throw new Error(`export exited ${done.status}`);
  }
  // `cat` of one R2-only file, start-up included: what an operator waits for one file.
  const catMs: number[] = [];
  for (let round = 0; round < 5; round++) {
    const started = performance.now();
    const done = await cliAsync(['cat', app, 'src/c1.tsx'], { ...env, R2_ENDPOINT: proxy.endpoint }, { quiet: true });
    catMs.push(performance.now() - started);
    if (done.status !== 0) throw new Error(`cat exited ${done.status}`);
  }
  rmSync(out, { recursive: true, force: true });
  console.log(`cat of one R2-only file through 50 ms, start-up included: median ${median(catMs).toFixed(0)} ms of 5 (${catMs.map((ms) => ms.toFixed(0)).join(', ')}) (target: well under a second)`);
  console.log(
    `export of one app, 85 files of ~5 KB, all R2-only (${r2}), through 50 ms: library ${median(library).toFixed(0)} ms = ${(median(library) / rtt).toFixed(1)} x 50 ms, ${(median(library) / median(single)).toFixed(1)} x one GET through the proxy (${median(single).toFixed(0)} ms) (target < 6 round trips); the same straight to the local S3 server ${median(direct).toFixed(0)} ms; the CLI, start-up included, ${median(cli).toFixed(0)} ms`,
  );
  const paths = (await query<{ path: string }>(db, 'SELECT path FROM app_files WHERE app_id = $1 ORDER BY id', [app])).map((row) => row.path);
  const reads = async (cache?: InstanceType<typeof ContentCache>) => {
    const times: number[] = [];
    for (let i = 0; i < 200; i++) {
      const started = performance.now();
      await readAppFile(context, app, paths[i % paths.length], { cache });
      times.push(performance.now() - started);
    }
    return { p50: percentile(times, 50), p99: percentile(times, 99) };
  };
  const uncached = await reads();
  const cache = new ContentCache(8 * 1024 * 1024);
  const cached = await reads(cache);
  console.log(
    `readAppFile through 50 ms, 200 reads: p50 ${uncached.p50.toFixed(1)} ms, p99 ${uncached.p99.toFixed(1)} ms without a cache; with an 8 MiB cache p50 ${cached.p50.toFixed(2)} ms, p99 ${cached.p99.toFixed(1)} ms (${cache.hits} hits, ${cache.misses} misses; plan: < 100 ms)`,
  );
  store.destroy();
  await proxy.stop();
  return { cat: { medianMs: median(catMs), runsMs: catMs }, export: { files: 85, libraryMs: median(library), roundTrips: median(library) / rtt, singleGetMs: median(single), directMs: median(direct), cliMs: median(cli) }, readAppFile: { uncached, cached, hits: cache.hits, misses: cache.misses } };
}
