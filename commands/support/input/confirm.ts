import { DeclinedError, InterruptedError, WriteRefusedError } from '../../../src/errors.ts';
import type { Output } from '../render/output.ts';
import { wrapProse } from '../render/format.ts';

/**
 * Asks before a write. With --yes it does not ask; without a terminal on stdin it never asks and refuses
 * (exit 2), so CI never hangs on a prompt and never writes by accident.
 */
export async function confirmWrite(output: Output, question: string, options: { yes: boolean }): Promise<void> {
  if (options.yes) return;
  if (!output.streams.stdin.isTTY) {
    throw new WriteRefusedError('Refusing to write without confirmation: stdin is not a terminal. Pass --yes to proceed (or --dry-run to only see the plan).');
  }
  let answer: boolean;
  // The prompt library loads only when there is something to ask.
  const { confirm } = await import('@inquirer/prompts');
  // The prompt library breaks a long line wherever the terminal's width falls, inside a word or a name: the
  // question is wrapped between words first, leaving room for its "? " and " (y/N)".
  const message = output.width ? wrapProse(question, Math.max(20, output.width - 10)) : question;
  try {
    answer = await confirm({ message, default: false }, { input: output.streams.stdin as never, output: output.streams.stderr as never });
  } catch {
    // Ctrl-C (or a closed terminal) at the prompt: a stop, before anything was written.
    throw new InterruptedError('Stopped at the prompt; nothing was changed.');
  }
  if (!answer) throw new DeclinedError('Not confirmed; nothing was changed.');
}
