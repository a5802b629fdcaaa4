/** How the bench reads and prints its measurements. */
import type { CpuShares, Measure, ServerTime } from './processes.ts';

export const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
export const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor((p / 100) * values.length))];
export const rate = (m: Measure) => m.objects / m.seconds;
const mbps = (m: Measure) => m.bytes / 1e6 / m.seconds;
export const requestsOf = (m: Measure) => Object.values(m.requests).reduce((a, b) => a + b, 0);

export const line = (label: string, m: Measure) =>
  `${label.padEnd(34)} ${m.objects.toString().padStart(7)} objects in ${m.seconds.toFixed(2).padStart(7)} s = ${rate(m).toFixed(0).padStart(6)} obj/s, ${mbps(m).toFixed(1).padStart(6)} MB/s, peak RSS ${m.maxRssMb.toFixed(0)} MB`;

export const cpuLine = (m: { cpu: CpuShares; serverMs?: ServerTime }) =>
  `    CPU over ${m.cpu.wall.toFixed(1)} s wall (2 cores = ${(2 * m.cpu.wall).toFixed(1)} CPU-s): S3 server ${m.cpu.s3.toFixed(1)}, proxy ${m.cpu.proxy.toFixed(1)}, worker ${m.cpu.tool.toFixed(1)} CPU-s` +
  (m.serverMs ? `; the S3 server's own time per request p50 ${m.serverMs.p50} ms, p90 ${m.serverMs.p90} ms (beside the proxy's 50)` : '');
