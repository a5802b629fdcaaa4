import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BIN } from './cli.ts';

const run = promisify(execFile);

/** Whether tmux is here (a Debian package; .ci/run's machine has it). */
export function hasTmux(): boolean {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * The CLI in a real terminal: a tmux pane of the given size on a server of its own (so test files do not
 * share one), its screen read back as the operator sees it, keys sent as they type them.
 */
export class Terminal {
  private readonly socket = `oss-${randomBytes(5).toString('hex')}`;
  private readonly dir = mkdtempSync(join(tmpdir(), 'oss-term-'));

  private constructor(readonly columns: number) {}

  /** Starts `overskill-storage ARGS` in a pane `columns` wide; the pane stays after it exits, with its exit code. */
  static async start(args: string[], env: NodeJS.ProcessEnv, options: { columns: number; rows?: number }): Promise<Terminal> {
    const terminal = new Terminal(options.columns);
    const script = join(terminal.dir, 'run.sh');
    const quote = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`;
    writeFileSync(
      script,
      [
        ...Object.entries(env)
          .filter(([, value]) => value !== undefined)
          .map(([name, value]) => `export ${name}=${quote(value!)}`),
        `${quote(process.execPath)} ${quote(BIN)} ${args.map(quote).join(' ')}`,
        'echo "[exit $?]"',
        'sleep 600',
      ].join('\n'),
    );
    await terminal.tmux('new-session', '-d', '-s', 'main', '-x', String(options.columns), '-y', String(options.rows ?? 50), `bash --norc --noprofile ${quote(script)}`);
    await terminal.tmux('set-option', '-t', 'main', 'history-limit', '10000');
    return terminal;
  }

  private async tmux(...args: string[]): Promise<string> {
    const { stdout } = await run('tmux', ['-L', this.socket, '-f', '/dev/null', ...args], { env: { PATH: process.env.PATH, TERM: 'xterm-256color' } });
    return stdout;
  }

  /** Everything the pane shows and has scrolled away, as rendered: one string per screen line, trailing blanks trimmed. */
  async screen(): Promise<string[]> {
    const text = await this.tmux('capture-pane', '-p', '-J', '-t', 'main', '-S', '-', '-E', '-');
    const lines = text.split('\n').map((line) => line.trimEnd());
    while (lines.length && lines[lines.length - 1] === '') lines.pop();
    return lines;
  }

  /** Only the visible lines, without -J joining (the lines exactly as wide as the terminal draws them). */
  async visible(): Promise<string[]> {
    const text = await this.tmux('capture-pane', '-p', '-t', 'main');
    return text.split('\n').map((line) => line.trimEnd());
  }

  async keys(...keys: string[]): Promise<void> {
    await this.tmux('send-keys', '-t', 'main', ...keys);
  }

  /** Waits until the screen matches, and returns it. */
  async waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<string[]> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const lines = await this.screen();
      if (pattern.test(lines.join('\n'))) return lines;
      if (Date.now() > until) throw new Error(`the terminal never showed ${pattern}; it shows:\n${lines.join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** Waits for the command to end; its exit code, and the screen. */
  async exit(timeoutMs = 60_000): Promise<{ code: number; lines: string[] }> {
    const lines = await this.waitFor(/^\[exit \d+\]$/m, timeoutMs);
    const code = Number(/^\[exit (\d+)\]$/m.exec(lines.join('\n'))![1]);
    return { code, lines: lines.slice(0, lines.findIndex((line) => /^\[exit \d+\]$/.test(line))) };
  }

  async close(): Promise<void> {
    await this.tmux('kill-server').catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The widest line of some text as a terminal shows it (colour codes take no room). */
export function widest(lines: string[]): number {
  // eslint-disable-next-line no-control-regex
  return Math.max(0, ...lines.map((line) => [...line.replace(/\u001b\[[0-9;?]*[A-Za-z]/g, '')].length));
}
