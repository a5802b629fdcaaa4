import { runCli } from './program.ts';
import { demoCommand } from './demo.ts';

/**
 * The process wrapper: the first Ctrl-C asks the run to stop after its in-flight batch (exit 130), a
 * second one exits at once (safe too: every row is flipped only after its object is verified).
 */
export async function main(): Promise<void> {
  const controller = new AbortController();
  for (const stream of [process.stdout, process.stderr]) {
    // A reader that went away (`| head`) is not an error of ours.
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw error;
    });
  }
  let interrupts = 0;
  process.on('SIGINT', () => {
    interrupts++;
    if (interrupts === 1) {
      process.stderr.write('\nStopping after the batches in flight… (Ctrl-C again to stop at once)\n');
      controller.abort();
    } else {
      process.exit(130);
    }
  });
  process.on('SIGTERM', () => controller.abort());
  const code = await runCli(process.argv.slice(2), { streams: { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env }, cwd: process.cwd(), signal: controller.signal }, [demoCommand]);
  process.exitCode = code;
  // Sockets kept alive by the SDK must not hold the process open.
  setTimeout(() => process.exit(code), 200).unref();
}
