/**
 * npm run bench -- [--files 20000] [--out bench-results.json] [--latency-files 2000] [--c64-files 6000] [--naive-files 200]
 *                  [--scale-rows 200000] [--report-rows 0] [--skip-latency] [--profile]
 *                  [--only read-path|pause|large-rows|rclone|latency|app-side]
 *
 * Measures, side by side in one run (absolute times drift on shared machines; the ratios are the point):
 *   raw vs migrate throughput, the same through a 50 ms proxy at concurrency 8/32/64 (c=64: three pairs,
 *   the median pair), the plan's naive
 *   one-row-at-a-time job, verify (listings vs deep vs one HEAD per row), report, and peak RSS.
 * The store is two s3rver processes on one directory (startBenchStore); the proxies spread requests over both.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { summarizeProfile } from './profile-summary.ts';
import { describeAppSide, measureAppSide, type AppSideResult } from './app-side.ts';
import { randomBytes } from 'node:crypto';
import { createDb, query, type Db } from '../src/db.ts';
import { OVERSKILL_TABLES_SQL } from '../src/local/overskill-schema.ts';
import { startLocalS3, type LocalS3Server } from '../src/local/s3-server.ts';

/**
 * The bench measures the tool against bare s3rver. On loopback the server's CPU is the ceiling, and the local
 * server's R2 emulation (a second parse of every request, and a HEAD behind each conditional write) would be
 * measured instead of the tool; R2 evaluates its conditions on its own side. The CLI's writing commands then
 * need the override, and still pay for the store check they run first.
 */
const UNCONDITIONAL = ['--allow-unconditional-store'];
import { applySchema } from '../src/ops/schema.ts';
import { S3Proxy } from '../test/support/http-proxy.ts';
import { seedFiles } from './seed.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// No app writes during the bench: a migrate's closing repair pass need not wait for saves in flight (--settle),
// so the figures measure the upload path, as they did before that pass existed.
process.env.OVERSKILL_STORAGE_SETTLE ??= '0s';

const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? Number(args[index + 1]) : fallback;
};
const files = option('files', 20_000);
const latencyFiles = option('latency-files', 2_000);
/** Objects per run in the c=64 comparison: a window long enough that a run's own start and end are a small part of it. */
const c64Files = option('c64-files', 6_000);
/** Raw/migrate pairs at c=64, the first of each pair alternating: the figure is the median pair. */
const C64_PAIRS = 3;
const naiveFiles = option('naive-files', 200);
const scaleRows = option('scale-rows', 200_000);
const reportRows = option('report-rows', 0);
const outIndex = args.indexOf('--out');
const outFile = outIndex >= 0 ? args[outIndex + 1] : 'bench-results.json';
const skipLatency = args.includes('--skip-latency');
const profile = args.includes('--profile');
const ADMIN = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

interface Measure {
  seconds: number;
  startedAt?: number;
  endedAt?: number;
  cpuSeconds?: number;
  objects: number;
  bytes: number;
  batches: number;
  statements: number;
  requests: Record<string, number>;
  maxRssMb: number;
  extra?: unknown;
}

function runWorker(operation: string, url: string, endpoint: string, bucket: string, concurrency: number, extra?: string | number, nodeFlags: string[] = [], appIds?: string): Promise<Measure> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeFlags, '--import', 'tsx', 'bench/worker.ts', operation, url, endpoint, bucket, String(concurrency), extra === undefined ? '' : String(extra), appIds ?? ''], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop()!)) : reject(new Error(`${operation} exited ${code}`))));
  });
}

const RSS_AT_EXIT = `data:text/javascript,process.on('exit',()=>{const u=process.resourceUsage();process.stderr.write('\\nmaxRSS '+u.maxRSS+' cpu '+((u.userCPUTime+u.systemCPUTime)/1e6)+'\\n')})`;

/** Runs a command line with Node (the built CLI, or `-e 0`), returning its wall time and its own peak RSS. */
function timeNode(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ seconds: number; maxRssMb: number; cpuSeconds: number; code: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, ['--import', RSS_AT_EXIT, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('exit', (code) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const usage = /maxRSS ([0-9]+) cpu ([0-9.]+)/.exec(stderr);
      resolve({ seconds, maxRssMb: usage ? Number(usage[1]) / 1024 : Number.NaN, cpuSeconds: usage ? Number(usage[2]) : Number.NaN, code: code ?? 1, stdout });
    });
  });
}

/**
 * rclone copying the same contents from a directory to the same S3 server, against the CLI's migrate, at the
 * same concurrency: client CPU per object for both (rclone's from bash's `times`, the CLI's from its own
 * resource usage). Needs `rclone` on PATH (Debian's package); configured through RCLONE_CONFIG_* only.
 */
/** Peak RSS of the built CLI migrating the table's rows (1-20 MB each), three times from 'database'. */
async function measureLargeRows(db: Db, cliEnv: NodeJS.ProcessEnv): Promise<{ seconds: number; maxRssMb: number }[]> {
  const runs: { seconds: number; maxRssMb: number }[] = [];
  for (let round = 0; round < 3; round++) {
    await resetMigration(db);
    runs.push(await timeNode(['bin/overskill-storage.js', 'migrate', '--yes', ...UNCONDITIONAL, '--json', '--concurrency', '16', '--tables', 'files'], cliEnv));
  }
  const [{ rows, mb }] = await query<{ rows: number; mb: number }>(db, 'SELECT count(*)::int AS rows, (sum(octet_length(content)) / 1e6)::float8 AS mb FROM app_files');
  console.log(
    `CLI migrate (c=16, ${rows} rows of 1-20 MB, ${mb.toFixed(0)} MB): peak RSS ${runs.map((m) => m.maxRssMb.toFixed(0)).join(' / ')} MB in ${runs.map((m) => m.seconds.toFixed(1)).join(' / ')} s (target <= 150 MB)`,
  );
  return runs;
}

