/** Start-up of the built CLI against a bare `node -e 0`. */
import { median } from '../figures.ts';
import { timeNode } from '../processes.ts';

export type StartupResult = Record<string, { seconds: number; maxRssMb: number; ratio: number }>;

/** Interleaved, median of `runs` each, after one warm-up round. */
export async function measureStartup(runs = 10): Promise<StartupResult> {
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
  const result: StartupResult = {};
  for (const [name, sample] of Object.entries(samples)) result[name] = { seconds: median(sample.seconds), maxRssMb: median(sample.rss), ratio: median(sample.seconds) / base };
  console.log('start-up of the built CLI, median of 10 (target: --version and --help <= 2.5x node -e 0 and <= 80 MB; migrate --help <= 3x):');
  for (const [name, m] of Object.entries(result)) console.log(`  ${name.padEnd(16)} ${(m.seconds * 1000).toFixed(0).padStart(5)} ms  ${m.ratio.toFixed(2)}x  peak RSS ${m.maxRssMb.toFixed(0)} MB`);
  return result;
}
