/** The performance targets, each with its figure from this run and whether it was met. */
export function targetSummary(results: Record<string, any>): Record<string, { value: unknown; target: string; met: boolean }> {
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
  for (const [layout, label] of [['shared', 'CPUs shared'], ['layout', 'the database on a CPU of its own']] as const) {
    const phases = (results.appSide?.[layout]?.phases ?? []) as { phase: string; p99Ratio?: number | null }[];
    for (const phase of phases.filter((p) => p.phase !== 'idle' && typeof p.p99Ratio === 'number')) {
      out[`the app's save p99 during ${phase.phase} ÷ alone (${label})`] = { value: phase.p99Ratio, target: '<= 1.5', met: (phase.p99Ratio as number) <= 1.5 };
    }
  }
  if (results.readPath?.cat) out['cat of one R2-only file through 50 ms, ms'] = { value: Math.round(results.readPath.cat.medianMs), target: '< 1000', met: results.readPath.cat.medianMs < 1000 };
  return out;
}
