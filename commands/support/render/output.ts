import { Chalk, type ChalkInstance } from 'chalk';
import { redact } from '../../../src/secrets.ts';
import type { RunEvent } from '../../../src/reporter.ts';
import { packLines, renderTable, wrapProse } from './format.ts';

export type LogFormat = 'text' | 'json';
export type EventSink = (event: RunEvent) => void;

export interface OutputStreams {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

/** The version of every --json document's shape (schemas/cli-output.schema.json); raised on a breaking change. */
export const JSON_SCHEMA_VERSION = 1;

/** The stdout streams a --json document was written to: a command that then fails adds no second one. */
const DOCUMENTED = new WeakSet<object>();

/**
 * With --json, a command that ends in an error still gives a script one document to read: the same sentence
 * as stderr, the exit code, and the error's kind. Nothing is written when the command printed its document.
 */
export function writeErrorDocument(stdout: NodeJS.WritableStream, command: string, error: { message: string; exitCode: number; kind?: string }): void {
  if (DOCUMENTED.has(stdout)) return;
  DOCUMENTED.add(stdout);
  stdout.write(redact(JSON.stringify({ schemaVersion: JSON_SCHEMA_VERSION, command, ok: false, error }, null, 2)) + '\n');
}

/**
 * Where everything a command says goes: results on stdout (one JSON document with --json), logs and
 * progress on stderr. Every line passes the secret scrubber. Colour follows NO_COLOR, --no-color and TTY.
 */
export class Output {
  readonly color: ChalkInstance;
  readonly json: boolean;
  readonly quiet: boolean;

  readonly command?: string;
  /** -v: say more about what is being done (each step's timing, the settings resolved). */
  readonly verbose: boolean;
  /** `json`: every log line and run event is one JSON object on stderr (--log-format json). */
  readonly logFormat: LogFormat;
  private readonly sinks: Set<EventSink>;

  constructor(
    readonly streams: OutputStreams,
    options: { json: boolean; color?: boolean; quiet?: boolean; verbose?: boolean; command?: string; logFormat?: LogFormat; sinks?: Set<EventSink> },
  ) {
    this.json = options.json;
    this.logFormat = options.logFormat ?? 'text';
    this.sinks = options.sinks ?? new Set();
    this.command = options.command;
    this.quiet = options.quiet ?? false;
    this.verbose = options.verbose ?? false;
    const noColor = streams.env.NO_COLOR !== undefined && streams.env.NO_COLOR !== '';
    const wantColor = this.logFormat === 'text' && options.color !== false && !noColor && (streams.stderr.isTTY === true || streams.env.FORCE_COLOR !== undefined);
    this.color = new Chalk({ level: wantColor ? 1 : 0 });
  }

  get interactive(): boolean {
    return this.streams.stderr.isTTY === true && this.logFormat === 'text';
  }

  /** The terminal's width for what goes to stdout; undefined off a terminal, where records stay one line each. */
  get width(): number | undefined {
    const { stdout } = this.streams;
    return stdout.isTTY === true ? stdout.columns || 80 : undefined;
  }

  /** The terminal's width for stderr (progress, logs); 80 when it cannot be told. */
  get errorWidth(): number {
    const { stderr } = this.streams;
    return stderr.isTTY === true && stderr.columns ? stderr.columns : 80;
  }

  /** A table for stdout, fitted to the terminal's width (see renderTable). */
  table(header: string[], rows: (string | number)[][], options: { indent?: number } = {}): string {
    const indent = options.indent ?? 0;
    const width = this.width === undefined ? undefined : this.width - indent;
    const text = renderTable(header, rows, { bold: this.color.bold, dim: this.color.dim }, width);
    return indent ? text.split('\n').map((line) => `${' '.repeat(indent)}${line}`).join('\n') : text;
  }

  /**
   * Parts of one record joined by " · ": one line off a terminal (for pipes), and on a terminal as many
   * lines as its width needs, continuation lines indented.
   */
  joinFitted(parts: string[], indent = '    '): string {
    const width = this.width;
    if (width === undefined) return parts.join(' · ');
    return packLines(parts, width, { separator: ' · ', indent }).join('\n');
  }

  /** A line only -v asks for. */
  detail(message: string): void {
    if (this.verbose) this.log(this.color.dim(message));
  }

  /** One JSON log line on stderr: time, level, the command, and what happened. */
  private line(level: 'info' | 'warn' | 'error', fields: Record<string, unknown>): void {
    this.streams.stderr.write(redact(JSON.stringify({ time: new Date().toISOString(), level, command: this.command, pid: process.pid, ...fields })) + '\n');
  }

  /** A log line on stderr. */
  log(message: string): void {
    if (this.quiet) return;
    if (this.logFormat === 'json') this.line('info', { event: 'log', message });
    else this.streams.stderr.write(this.forStderr(redact(message)) + '\n');
  }

  /** On a terminal, prose breaks at spaces to its width; elsewhere every line is left whole (for pipes and logs). */
  private forStderr(text: string): string {
    return this.streams.stderr.isTTY === true ? wrapProse(text, this.errorWidth) : text;
  }

  /** A run's event: one JSON line with --log-format json (the text form shows progress instead), and to every sink (metrics). */
  event(event: RunEvent): void {
    if (this.logFormat === 'json') {
      const { type, ...fields } = event;
      this.line(type === 'item.failed' ? 'error' : type === 'item.refused' || (type === 'run.ended' && event.state !== 'done') ? 'warn' : 'info', { event: type, ...fields });
    }
    for (const sink of this.sinks) sink(event);
  }

  info(message: string): void {
    this.log(message);
  }

  warn(message: string): void {
    if (this.logFormat === 'json') this.line('warn', { event: 'log', message });
    else this.streams.stderr.write(this.forStderr(redact(this.color.yellow(`warning: ${message}`))) + '\n');
  }

  error(message: string): void {
    if (this.logFormat === 'json') this.line('error', { event: 'log', message });
    else this.streams.stderr.write(this.forStderr(redact(this.color.red(`error: ${message}`))) + '\n');
  }

  /** The human result, on stdout. Suppressed with --json, where `result` carries the data instead. */
  print(text: string): void {
    if (this.json) return;
    const width = this.width;
    this.streams.stdout.write((width === undefined ? redact(text) : wrapProse(redact(text), width)) + '\n');
  }

  /** Text for stdout exactly as given, never re-broken (SQL to paste, markdown): suppressed with --json, as print is. */
  printVerbatim(text: string): void {
    if (this.json) return;
    this.streams.stdout.write(redact(text) + '\n');
  }

  /** The machine result: with --json, one JSON document on stdout, with its shape's version and the command. */
  result(document: object): void {
    if (!this.json) return;
    DOCUMENTED.add(this.streams.stdout);
    this.streams.stdout.write(redact(JSON.stringify({ schemaVersion: JSON_SCHEMA_VERSION, command: this.command, ...document }, null, 2)) + '\n');
  }

  heading(text: string): string {
    return this.color.bold(text);
  }
}
