import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export interface LocalS3Server {
  endpoint: string;
  /** The server's process id (benchmarks read its CPU time). */
  pid: number;
  port: number;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  directory: string;
  stop(): Promise<void>;
}

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 's3rver-child.cjs');

/** Starts s3rver (an S3-compatible server) on a free loopback port, in a child process and a temp directory. */
export async function startLocalS3(options: { bucket?: string; directory?: string } = {}): Promise<LocalS3Server> {
  const bucket = options.bucket ?? 'overskill-dev';
  const directory = options.directory ?? mkdtempSync(join(tmpdir(), 'overskill-s3-'));
  const child: ChildProcess = spawn(process.execPath, ['--openssl-legacy-provider', CHILD, directory, bucket], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (line) => {
      try {
        resolve(JSON.parse(line).port);
      } catch (error) {
        reject(error);
      }
    });
    child.once('exit', (code) => reject(new Error(`s3rver exited with ${code}: ${stderr}`)));
  });
  return {
    endpoint: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    port,
    bucket,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
    directory,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      if (!options.directory) rmSync(directory, { recursive: true, force: true });
    },
  };
}
