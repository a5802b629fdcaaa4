import { Chalk, type ChalkInstance } from 'chalk';
import { redact } from '../../src/secrets.ts';

export interface OutputStreams {
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

/** The version of every --json document's shape (schemas/cli-output.schema.json); raised on a breaking change. */
export const JSON_SCHEMA_VERSION = 1;

/**
 * Where everything a command says goes: results on stdout (one JSON document with --json), logs and
 * progress on stderr. Every line passes the secret scrubber. Colour follows NO_COLOR, --no-color and TTY.
 */
export class Output {
  readonly color: ChalkInstance;
  readonly json: boolean;
  readonly quiet: boolean;

  readonly command?: string;

  constructor(readonly streams: OutputStreams, options: { json: boolean; color?: boolean; quiet?: boolean; command?: string }) {
    this.json = options.json;
    this.command = options.command;
    this.quiet = options.quiet ?? false;
    const noColor = streams.env.NO_COLOR !== undefined && streams.env.NO_COLOR !== '';
    const wantColor = options.color !== false && !noColor && (streams.stderr.isTTY === true || streams.env.FORCE_COLOR !== undefined);
    this.color = new Chalk({ level: wantColor ? 1 : 0 });
  }

  get interactive(): boolean {
    return this.streams.stderr.isTTY === true;
  }

  /** A log line on stderr. */
  log(message: string): void {
    if (this.quiet) return;
    this.streams.stderr.write(redact(message) + '\n');
  }

  info(message: string): void {
    this.log(message);
  }

  warn(message: string): void {
    this.streams.stderr.write(redact(this.color.yellow(`warning: ${message}`)) + '\n');
  }

  error(message: string): void {
    this.streams.stderr.write(redact(this.color.red(`error: ${message}`)) + '\n');
  }

  /** The human result, on stdout. Suppressed with --json, where `result` carries the data instead. */
  print(text: string): void {
    if (this.json) return;
    this.streams.stdout.write(redact(text) + '\n');
  }

  /** The machine result: with --json, one JSON document on stdout, with its shape's version and the command. */
  result(document: object): void {
    if (!this.json) return;
    this.streams.stdout.write(redact(JSON.stringify({ schemaVersion: JSON_SCHEMA_VERSION, command: this.command, ...document }, null, 2)) + '\n');
  }

  heading(text: string): string {
    return this.color.bold(text);
  }
}
