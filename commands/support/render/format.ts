/** Human formatting shared by every command's output. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const sign = bytes < 0 ? '-' : '';
  let value = Math.abs(bytes);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${sign}${unit === 0 ? value : value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2)} ${units[unit]}`;
}

export function formatCount(count: number): string {
  return Math.round(count).toLocaleString('en-US');
}

export function formatMoney(dollars: number): string {
  if (dollars === 0) return '$0.00';
  if (Math.abs(dollars) < 0.01) return `$${dollars.toFixed(4)}`;
  return `$${dollars.toFixed(2)}`;
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return Math.round(seconds % 60) ? `${minutes} min ${Math.round(seconds % 60)} s` : `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
}

/** "1 row", "2 rows", "1,204 objects": the count and the word, agreeing. */
export function plural(count: number, singular: string, pluralForm = `${singular}s`): string {
  return `${formatCount(count)} ${Math.round(count) === 1 ? singular : pluralForm}`;
}

/** A moment for people: UTC, to the second, with its zone said (runs are compared across machines). */
export function formatTime(at: Date | string | number): string {
  const date = at instanceof Date ? at : new Date(at);
  if (Number.isNaN(date.getTime())) return String(at);
  return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** The time of day of a moment, UTC, with its zone (for "paused by alice at 08:30:12 UTC"). */
export function formatClock(at: Date | number = Date.now()): string {
  return `${new Date(at).toISOString().slice(11, 19)} UTC`;
}

export interface TableStyle {
  bold: (s: string) => string;
  dim: (s: string) => string;
}

/** Text columns are not narrowed below this (their header, if longer); below that the table turns into key: value lines. */
const MIN_TEXT_COLUMN = 10;

/**
 * A plain-text table with right-aligned numbers; `header` rows are bold when colour is on. With `width` (a
 * terminal's), a table that would not fit wraps its widest text columns, and one that still would not becomes
 * `key: value` lines, one block per row. Without it (a pipe), every record stays on one line.
 */
export function renderTable(header: string[], rows: (string | number)[][], style: TableStyle, width?: number): string {
  const cells = [header, ...rows.map((row) => row.map(String))];
  const natural = header.map((_, column) => Math.max(...cells.map((row) => visibleLength(row[column] ?? ''))));
  const numeric = header.map((_, column) => rows.length > 0 && rows.every((row) => typeof row[column] === 'number' || /^[-$]?[0-9][0-9,.]*( [KMGT]?i?B|%)?$/.test(String(row[column]))));
  const widths = width === undefined ? natural : fitWidths(header, cells.slice(1), natural, numeric, width);
  if (!widths) return renderRecords(header, cells.slice(1), style, width!);
  const line = (row: string[]) => {
    const wrapped = row.map((cell, column) => (visibleLength(cell) > widths[column] ? wrapText(stripAnsi(cell), widths[column]) : [cell]));
    const height = Math.max(...wrapped.map((lines) => lines.length));
    return Array.from({ length: height }, (_, index) =>
      wrapped
        .map((lines, column) => {
          const cell = lines[index] ?? '';
          const pad = widths[column] + cell.length - visibleLength(cell);
          return numeric[column] ? cell.padStart(pad) : cell.padEnd(pad);
        })
        .join('  ')
        .trimEnd(),
    ).join('\n');
  };
  return [style.bold(line(header)), style.dim(widths.map((w) => '─'.repeat(w)).join('  ')), ...cells.slice(1).map(line)].join('\n');
}

/**
 * Column widths that fit `width`: first the headers of number columns wrap (their numbers never do), then the
 * widest text column narrows, never below its header's longest word or MIN_TEXT_COLUMN. Undefined when
 * nothing fits.
 */
function fitWidths(header: string[], rows: string[][], natural: number[], numeric: boolean[], width: number): number[] | undefined {
  const widths = [...natural];
  const total = () => widths.reduce((sum, w) => sum + w, 0) + 2 * (widths.length - 1);
  const headerWord = (column: number) => Math.max(...header[column].split(' ').map((word) => word.length));
  const longestCell = (column: number) => Math.max(0, ...rows.map((row) => visibleLength(row[column] ?? '')));
  for (let column = 0; column < widths.length && total() > width; column++) {
    if (numeric[column]) widths[column] = Math.max(longestCell(column), headerWord(column), widths[column] - (total() - width));
  }
  const floor = (column: number) => (numeric[column] ? widths[column] : Math.min(natural[column], Math.max(MIN_TEXT_COLUMN, headerWord(column))));
  // One character at a time from the widest text column: long columns give up room evenly.
  while (total() > width) {
    let widest = -1;
    for (let column = 0; column < widths.length; column++) if (!numeric[column] && widths[column] > floor(column) && (widest < 0 || widths[column] > widths[widest])) widest = column;
    if (widest < 0) return undefined;
    widths[widest]--;
  }
  return widths;
}

/** One block per row, `header: value`, values wrapped under themselves: for a terminal too narrow for the table. */
function renderRecords(header: string[], rows: string[][], style: TableStyle, width: number): string {
  const label = Math.max(...header.map((h) => h.length));
  const valueWidth = Math.max(10, width - label - 2);
  return rows
    .map((row) =>
      row
        .map((cell, column) => {
          const name = header[column] ? `${header[column]}:` : '';
          const lines = visibleLength(cell) > valueWidth ? wrapText(stripAnsi(cell), valueWidth) : [cell];
          return lines.map((text, index) => `${index === 0 ? style.bold(name.padEnd(label + 1)) : ' '.repeat(label + 1)} ${text}`.trimEnd()).join('\n');
        })
        .join('\n'),
    )
    .join(`\n${style.dim('─'.repeat(Math.min(width, 40)))}\n`);
}

/**
 * Prose for a terminal: each line longer than `width` breaks at spaces, its continuation indented as the line
 * is. Colour codes count for nothing (a colour set on one line carries over the break).
 */
export function wrapProse(text: string, width: number): string {
  return text
    .split('\n')
    .map((line) => {
      if (visibleLength(line) <= width) return line;
      const indent = /^\s*/.exec(stripAnsi(line))![0];
      // A command in backticks is one word: it is never broken where a paste would run half of it.
      const words = line
        .trimStart()
        .replace(/`[^`]*`/g, (quoted) => quoted.replace(/ /g, '\u0000'))
        .split(' ')
        .map((word) => word.replace(/\u0000/g, ' '));
      return packLines(words, width, { separator: ' ', first: indent, indent }).join('\n');
    })
    .join('\n');
}

/** Pieces joined by `separator` onto lines no wider than `width` (a piece wider than that has a line of its own). */
export function packLines(pieces: string[], width: number, options: { separator: string; first?: string; indent: string }): string[] {
  const lines: string[] = [];
  let current = '';
  for (const piece of pieces) {
    const next = current ? `${current}${options.separator}${piece}` : `${lines.length ? options.indent : (options.first ?? '')}${piece}`;
    if (current && visibleLength(next) > width) {
      lines.push(current);
      current = `${options.indent}${piece}`;
    } else current = next;
  }
  lines.push(current);
  return lines;
}

/** Words onto lines of at most `width` characters; a word longer than that is cut. */
export function wrapText(text: string, width: number): string[] {
  const lines: string[] = [];
  let current = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    let rest = word;
    while (rest.length > width) {
      if (current) lines.push(current);
      current = '';
      lines.push(rest.slice(0, width));
      rest = rest.slice(width);
    }
    if (!current) current = rest;
    else if (current.length + 1 + rest.length <= width) current += ` ${rest}`;
    else {
      lines.push(current);
      current = rest;
    }
  }
  if (current || !lines.length) lines.push(current);
  return lines;
}

export function renderMarkdownTable(header: string[], rows: (string | number)[][]): string {
  const escape = (cell: string | number) => String(cell).replace(/\|/g, '\\|');
  return [`| ${header.map(escape).join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((row) => `| ${row.map(escape).join(' | ')} |`)].join('\n');
}

export function stripAnsi(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[[0-9;]*m/g, '');
}

export function visibleLength(text: string): number {
  return stripAnsi(text).length;
}

/** An ETA as the progress line and `status` write it: "-" when there is no rate to go by. */
export function formatEta(seconds: number | null): string {
  return seconds === null ? '-' : formatDuration(seconds * 1000);
}