/** Runs the built CLI without blocking this process (whose event loop serves the latency proxy). */
function cliAsync(args: string[], env: NodeJS.ProcessEnv, options: { quiet?: boolean } = {}): Promise<{ status: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/overskill-storage.js', ...args], { env, stdio: ['ignore', 'pipe', options.quiet ? 'ignore' : 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ status: code ?? 1, stdout }));
  });
}

/**
 * The plan's read path through the 50 ms proxy: `export` of one app of 85 files of about 5 KB, every file
 * R2-only (the CLI, start-up included, and the library call alone), and readAppFile p50/p99 over 200 reads
 * without and with the bounded cache.
 */
async function measureReadPath(db: Db, url: string, s3: BenchStore): Promise<Record<string, unknown>> {
  const proxy = await proxyTo(s3).start();
  proxy.latencyMs = 50;
  const config = { endpoint: proxy.endpoint, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, bucket: s3.bucket, region: 'auto', allowInsecureEndpoint: false };
  const [{ ObjectStore }, { exportApp }, { readAppFile, ContentCache }] = await Promise.all([import('../src/object-store.ts'), import('../src/ops/export.ts'), import('../src/ops/read-content.ts')]);
  const store = new ObjectStore(config, { maxSockets: 128 });
  const context = { db, store, databaseUrl: url };
  const [{ app }] = await query<{ app: string }>(db, "INSERT INTO apps (name) VALUES ('read path') RETURNING id AS app");
  await query(db, `INSERT INTO app_files (app_id, path, content) SELECT $1::bigint, 'src/c' || i || '.tsx', left(repeat(md5(i::text || 'read'), 200), 4500 + (i * 37) % 1100) FROM generate_series(1, 85) i`, [app]);
  const env = { ...process.env, DATABASE_URL: url, R2_ENDPOINT: s3.endpoint, R2_ACCESS_KEY_ID: s3.accessKeyId, R2_SECRET_ACCESS_KEY: s3.secretAccessKey, R2_BUCKET: s3.bucket, NO_COLOR: '1' };
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
  rmSync(out, { recursive: true, force: true });
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
  console.log(
    `export of one app, 85 files of ~5 KB, all R2-only (${r2}), through 50 ms: library ${median(library).toFixed(0)} ms = ${(median(library) / rtt).toFixed(1)} x 50 ms, ${(median(library) / median(single)).toFixed(1)} x one GET through the proxy (${median(single).toFixed(0)} ms) (target < 6 round trips); the same straight to the local S3 server ${median(direct).toFixed(0)} ms; the CLI, start-up included, ${median(cli).toFixed(0)} ms`,
  );
  const paths = (await query<{ path: string }>(db, 'SELECT path FROM app_files WHERE app_id = $1 ORDER BY id', [app])).map((row) => row.path);
  const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((p / 100) * values.length))];
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
  return { export: { files: 85, libraryMs: median(library), roundTrips: median(library) / rtt, singleGetMs: median(single), directMs: median(direct), cliMs: median(cli) }, readAppFile: { uncached, cached, hits: cache.hits, misses: cache.misses } };
}

/**
 * Four CLI processes of one migration through the 50 ms proxy; `pause --all` from a fifth, timed until the
 * run is paused (every worker finished its batches in flight and released its claims), then resumed; three
 * rounds, then the run is left to finish.
 */
async function measurePauseLatency(db: Db, url: string, s3: BenchStore): Promise<Record<string, unknown>> {
  await resetMigration(db);
  const proxy = await proxyTo(s3).start();
  proxy.latencyMs = 50;
  const env = { ...process.env, DATABASE_URL: url, R2_ENDPOINT: proxy.endpoint, R2_ACCESS_KEY_ID: s3.accessKeyId, R2_SECRET_ACCESS_KEY: s3.secretAccessKey, R2_BUCKET: s3.bucket, NO_COLOR: '1' };
  const control = { ...env, R2_ENDPOINT: s3.endpoint };
  const workers = [0, 1, 2, 3].map(() => {
    const child = spawn(process.execPath, ['bin/overskill-storage.js', 'migrate', '--yes', ...UNCONDITIONAL, '--tables', 'files', '--concurrency', '16', '--batch-size', '50'], { env, stdio: 'ignore' });
    return new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? 1)));
  });
  const live = async () =>
    (await query<{ n: number }>(db, "SELECT count(*)::int AS n FROM overskill_storage_run_workers w JOIN overskill_storage_runs r ON r.id = w.run_id WHERE r.state = 'running' AND w.ended_at IS NULL"))[0].n;
  for (let waited = 0; (await live()) < 4 && waited < 30_000; waited += 100) await new Promise((resolve) => setTimeout(resolve, 100));
  const latencies: number[] = [];
  for (let round = 0; round < 3; round++) {
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const started = Date.now();
    const paused = await cliAsync(['pause', '--all', '--yes', '--json'], control);
    const took = Date.now() - started;
    const settled = paused.status === 0 ? JSON.parse(paused.stdout).runs[0]?.settled : undefined;
    const [{ claims }] = await query<{ claims: number }>(db, 'SELECT count(*)::int AS claims FROM overskill_storage_claims');
    if (settled !== 'paused') break;
    latencies.push(took);
    console.log(`pause --all of 4 workers (c=16, batches of 50, 50 ms latency): paused in ${took} ms (command start-up included), ${claims} claims held while paused`);
    await cliAsync(['resume', '--all', '--yes'], control);
  }
  const codes = await Promise.all(workers);
  await proxy.stop();
  const [{ done }] = await query<{ done: number }>(db, "SELECT count(*)::int AS done FROM app_files WHERE storage_location = 'hybrid'");
  console.log(`  then resumed each time; the 4 workers exited ${codes.join(', ')} with ${done} rows hybrid`);
  return { latenciesMs: latencies, exitCodes: codes };
}

