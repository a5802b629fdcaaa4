/**
 * The processes the bench times: the bench worker (bench/worker.ts, one operation in a process of its own),
 * the built CLI, and bare Node; each one's wall time, CPU and peak RSS, and the CPU of the S3 server and of
 * this process (the proxy) beside it.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { S3Proxy } from '../test/support/http-proxy.ts';
import type { LocalS3Server } from '../src/local/s3-server.ts';

/** What bench/worker.ts reports of one operation. */
export interface Measure {
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

export type CpuShares = { s3: number; proxy: number; tool: number; wall: number };
/** Through a proxy: the S3 server's own time per request (from the proxy forwarding it to the server's answer). */
export type ServerTime = { p50: number; p90: number };
export type Measured = Measure & { cpu: CpuShares; serverMs?: ServerTime };

export function runWorker(operation: string, url: string, endpoint: string, bucket: string, concurrency: number, extra?: string | number, nodeFlags: string[] = [], appIds?: string): Promise<Measure> {
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
export function timeNode(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ seconds: number; maxRssMb: number; cpuSeconds: number; code: number; stdout: string }> {
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

/** Runs the built CLI without blocking this process (whose event loop serves the latency proxy). */
export function cliAsync(args: string[], env: NodeJS.ProcessEnv, options: { quiet?: boolean } = {}): Promise<{ status: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['bin/overskill-storage.js', ...args], { env, stdio: ['ignore', 'pipe', options.quiet ? 'ignore' : 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ status: code ?? 1, stdout }));
  });
}

/** The environment the CLI runs in against `url` and `store` (at `endpoint`, when a proxy stands in front). */
export function cliEnvFor(url: string, store: LocalS3Server, endpoint = store.endpoint): NodeJS.ProcessEnv {
  return { ...process.env, DATABASE_URL: url, R2_ENDPOINT: endpoint, R2_ACCESS_KEY_ID: store.accessKeyId, R2_SECRET_ACCESS_KEY: store.secretAccessKey, R2_BUCKET: store.bucket, NO_COLOR: '1' };
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

/** Where the CPU went during one measured worker run: the S3 server, this process (the proxy), the tool. */
export async function withCpu(s3Pids: number[], task: () => Promise<Measure>, proxy?: S3Proxy): Promise<Measured> {
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
