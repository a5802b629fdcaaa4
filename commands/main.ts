import { runCli } from './program.ts';
import { announceAboveProgress } from './support/render/progress.ts';

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
  // Ctrl-C and SIGTERM count together: the first stops after the batches in flight (each request then ends
  // within its deadline, with no further attempt), the second at once. Either way the exit is 130.
  let interrupts = 0;
  const interrupt = (name: string) => {
    interrupts++;
    if (interrupts === 1) {
      controller.abort();
      // Above the progress display, which stays and says so: the run is not over until its batches are.
      announceAboveProgress(process.stderr, `${name}: stopping after the batches in flight (Ctrl-C again: stop at once)`, 'stopping after the batches in flight');
    } else {
      // Safe at any moment: a row is flipped only in one statement after its object is verified, and the
      // claims lapse with this process's database session.
      process.stderr.write(`\n${name} again: stopping at once.\n`);
      process.exit(130);
    }
  };
  process.on('SIGINT', () => interrupt('Interrupted'));
  process.on('SIGTERM', () => interrupt('Terminated'));
  const code = await runCli(process.argv.slice(2), { streams: { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env }, cwd: process.cwd(), signal: controller.signal });
  // A run stopped by a signal ends 130 whatever it had finished (a command that ended on its own first keeps its code).
  const exitCode = controller.signal.aborted && code === 0 ? 130 : code;
  process.exitCode = exitCode;
  // Sockets kept alive by the SDK must not hold the process open.
  setTimeout(() => process.exit(exitCode), 200).unref();
}