async function compareWithRclone(db: Db, databaseUrl: string, s3: BenchStore, concurrency: number): Promise<Record<string, unknown> | undefined> {
  if (spawnSync('rclone', ['version']).status !== 0) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'overskill-rclone-'));
  try {
    await resetMigration(db);
    const rows = await query<{ app_id: string; path: string; content: string }>(db, 'SELECT app_id, path, content FROM app_files WHERE octet_length(content) >= 1024');
    for (const row of rows) {
      const file = join(dir, 'apps', row.app_id, 'files', row.path);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, row.content);
    }
    const env: NodeJS.ProcessEnv = { ...process.env, RCLONE_CONFIG_BENCH_TYPE: 's3', RCLONE_CONFIG_BENCH_PROVIDER: 'Other', RCLONE_CONFIG_BENCH_ENDPOINT: s3.endpoint, RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: s3.accessKeyId, RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: s3.secretAccessKey, RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true' };
    delete env.AWS_CA_BUNDLE;
    const started = Date.now();
    const rclone = spawnSync('bash', ['-c', `rclone copy "$0" "bench:${s3.bucket}/rclone-${Date.now()}" --transfers ${concurrency} --checkers ${concurrency} 2>/dev/null && times`, dir], { env, encoding: 'utf8' });
    const rcloneSeconds = (Date.now() - started) / 1000;
    // `times` prints the shell's own times, then its children's: "0m8.250s 0m4.900s"
    const children = rclone.stdout.trim().split('\n').pop()!.split(/\s+/).map((t) => { const m = /([0-9]+)m([0-9.]+)s/.exec(t)!; return Number(m[1]) * 60 + Number(m[2]); });
    const rcloneCpu = children[0] + children[1];
    const cliEnv = { ...process.env, DATABASE_URL: databaseUrl, R2_ENDPOINT: s3.endpoint, R2_ACCESS_KEY_ID: s3.accessKeyId, R2_SECRET_ACCESS_KEY: s3.secretAccessKey, R2_BUCKET: s3.bucket, NO_COLOR: '1' };
    const migrate = await timeNode(['bin/overskill-storage.js', 'migrate', '--yes', ...UNCONDITIONAL, '--json', '--concurrency', String(concurrency), '--tables', 'files'], cliEnv);
    const objects = rows.length;
    return {
      objects,
      rclone: { seconds: rcloneSeconds, cpuSeconds: rcloneCpu, cpuMsPerObject: (rcloneCpu / objects) * 1000, objectsPerSecond: objects / rcloneSeconds },
      migrate: { seconds: migrate.seconds, cpuSeconds: migrate.cpuSeconds, cpuMsPerObject: (migrate.cpuSeconds / objects) * 1000, objectsPerSecond: objects / migrate.seconds, maxRssMb: migrate.maxRssMb },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Loads the page in headless chromium (network blocked): ms from navigation until every chart is drawn. */
async function renderInBrowser(file: string): Promise<number | undefined> {
  if (!existsSync('/usr/bin/chromium')) return undefined;
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  try {
    const page = await browser.newPage();
    await page.route('**/*', (route) => (route.request().url().startsWith('file:') ? route.continue() : route.abort()));
    const started = Date.now();
    await page.goto(`file://${file}`);
    await page.waitForSelector('body[data-rendered="true"]');
    return Date.now() - started;
  } finally {
    await browser.close();
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/** Start-up of the built CLI against a bare `node -e 0`, interleaved, median of `runs` each. */
async function measureStartup(runs = 10): Promise<Record<string, { seconds: number; maxRssMb: number; ratio: number }>> {
  const cases: Record<string, string[]> = { 'node -e 0': ['-e', '0'], '--version': ['bin/overskill-storage.js', '--version'], '--help': ['bin/overskill-storage.js', '--help'], 'migrate --help': ['bin/overskill-storage.js', 'migrate', '--help'] };
  const samples: Record<string, { seconds: number[]; rss: number[] }> = {};
  for (const name of Object.keys(cases)) samples[name] = { seconds: [], rss: [] };
  // one warm-up round fills the compile cache (where Node has one) and the page cache
  for (const args of Object.values(cases)) await timeNode(args);
  for (let run = 0; run < runs; run++) {
    for (const [name, args] of Object.entries(cases)) {
      const sample = await timeNode(args);
      samples[name].seconds.push(sample.seconds);
      samples[name].rss.push(sample.maxRssMb);
    }
  }
  const base = median(samples['node -e 0'].seconds);
  const result: Record<string, { seconds: number; maxRssMb: number; ratio: number }> = {};
  for (const [name, sample] of Object.entries(samples)) result[name] = { seconds: median(sample.seconds), maxRssMb: median(sample.rss), ratio: median(sample.seconds) / base };
  return result;
}

/** Runs migrate in the worker under `node --cpu-prof` and summarizes where its process time went, by package. */
async function profileMigrate(label: string, url: string, endpoint: string, bucket: string, concurrency: number, limit?: number): Promise<{ group: string; percent: number }[] | undefined> {
  const dir = mkdtempSync(join(tmpdir(), 'overskill-prof-'));
  try {
    await runWorker('migrate', url, endpoint, bucket, concurrency, limit, ['--cpu-prof', `--cpu-prof-dir=${dir}`]);
    const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
    if (!file) return undefined;
    const summary = summarizeProfile(join(dir, file));
    console.log(`profile of migrate at ${label} (share of the worker process time):`);
    for (const row of summary.slice(0, 10)) console.log(`  ${row.percent.toFixed(1).padStart(5)}%  ${row.group}`);
    return summary;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function scratchDatabase(): Promise<{ url: string; db: Db; drop: () => Promise<void> }> {
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

/** CPU seconds a process has used so far (user + system), from /proc. */
function processCpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

type CpuShares = { s3: number; proxy: number; tool: number; wall: number };
/** Through a proxy: the S3 server's own time per request (from the proxy forwarding it to the server's answer). */
type ServerTime = { p50: number; p90: number };

/** Where the CPU went during one measured worker run: the S3 server, this process (the proxy), the tool. */
async function withCpu(s3Pids: number[], task: () => Promise<Measure>, proxy?: S3Proxy): Promise<Measure & { cpu: CpuShares; serverMs?: ServerTime }> {
  const serverCpu = () => s3Pids.reduce((sum, pid) => sum + processCpuSeconds(pid), 0);
  const s3Before = serverCpu();
  const ownBefore = ownCpuSeconds();
  const started = Date.now();
  const mark = proxy?.serverMs.length ?? 0;
  const measure = await task();
  const wall = (Date.now() - started) / 1000;
  const times = proxy ? proxy.serverMs.slice(mark).sort((a, b) => a - b) : [];
  const at = (q: number) => Math.round(times[Math.floor(q * (times.length - 1))] * 10) / 10;
  const serverMs = times.length ? { p50: at(0.5), p90: at(0.9) } : undefined;
  return { ...measure, cpu: { s3: serverCpu() - s3Before, proxy: ownCpuSeconds() - ownBefore, tool: measure.cpuSeconds ?? Number.NaN, wall }, ...(serverMs ? { serverMs } : {}) };
}

type Measured = Measure & { cpu: CpuShares; serverMs?: ServerTime };
interface Pair {
  raw: Measured;
  migrate: Measured;
  ratio: number;
  first: 'raw' | 'migrate';
}

/**
 * The bare SDK loop against migrate through `proxy`, in `count` pairs on fresh keys, alternating which of the
 * two goes first (the first of a pair meets the server as the last run left it). One pair of short runs
 * swings with whatever else the two cores do; the median of several, with every pair kept, does not.
 * Returns every pair and the median one.
 */
async function pairedThroughProxy(db: Db, url: string, s3: BenchStore, proxy: S3Proxy, concurrency: number, objects: number, count: number): Promise<{ pairs: Pair[]; median: Pair }> {
  const pairs: Pair[] = [];
  for (let index = 0; index < count; index++) {
    await resetMigration(db);
    const first: 'raw' | 'migrate' = index % 2 === 0 ? 'raw' : 'migrate';
    // Each run starts on a quiet machine: the reset's (or the last run's) dead rows vacuumed, WAL checkpointed,
    // and the server's files written back, so neither of the pair pays for what the other left behind.
    const measure = async (operation: 'raw' | 'migrate') => {
      await quiet(db);
      return withCpu(s3.pids, () => runWorker(operation, url, proxy.endpoint, s3.bucket, concurrency, objects), proxy);
    };
    const a = await measure(first);
    const b = await measure(first === 'raw' ? 'migrate' : 'raw');
    const [raw, migrate] = first === 'raw' ? [a, b] : [b, a];
    const ratio = rate(migrate) / rate(raw);
    pairs.push({ raw, migrate, ratio, first });
    console.log(`  pair ${index + 1} (${first} first): raw ${rate(raw).toFixed(0)} obj/s, migrate ${rate(migrate).toFixed(0)} obj/s → ${ratio.toFixed(2)}x`);
    console.log(cpuLine(raw));
    console.log(cpuLine(migrate));
  }
  return { pairs, median: [...pairs].sort((x, y) => x.ratio - y.ratio)[Math.floor(pairs.length / 2)] };
}

const cpuLine = (m: { cpu: CpuShares; serverMs?: ServerTime }) =>
  `    CPU over ${m.cpu.wall.toFixed(1)} s wall (2 cores = ${(2 * m.cpu.wall).toFixed(1)} CPU-s): S3 server ${m.cpu.s3.toFixed(1)}, proxy ${m.cpu.proxy.toFixed(1)}, worker ${m.cpu.tool.toFixed(1)} CPU-s` +
  (m.serverMs ? `; the S3 server's own time per request p50 ${m.serverMs.p50} ms, p90 ${m.serverMs.p90} ms (beside the proxy's 50)` : '');

const rate = (m: Measure) => m.objects / m.seconds;
const mbps = (m: Measure) => m.bytes / 1e6 / m.seconds;
const line = (label: string, m: Measure) =>
  `${label.padEnd(34)} ${m.objects.toString().padStart(7)} objects in ${m.seconds.toFixed(2).padStart(7)} s = ${rate(m).toFixed(0).padStart(6)} obj/s, ${mbps(m).toFixed(1).padStart(6)} MB/s, peak RSS ${m.maxRssMb.toFixed(0)} MB`;

async function settle(db: Db): Promise<void> {
  await query(db, 'VACUUM ANALYZE app_files');
  await query(db, 'CHECKPOINT');
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
interface BenchStore extends LocalS3Server {
  /** The other processes' ports, for the proxies to spread requests over. */
  peerPorts: number[];
  /** Every process, for the server's share of the CPU. */
  pids: number[];
}

async function startBenchStore(bucket?: string): Promise<BenchStore> {
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
function proxyTo(store: BenchStore): S3Proxy {
  const proxy = new S3Proxy(store.port, store.bucket);
  proxy.alsoTo = store.peerPorts;
  return proxy;
}

/** settle, and the page cache written back (the S3 server's objects are files). */
async function quiet(db: Db): Promise<void> {
  await settle(db);
  spawnSync('sync');
}

let generation = 0;

/**
 * Puts every row back to 'database' under a new path, so the next run uploads to fresh keys: the objects of
 * the last run stay where they are, and migrate would only adopt them (or, for the naive job's objects, which
 * carry no writer marker, refuse to replace them) instead of uploading.
 */
async function resetMigration(db: Db): Promise<void> {
  generation++;
  await query(
    db,
    `UPDATE app_files SET storage_location = 'database', r2_object_key = NULL, path = 'gen' || $1::int || '/' || regexp_replace(path, '^gen[0-9]+/', '')`,
    [generation],
  );
}

/**
 * The app's saves alone, during finalize --hybrid-band and during reclaim (bench/app-side.ts), on a database
 * and store of their own: 6,000 files around 8 KB, migrated first.
 */
async function appSideBench(): Promise<AppSideResult> {
  const scratch = await scratchDatabase();
  const s3 = await startBenchStore('app-side');
  try {
    await seedFiles(scratch.db, { count: 6000, meanBytes: 8000, largePercent: 0 });
    await settle(scratch.db);
    const cliEnv = { ...process.env, DATABASE_URL: scratch.url, R2_ENDPOINT: s3.endpoint, R2_ACCESS_KEY_ID: s3.accessKeyId, R2_SECRET_ACCESS_KEY: s3.secretAccessKey, R2_BUCKET: s3.bucket, NO_COLOR: '1' };
    const migrated = await timeNode(['bin/overskill-storage.js', 'migrate', '--yes', ...UNCONDITIONAL, '--json', '--concurrency', '16'], cliEnv);
    if (migrated.code !== 0) throw new Error('migrate failed before the app-side bench');
    await settle(scratch.db);
    const result = await measureAppSide(scratch.url, cliEnv);
    for (const line of describeAppSide(result)) console.log(line);
    return result;
  } finally {
    await scratch.drop();
    await s3.stop();
  }
}

/** `--only read-path|pause|app-side|…`: one step on its own, on a fresh database and server. */
async function only(step: string): Promise<void> {
  const scratch = await scratchDatabase();
  const s3 = await startBenchStore();
  try {
    if (step === 'read-path') console.log(JSON.stringify(await measureReadPath(scratch.db, scratch.url, s3)));
    else if (step === 'large-rows') {
      await seedFiles(scratch.db, { count: 40, meanBytes: 5000, largePercent: 100, largeMaxMb: 20 });
      const cliEnv = { ...process.env, DATABASE_URL: scratch.url, R2_ENDPOINT: s3.endpoint, R2_ACCESS_KEY_ID: s3.accessKeyId, R2_SECRET_ACCESS_KEY: s3.secretAccessKey, R2_BUCKET: s3.bucket, NO_COLOR: '1' };
      await measureLargeRows(scratch.db, cliEnv);
    }
    else if (step === 'rclone') {
      await seedFiles(scratch.db, { count: files, meanBytes: 5000, largePercent: 0 });
      await settle(scratch.db);
      console.log(JSON.stringify(await compareWithRclone(scratch.db, scratch.url, s3, 16)));
    } else if (step === 'latency') {
      // The c=64 comparison through the 50 ms proxy alone, as the full bench makes it.
      await seedFiles(scratch.db, { count: files, meanBytes: 5000, largePercent: 0 });
      await settle(scratch.db);
      const proxy = await proxyTo(s3).start();
      proxy.latencyMs = 50;
      const compared = await pairedThroughProxy(scratch.db, scratch.url, s3, proxy, 64, Math.min(c64Files, files), C64_PAIRS);
      console.log(`c=64 through 50 ms, ${Math.min(c64Files, files)} objects a run: migrate ÷ raw ${compared.pairs.map((pair) => pair.ratio.toFixed(2)).join(', ')} → median ${compared.median.ratio.toFixed(2)}x (target >= 1.2)`);
      await proxy.stop();
    } else if (step === 'app-side') {
      await appSideBench();
    } else if (step === 'pause') {
      await seedFiles(scratch.db, { count: Math.min(files, 8000), meanBytes: 5000, largePercent: 0 });
      console.log(JSON.stringify(await measurePauseLatency(scratch.db, scratch.url, s3)));
    } else throw new Error(`unknown step ${step}`);
  } finally {
    await scratch.drop();
    await s3.stop();
  }
}

async function main() {
  const onlyIndex = args.indexOf('--only');
  if (onlyIndex >= 0) return only(args[onlyIndex + 1]);
  const results: Record<string, unknown> = { machine: { cpus: (await import('node:os')).cpus().length, node: process.version }, files };
  const startup = await measureStartup();
  console.log('start-up of the built CLI, median of 10 (target: --version and --help <= 2.5x node -e 0 and <= 80 MB; migrate --help <= 3x):');
  for (const [name, m] of Object.entries(startup)) console.log(`  ${name.padEnd(16)} ${(m.seconds * 1000).toFixed(0).padStart(5)} ms  ${m.ratio.toFixed(2)}x  peak RSS ${m.maxRssMb.toFixed(0)} MB`);
  results.startup = startup;
  const s3 = await startBenchStore('bench');
  const scratch = await scratchDatabase();
  try {
    console.log(`Seeding ${files} app_files rows (log-normal around 5 KB, no large files)…`);
    console.log(await seedFiles(scratch.db, { count: files, meanBytes: 5000, largePercent: 0 }));
    // Let PostgreSQL finish the seeding's background work (statistics, hint bits, a checkpoint) before measuring.
    await settle(scratch.db);

    // Throughput at concurrency 16, direct to the S3 server.
    // raw runs before and after migrate; the faster of the two is the ceiling (the first pays for a cold server).
    // Each of the three starts on a quiet machine, as the pairs through the proxy do.
    const direct = async (operation: 'raw' | 'migrate') => {
      await quiet(scratch.db);
      return withCpu(s3.pids, () => runWorker(operation, scratch.url, s3.endpoint, s3.bucket, 16));
    };
    const rawFirst = await direct('raw');
    const migrated = await direct('migrate');
    const rawSecond = await direct('raw');
    const raw = rate(rawSecond) > rate(rawFirst) ? rawSecond : rawFirst;
    console.log(line('raw PutObject loop (c=16)', raw));
    console.log(cpuLine(raw));
    console.log(line('migrate (c=16)', migrated));
    console.log(cpuLine(migrated));
    const ratio = rate(migrated) / rate(raw);
    console.log(`  migrate/raw = ${ratio.toFixed(2)}  (target >= 0.9); statements per batch ≈ ${(migrated.statements / Math.max(1, migrated.batches)).toFixed(2)}; S3 requests per object = ${(Object.values(migrated.requests).reduce((a, b) => a + b, 0) / migrated.objects).toFixed(3)}`);
    results.throughput = { raw, rawRuns: [rawFirst, rawSecond], migrate: migrated, ratio };

    // Where migrate's own CPU goes at c=16 direct (node --cpu-prof of the worker): kept in the JSON, so the
    // next change to the hot path can be judged against this one.
    await resetMigration(scratch.db);
    results.profileC16 = await profileMigrate('c=16, direct', scratch.url, s3.endpoint, s3.bucket, 16);

    const rclone = await compareWithRclone(scratch.db, scratch.url, s3, 16);
    if (rclone) {
      const r = rclone as { objects: number; rclone: { seconds: number; cpuMsPerObject: number; objectsPerSecond: number }; migrate: { seconds: number; cpuMsPerObject: number; objectsPerSecond: number } };
      console.log(
        `rclone copy vs CLI migrate, c=16, ${r.objects} objects: rclone ${r.rclone.objectsPerSecond.toFixed(0)} obj/s at ${r.rclone.cpuMsPerObject.toFixed(2)} ms CPU/object; migrate ${r.migrate.objectsPerSecond.toFixed(0)} obj/s at ${r.migrate.cpuMsPerObject.toFixed(2)} ms CPU/object → ${(r.migrate.cpuMsPerObject / r.rclone.cpuMsPerObject).toFixed(2)} of rclone (target <= 0.6)`,
      );
    } else console.log('rclone is not installed (apt-get install rclone): no side-by-side CPU figure');
    results.rclone = rclone;

    // Verify: listings vs deep vs one HEAD per object.
    const verifyDefault = await runWorker('verify', scratch.url, s3.endpoint, s3.bucket, 16);
    const verifyDeep = await runWorker('verify-deep', scratch.url, s3.endpoint, s3.bucket, 16);
    const verifyHead = await runWorker('verify-head', scratch.url, s3.endpoint, s3.bucket, 16);
    const requestsOf = (m: Measure) => Object.values(m.requests).reduce((a, b) => a + b, 0);
    console.log(`verify (listings)  ${verifyDefault.seconds.toFixed(2)} s, ${requestsOf(verifyDefault)} S3 requests for ${verifyDefault.objects} objects (${((100 * requestsOf(verifyDefault)) / verifyDefault.objects).toFixed(2)}%)`);
    console.log(`verify --deep      ${verifyDeep.seconds.toFixed(2)} s, ${requestsOf(verifyDeep)} S3 requests`);
    console.log(`HEAD per object    ${verifyHead.seconds.toFixed(2)} s, ${requestsOf(verifyHead)} S3 requests  → listings are ${(verifyHead.seconds / verifyDefault.seconds).toFixed(1)}x faster`);
    results.verify = { default: verifyDefault, deep: verifyDeep, headPerObject: verifyHead };
    if (!skipLatency) {
      // The same comparison where every request costs an R2-like round trip.
      const proxy = await proxyTo(s3).start();
      proxy.latencyMs = 50;
      const listed = await runWorker('verify', scratch.url, proxy.endpoint, s3.bucket, 16);
      const headed = await runWorker('verify-head', scratch.url, proxy.endpoint, s3.bucket, 16);
      await proxy.stop();
      console.log(`through a 50 ms proxy: verify ${listed.seconds.toFixed(2)} s vs HEAD per object ${headed.seconds.toFixed(2)} s (c=16) → ${(headed.seconds / listed.seconds).toFixed(1)}x faster`);
      results.verifyLatency = { default: listed, headPerObject: headed, speedup: headed.seconds / listed.seconds };
    }

    const report = await runWorker('report', scratch.url, s3.endpoint, s3.bucket, 1);
    console.log(`report             ${report.seconds.toFixed(3)} s on ${files} rows`);
    results.report = { rows: files, seconds: report.seconds };

    // Naive, direct: the plan's one-row-at-a-time job.
    await resetMigration(scratch.db);
    const naiveDirect = await runWorker('naive', scratch.url, s3.endpoint, s3.bucket, 1, naiveFiles);
    console.log(line('naive, direct', naiveDirect));
    results.naiveDirect = naiveDirect;

    if (!skipLatency) {
      const proxy = await proxyTo(s3).start();
      proxy.latencyMs = 50;
      const latency: Record<string, unknown> = {};
      const naive = await runWorker('naive', scratch.url, proxy.endpoint, s3.bucket, 1, naiveFiles);
      console.log(line('naive, 50 ms proxy', naive));
      latency.naive = naive;
      // c=8 and c=32 one pair each; c=64, the target, several pairs over a longer window (the median pair).
      for (const { concurrency, objects, count } of [
        { concurrency: 8, objects: latencyFiles, count: 1 },
        { concurrency: 32, objects: latencyFiles, count: 1 },
        { concurrency: 64, objects: Math.min(c64Files, files), count: C64_PAIRS },
      ]) {
        console.log(`c=${concurrency} through 50 ms, ${count} pair${count > 1 ? 's' : ''} of ${objects} objects:`);
        const { pairs, median } = await pairedThroughProxy(scratch.db, scratch.url, s3, proxy, concurrency, objects, count);
        const ceiling = Math.min(concurrency / 0.05, rate(raw));
        console.log(
          `  migrate / raw through the same proxy: ${pairs.map((pair) => pair.ratio.toFixed(2)).join(', ')}${count > 1 ? ` → median ${median.ratio.toFixed(2)}` : ''}${concurrency === 64 ? ' (target >= 1.2)' : ''}; migrate / min(c/latency, raw) = ${(rate(median.migrate) / ceiling).toFixed(2)}; migrate/naive = ${(rate(median.migrate) / rate(naive)).toFixed(1)}x`,
        );
        latency[`c${concurrency}`] = {
          objects,
          raw: median.raw,
          migrate: median.migrate,
          ceiling,
          ratio: rate(median.migrate) / ceiling,
          vsRawThroughProxy: median.ratio,
          vsNaive: rate(median.migrate) / rate(naive),
          ...(count > 1 ? { pairs } : {}),
        };
      }
      // Scaling out: four processes at c=8 against one, on the same rows, PostgreSQL coordinating.
      await resetMigration(scratch.db);
      const single = await runWorker('migrate', scratch.url, proxy.endpoint, s3.bucket, 8, latencyFiles);
      await resetMigration(scratch.db);
      const many = await Promise.all([0, 1, 2, 3].map(() => runWorker('migrate', scratch.url, proxy.endpoint, s3.bucket, 8, latencyFiles)));
      // From the first worker's start of work to the last one's end: process start-up is not migration time.
      const manySeconds = (Math.max(...many.map((m) => m.endedAt!)) - Math.min(...many.map((m) => m.startedAt!))) / 1000;
      const manyObjects = many.reduce((sum, m) => sum + m.objects, 0);
      const scaleUp = manyObjects / manySeconds / rate(single);
      console.log(`4 processes at c=8 through 50 ms: ${manyObjects} objects in ${manySeconds.toFixed(2)} s = ${(manyObjects / manySeconds).toFixed(0)} obj/s vs one process ${rate(single).toFixed(0)} obj/s → ${scaleUp.toFixed(2)}x (target >= 3x)`);
      // Exactly once: every row the four uploaded is flipped, and no row was uploaded by two of them.
      const [{ flipped }] = await query<{ flipped: number }>(scratch.db, "SELECT count(*)::int AS flipped FROM app_files WHERE storage_location = 'hybrid'");
      latency.scaleOut = { single, many, manySeconds, manyObjects, scaleUp, flipped };
      // Guarded deletes through 50 ms: HEAD, a conditional 0-byte tombstone, then DELETE, per object.
      await resetMigration(scratch.db);
      const apps = (await query<{ app_id: string }>(scratch.db, 'SELECT DISTINCT app_id FROM app_files ORDER BY app_id LIMIT 3')).map((row) => row.app_id);
      await runWorker('migrate', scratch.url, s3.endpoint, s3.bucket, 16, undefined, [], apps.join(','));
      await query(scratch.db, "UPDATE app_files SET storage_location = 'database', r2_object_key = NULL WHERE app_id = ANY($1::bigint[])", [apps]);
      const cleaned = await runWorker('cleanup', scratch.url, proxy.endpoint, s3.bucket, 16, apps.join(','));
      const window = (cleaned.extra as { deleteWindow: { count: number; p50Ms: number; p99Ms: number; maxMs: number } }).deleteWindow;
      console.log(
        `cleanup through 50 ms, c=16: ${cleaned.objects} objects deleted in ${cleaned.seconds.toFixed(2)} s (${(cleaned.objects / cleaned.seconds).toFixed(0)}/s); tombstone-to-delete window p50 ${window.p50Ms} ms, p99 ${window.p99Ms} ms, max ${window.maxMs} ms`,
      );
      latency.guardedDeletes = { cleanup: cleaned, window };
      if (profile) {
        // Where the tool's own time goes at c=64 through the proxy (node --cpu-prof of the worker).
        await resetMigration(scratch.db);
        latency.profile = await profileMigrate('c=64 through 50 ms', scratch.url, proxy.endpoint, s3.bucket, 64, latencyFiles);
      }
      await proxy.stop();
      results.latency = latency;
      results.pause = await measurePauseLatency(scratch.db, scratch.url, s3);
      results.readPath = await measureReadPath(scratch.db, scratch.url, s3);
    }

    // The CLI as users run it (built JavaScript): peak RSS of migrate at c=16 over `files` rows.
    await resetMigration(scratch.db);
    const cliEnv = { ...process.env, DATABASE_URL: scratch.url, R2_ENDPOINT: s3.endpoint, R2_ACCESS_KEY_ID: s3.accessKeyId, R2_SECRET_ACCESS_KEY: s3.secretAccessKey, R2_BUCKET: s3.bucket, NO_COLOR: '1' };
    const cliSmall = await timeNode(['bin/overskill-storage.js', 'migrate', '--yes', ...UNCONDITIONAL, '--json', '--concurrency', '16', '--tables', 'files'], cliEnv);
    console.log(`CLI migrate (c=16, ${files} rows): ${cliSmall.seconds.toFixed(1)} s, peak RSS ${cliSmall.maxRssMb.toFixed(0)} MB (target <= 150 MB)`);
    results.cliMemory = { rows: files, small: cliSmall };

    // Memory: a 10x larger table, the same amount of work, and rows of 20 MB.
    if (scaleRows > 0) {
      await resetMigration(scratch.db);
      await query(scratch.db, 'DELETE FROM app_files');
      console.log(`Seeding ${scaleRows} rows to show memory does not grow with the table…`);
      await seedFiles(scratch.db, { count: scaleRows, meanBytes: 5000, largePercent: 0 });
      await settle(scratch.db);
      const scaled = await runWorker('migrate', scratch.url, s3.endpoint, s3.bucket, 16, files);
      console.log(line(`migrate ${files} rows of a ${scaleRows}-row table`, scaled));
      const cliScaled = await timeNode(['bin/overskill-storage.js', 'migrate', '--yes', ...UNCONDITIONAL, '--json', '--concurrency', '16', '--tables', 'files', '--limit', String(files)], cliEnv);
      console.log(
        `CLI migrate (c=16, ${files} rows of a ${scaleRows}-row table): peak RSS ${cliScaled.maxRssMb.toFixed(0)} MB vs ${cliSmall.maxRssMb.toFixed(0)} MB → ${((cliScaled.maxRssMb / cliSmall.maxRssMb - 1) * 100).toFixed(0)}% (target <= 150 MB)`,
      );
      (results.cliMemory as Record<string, unknown>).scaled = cliScaled;
      await query(scratch.db, "DELETE FROM app_files WHERE storage_location = 'database'");
      await seedFiles(scratch.db, { count: 40, meanBytes: 5000, largePercent: 100, largeMaxMb: 20 });
      const large = await runWorker('migrate', scratch.url, s3.endpoint, s3.bucket, 16);
      console.log(line('migrate with 1-20 MB rows', large));
      console.log(`  peak RSS: ${migrated.maxRssMb.toFixed(0)} MB (${files} rows) vs ${scaled.maxRssMb.toFixed(0)} MB (${scaleRows}-row table) vs ${large.maxRssMb.toFixed(0)} MB (1-20 MB rows)`);
      // The same 40 rows alone through the CLI, three times (peak RSS moves by a few MB between runs).
      await query(scratch.db, 'DELETE FROM app_files WHERE octet_length(content) < 1048576');
      const cliLarge = await measureLargeRows(scratch.db, cliEnv);
      results.memory = { small: migrated.maxRssMb, scaled: scaled.maxRssMb, largeRows: large.maxRssMb, scaleRows, cliLargeRows: cliLarge };
    }

    if (reportRows > 0) {
      await query(scratch.db, 'DELETE FROM app_files');
      console.log(`Seeding ${reportRows} rows for report…`);
      await seedFiles(scratch.db, { count: reportRows, meanBytes: 5000, largePercent: 0 });
      await query(scratch.db, 'ANALYZE app_files');
      const big = await runWorker('report', scratch.url, s3.endpoint, s3.bucket, 1);
      console.log(`report             ${big.seconds.toFixed(3)} s on ${reportRows} rows (target < 2 s at 1,000,000)`);
      results.reportLarge = { rows: reportRows, seconds: big.seconds };
      // The HTML report of the same table: the CLI writing it, then a headless browser drawing it.
      const page = join(mkdtempSync(join(tmpdir(), 'overskill-html-')), 'report.html');
      const reportEnv = { ...process.env, DATABASE_URL: scratch.url, NO_COLOR: '1' };
      const written = await timeNode(['bin/overskill-storage.js', 'report', '--format', 'html', '--out', page], reportEnv);
      const drawn = await renderInBrowser(page);
      console.log(
        `report --format html on ${reportRows} rows: written in ${written.seconds.toFixed(2)} s; ${drawn ? `loaded and drawn by headless chromium in ${drawn.toFixed(0)} ms, ${(written.seconds + drawn / 1000).toFixed(2)} s in all` : 'no /usr/bin/chromium to draw it'} (target < 2 s)`,
      );
      results.reportHtml = { rows: reportRows, writeSeconds: written.seconds, drawMs: drawn };
    }
  } finally {
    await scratch.drop();
    await s3.stop();
  }
  results.appSide = await appSideBench();
  results.targets = targetSummary(results);
  console.log('\ntargets:');
  for (const [name, t] of Object.entries(results.targets as Record<string, { value: unknown; target: string; met: boolean }>)) console.log(`  ${t.met ? 'met ' : 'MISS'}  ${name}: ${JSON.stringify(t.value)} (${t.target})`);
  writeFileSync(outFile, JSON.stringify(results, null, 2));
  console.log(`\nWrote ${outFile}`);
}

/** The performance targets, each with its figure from this run and whether it was met. */
function targetSummary(results: Record<string, any>): Record<string, { value: unknown; target: string; met: boolean }> {
  const out: Record<string, { value: unknown; target: string; met: boolean }> = {};
  const round = (x: number) => Math.round(x * 100) / 100;
  if (results.rclone) {
    const ratio = results.rclone.migrate.cpuMsPerObject / results.rclone.rclone.cpuMsPerObject;
    out['CPU per object, migrate ÷ rclone, c=16'] = { value: round(ratio), target: '<= 0.6', met: ratio <= 0.6 };
  }
  const rss = [results.cliMemory?.small?.maxRssMb, results.cliMemory?.scaled?.maxRssMb, ...((results.memory?.cliLargeRows ?? []) as { maxRssMb: number }[]).map((m) => m.maxRssMb)].filter((x) => typeof x === 'number');
  if (rss.length) out['peak RSS of the CLI, MB (20k rows, 20k of 200k, 1-20 MB rows x3)'] = { value: rss.map(Math.round), target: '<= 150', met: rss.every((x) => x <= 150) };
  const c64 = results.latency?.c64?.vsRawThroughProxy;
  if (typeof c64 === 'number') out['migrate ÷ bare SDK loop through 50 ms, c=64'] = { value: round(c64), target: '>= 1.2', met: c64 >= 1.2 };
  if (typeof results.throughput?.ratio === 'number') out['migrate ÷ raw, c=16'] = { value: round(results.throughput.ratio), target: '>= 0.9', met: results.throughput.ratio >= 0.9 };
  const startup = results.startup as Record<string, { ratio: number }> | undefined;
  if (startup) {
    const worst = Math.max(startup['--version'].ratio, startup['--help'].ratio, startup['migrate --help'].ratio);
    out['start-up ÷ node -e 0 (worst of --version, --help, migrate --help)'] = { value: round(worst), target: '<= 2', met: worst <= 2 };
  }
  const perBatch = results.throughput ? results.throughput.migrate.statements / Math.max(1, results.throughput.migrate.batches) : undefined;
  if (perBatch !== undefined) out['SQL statements per batch'] = { value: round(perBatch), target: '<= 3', met: perBatch <= 3 };
  const scale = results.latency?.scaleOut;
  if (scale) out['four processes: uploads = rows flipped (exactly once)'] = { value: [scale.manyObjects, scale.flipped], target: 'equal', met: scale.manyObjects === scale.flipped };
  return out;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
