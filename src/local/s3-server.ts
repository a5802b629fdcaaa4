import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export interface LocalS3Server {
  /** The endpoint clients use: conditional writes honoured, as R2 honours them. */
  endpoint: string;
  /** The server's process id (benchmarks read its CPU time). */
  pid: number;
  port: number;
  /** s3rver itself, which accepts If-None-Match and If-Match and ignores them: a store the tool must refuse. */
  bareEndpoint: string;
  barePort: number;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  directory: string;
  stop(): Promise<void>;
}

const HERE = fileURLToPath(import.meta.url);
/** Run from source (tests, the bench), the child is TypeScript too, loaded by the development loader. */
const FROM_SOURCE = HERE.endsWith('.ts');
const CHILD = join(dirname(HERE), FROM_SOURCE ? 's3-server-child.ts' : 's3-server-child.js');

/**
 * Starts s3rver (an S3-compatible server) on a free loopback port, in a child process and a temp directory,
 * behind a front that honours R2's conditional writes (`bare: true` leaves them out).
 */
export async function startLocalS3(options: { bucket?: string; directory?: string; bare?: boolean } = {}): Promise<LocalS3Server> {
  const bucket = options.bucket ?? 'overskill-dev';
  const directory = options.directory ?? mkdtempSync(join(tmpdir(), 'overskill-s3-'));
  const args = ['--openssl-legacy-provider', ...(FROM_SOURCE ? ['--import', 'tsx'] : []), CHILD, directory, bucket, options.bare ? 'bare' : 'r2'];
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const { port, barePort } = await new Promise<{ port: number; barePort: number }>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (line) => {
      try {
        resolve(JSON.parse(line));
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
    bareEndpoint: `http://127.0.0.1:${barePort}`,
    barePort,
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
