/**
 * npm run bench -- [--files 20000] [--out bench-results.json] [--latency-files 2000] [--c64-files 6000] [--naive-files 200]
 *                  [--scale-rows 200000] [--report-rows 0] [--skip-latency] [--profile]
 *                  [--only read-path|pause|large-rows|rclone|latency|app-side|r2-rules]
 *
 * Measures, side by side in one run (absolute times drift on shared machines; the ratios are the point):
 *   raw vs migrate throughput, the same through a 50 ms proxy at concurrency 8/32/64 (c=64: three pairs,
 *   the median pair), the plan's naive
 *   one-row-at-a-time job, verify (listings vs deep vs one HEAD per row), report, peak RSS, and R2's rules at
 *   scale (three processes against a bucket budget, cleanup through 50 ms, the store check through 50 ms).
 * The store is two s3rver processes on one directory (bench/fixture.ts); the proxies spread requests over both.
 * Each step is a module of bench/steps/; this file runs them in order and writes the figures and the targets.
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { appSideBench } from './app-side.ts';
import { latencyProxy, scratchDatabase, settle, startBenchStore } from './fixture.ts';
import { options } from './options.ts';
import { cliEnvFor } from './processes.ts';
import { seedFiles } from './seed.ts';
import { measureLatency, measureNaiveDirect, pairedThroughProxy } from './steps/latency.ts';
import { measureLargeRows, measureMemory } from './steps/memory.ts';
import { measurePauseLatency } from './steps/pause.ts';
import { compareWithRclone } from './steps/rclone.ts';
import { measureReadPath } from './steps/read-path.ts';
import { measureLargeReport } from './steps/report-large.ts';
import { measureStartup } from './steps/startup.ts';
import { measureThroughput } from './steps/throughput.ts';
import { measureVerify } from './steps/verify.ts';
import { measureR2Rules } from './steps/r2-rules.ts';
import { targetSummary } from './targets.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// No app writes during the bench: a migrate's closing repair pass need not wait for saves in flight (--settle),
// so the figures measure the upload path, as they did before that pass existed.
process.env.OVERSKILL_STORAGE_SETTLE ??= '0s';

/** `--only read-path|pause|app-side|…`: one step on its own, on a fresh database and server. */
async function only(step: string): Promise<void> {
  if (step === 'app-side') {
    await appSideBench();
    return;
  }
  const scratch = await scratchDatabase();
  const s3 = await startBenchStore();
  try {
    if (step === 'read-path') console.log(JSON.stringify(await measureReadPath(scratch.db, scratch.url, s3)));
    else if (step === 'large-rows') {
      await seedFiles(scratch.db, { count: 40, largePercent: 100, largeMaxMb: 20 });
      await measureLargeRows(scratch.db, cliEnvFor(scratch.url, s3));
    } else if (step === 'rclone') {
      await seedFiles(scratch.db, { count: options.files, largePercent: 0 });
      await settle(scratch.db);
      console.log(JSON.stringify(await compareWithRclone(scratch.db, scratch.url, s3, 16)));
    } else if (step === 'latency') {
      // The c=64 comparison through the 50 ms proxy alone, as the full bench makes it.
      await seedFiles(scratch.db, { count: options.files, largePercent: 0 });
      await settle(scratch.db);
      const proxy = await latencyProxy(s3);
      const objects = Math.min(options.c64Files, options.files);
      const compared = await pairedThroughProxy(scratch.db, scratch.url, s3, proxy, 64, objects, options.c64Pairs);
      console.log(`c=64 through 50 ms, ${objects} objects a run: migrate ÷ raw ${compared.pairs.map((pair) => pair.ratio.toFixed(2)).join(', ')} → median ${compared.median.ratio.toFixed(2)}x (target >= 1.2)`);
      await proxy.stop();
    } else if (step === 'r2-rules') {
      console.log(JSON.stringify(await measureR2Rules(scratch.db, scratch.url)));
    } else if (step === 'pause') {
      await seedFiles(scratch.db, { count: Math.min(options.files, 8000), largePercent: 0 });
      console.log(JSON.stringify(await measurePauseLatency(scratch.db, scratch.url, s3)));
    } else throw new Error(`unknown step ${step}`);
  } finally {
    await scratch.drop();
    await s3.stop();
  }
}

async function main() {
  if (options.only) return only(options.only);
  const { files } = options;
  const results: Record<string, unknown> = { machine: { cpus: cpus().length, node: process.version }, files };
  results.startup = await measureStartup();
  const s3 = await startBenchStore('bench');
  const scratch = await scratchDatabase();
  try {
    console.log(`Seeding ${files} app_files rows, shaped like real apps' files (bench/seed.ts), no large files…`);
    console.log(await seedFiles(scratch.db, { count: files, largePercent: 0 }));
    // Let PostgreSQL finish the seeding's background work (statistics, hint bits, a checkpoint) before measuring.
    await settle(scratch.db);
    const { throughput, profile } = await measureThroughput(scratch.db, scratch.url, s3);
    results.throughput = throughput;
    results.profileC16 = profile;
    results.rclone = await compareWithRclone(scratch.db, scratch.url, s3, 16);
    Object.assign(results, await measureVerify(scratch.url, s3, files, !options.skipLatency));
    results.naiveDirect = await measureNaiveDirect(scratch.db, scratch.url, s3);
    if (!options.skipLatency) {
      results.latency = await measureLatency(scratch.db, scratch.url, s3, throughput.raw);
      results.pause = await measurePauseLatency(scratch.db, scratch.url, s3);
      results.readPath = await measureReadPath(scratch.db, scratch.url, s3);
    }
    Object.assign(results, await measureMemory(scratch.db, scratch.url, s3, throughput.migrate));
    // Last on this database: it replaces the rows with its own.
    if (!options.skipLatency) results.r2Rules = await measureR2Rules(scratch.db, scratch.url);
    if (options.reportRows > 0) Object.assign(results, await measureLargeReport(scratch.db, scratch.url, s3, options.reportRows));
  } finally {
    await scratch.drop();
    await s3.stop();
  }
  results.appSide = await appSideBench();
  results.targets = targetSummary(results);
  console.log('\ntargets:');
  for (const [name, t] of Object.entries(results.targets as Record<string, { value: unknown; target: string; met: boolean }>)) console.log(`  ${t.met ? 'met ' : 'MISS'}  ${name}: ${JSON.stringify(t.value)} (${t.target})`);
  writeFileSync(options.outFile, JSON.stringify(results, null, 2));
  console.log(`\nWrote ${options.outFile}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
