/**
 * The bench's command line, read once:
 *   npm run bench -- [--files 20000] [--out bench-results.json] [--latency-files 2000] [--c64-files 6000] [--naive-files 200]
 *                    [--scale-rows 200000] [--report-rows 0] [--skip-latency] [--profile]
 *                    [--only read-path|pause|large-rows|rclone|latency|app-side|r2-rules]
 */
const args = process.argv.slice(2);
const option = (name: string, fallback: number) => {
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? Number(args[index + 1]) : fallback;
};
const text = (name: string) => {
  const index = args.indexOf(`--${name}`);
  return index >= 0 ? args[index + 1] : undefined;
};

export const options = {
  files: option('files', 20_000),
  latencyFiles: option('latency-files', 2_000),
  /** Objects per run in the c=64 comparison: a window long enough that a run's own start and end are a small part of it. */
  c64Files: option('c64-files', 6_000),
  /** Raw/migrate pairs at c=64, the first of each pair alternating: the figure is the median pair. */
  c64Pairs: 3,
  naiveFiles: option('naive-files', 200),
  scaleRows: option('scale-rows', 200_000),
  reportRows: option('report-rows', 0),
  outFile: text('out') ?? 'bench-results.json',
  skipLatency: args.includes('--skip-latency'),
  profile: args.includes('--profile'),
  /** One step on its own (run.ts `only`). */
  only: text('only'),
};

/** The server scratch databases are made on. */
export const ADMIN = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/**
 * The bench measures the tool against bare s3rver. On loopback the server's CPU is the ceiling, and the local
 * server's R2 emulation (a second parse of every request, and a HEAD behind each conditional write) would be
 * measured instead of the tool; R2 evaluates its conditions on its own side. The CLI's writing commands then
 * need the override, and still pay for the store check they run first.
 */
export const UNCONDITIONAL = ['--allow-unconditional-store'];
