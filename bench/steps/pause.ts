/**
 * Four CLI processes of one migration through the 50 ms proxy; `pause --all` from a fifth, timed until the
 * run is paused (every worker finished its batches in flight and released its claims), then resumed; three
 * rounds, then the run is left to finish.
 */
import { spawn } from 'node:child_process';
import { query, type Db } from '../../src/db.ts';
import { latencyProxy, resetMigration, type BenchStore } from '../fixture.ts';
import { UNCONDITIONAL } from '../options.ts';
import { cliAsync, cliEnvFor } from '../processes.ts';

export async function measurePauseLatency(db: Db, url: string, s3: BenchStore): Promise<Record<string, unknown>> {
  await resetMigration(db);
  const proxy = await latencyProxy(s3);
  const env = cliEnvFor(url, s3, proxy.endpoint);
  const control = cliEnvFor(url, s3);
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
