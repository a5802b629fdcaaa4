import { PassThrough, Readable } from 'node:stream';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { runCli } from '../../commands/program.ts';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  json<T = any>(): T;
}

function collect(stream: PassThrough): () => string {
  const chunks: Buffer[] = [];
  stream.on('data', (chunk) => chunks.push(Buffer.from(chunk)));
  return () => Buffer.concat(chunks).toString('utf8');
}

/** Runs the CLI in this process with captured streams and no TTY (as CI does). */
export async function cli(args: string[], env: NodeJS.ProcessEnv, options: { signal?: AbortSignal; cwd?: string; tty?: boolean } = {}): Promise<CliRun> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const stdin = Readable.from([]) as Readable & { isTTY?: boolean };
  if (options.tty) stdin.isTTY = true;
  const out = collect(stdout);
  const err = collect(stderr);
  const code = await runCli(args, { streams: { stdout, stderr, stdin, env }, cwd: options.cwd ?? process.cwd(), signal: options.signal ?? new AbortController().signal });
  return {
    code,
    stdout: out(),
    stderr: err(),
    json() {
      return JSON.parse(out());
    },
  };
}

export const BIN = join(import.meta.dirname, '..', '..', 'bin', 'overskill-storage.js');

/** Runs the real executable as a child process (for signals, kills and exit codes as a shell sees them). */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv) {
  return spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
}

export async function spawnCliAndWait(args: string[], env: NodeJS.ProcessEnv): Promise<CliRun> {
  const child = spawnCli(args, env);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const code: number = await new Promise((resolve) => child.on('exit', (exitCode, signal) => resolve(exitCode ?? (signal ? 128 : 1))));
  return { code, stdout, stderr, json: () => JSON.parse(stdout) };
}

/**
 * A CLI process started with `--metrics-port 0`: its stderr as it arrives, its exit code, and the port it
 * logged it serves its metrics on (undefined when none was logged within 30 s).
 */
export async function spawnWithMetrics(args: string[], env: NodeJS.ProcessEnv): Promise<{ stderr: () => string; exited: Promise<number>; port: number | undefined }> {
  const child = spawnCli(args, env);
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<number>((resolve) => child.on('exit', (code) => resolve(code ?? -1)));
  let port: number | undefined;
  for (let waited = 0; waited < 30_000 && !port; waited += 50) {
    port = Number(/metrics at http:\/\/0\.0\.0\.0:(\d+)\/metrics/.exec(stderr)?.[1]) || undefined;
    if (!port) await new Promise((r) => setTimeout(r, 50));
  }
  return { stderr: () => stderr, exited, port };
}
