/** Where migrate's own process time goes, by package (node --cpu-prof of the bench worker). */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { summarizeProfile } from '../profile-summary.ts';
import { runWorker } from '../processes.ts';

export async function profileMigrate(label: string, url: string, endpoint: string, bucket: string, concurrency: number, limit?: number): Promise<{ group: string; percent: number }[] | undefined> {
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
