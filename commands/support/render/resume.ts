import { maskArguments } from '../../../src/runs/identity.ts';

/** A word as a POSIX shell reads it back: bare when safe, else single-quoted. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The command line that goes on where a stopped run stopped: the same one (every command resumes by running it again). */
export function resumeCommand(argv: readonly string[]): string {
  return ['overskill-storage', ...maskArguments(argv).map(shellWord)].join(' ');
}

/**
 * The last lines of a stopped run: the exact command to type, on a line of its own (never broken, so a paste
 * runs all of it), and a word when secrets in it were masked.
 */
export function resumeLines(argv: readonly string[]): string {
  const masked = maskArguments(argv).some((word, index) => word !== argv[index]);
  return `To go on where it stopped${masked ? ' (secrets masked: give them as before)' : ''}:\n  ${resumeCommand(argv)}`;
}
