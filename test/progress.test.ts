import { describe, expect, it } from 'vitest';
import { PassThrough, Readable } from 'node:stream';
import { etaText, progressLine, progressReporter } from '../commands/support/render/progress.ts';
import { Output } from '../commands/support/render/output.ts';
import { plural, renderTable, wrapProse } from '../commands/support/render/format.ts';

// eslint-disable-next-line no-control-regex
const plain = (text: string) => text.replace(/\u001b\[[0-9;?]*[A-Za-z]|\u001b[0-9]/g, '');

describe('progress', () => {
  it('ETA comes from the rate so far, and says "-" where there is nothing to go by', () => {
    expect(etaText(0, 0, 1)).toBe('-');
    expect(etaText(100, 0, 5)).toBe('-');
    expect(etaText(100, 50, 10)).toBe('10.0 s');
    expect(etaText(100, 100, 10)).toBe('0 ms');
  });

  it('one line fits any width, dropping bytes, then the rate, before the count and ETA', () => {
    const line = { stage: 'migrate version-files', done: 1234, total: 6732, bytes: 5 * 1024 * 1024, rate: 410, bytesRate: 1, note: 'waits: --max-rate 20/s' };
    const wide = progressLine(line, 140);
    expect(wide).toMatch(/^migrate version-files \[█+░+\] 18% · 1,234\/6,732 rows · 5.00 MiB · 410 rows\/s · ETA 13.4 s · waits: --max-rate 20\/s$/);
    for (const width of [100, 80, 60, 40]) {
      const text = progressLine(line, width);
      expect(text.length, text).toBeLessThan(width);
      expect(text, text).toMatch(/1,234\/6,732 rows/);
    }
    expect(progressLine(line, 80)).toMatch(/ETA 13.4 s/);
    // Held: the reason stands where the rate and ETA were; finished: no "ETA 0 ms".
    expect(progressLine({ ...line, note: undefined, holding: 'paused (paused by alice@host)' }, 80)).toMatch(/1,234\/6,732 rows · (5.00 MiB · )?paused \(paused by alice@host\)$/);
    expect(progressLine({ ...line, done: 6732 }, 140)).not.toMatch(/ETA/);
    // No total known (a listing): the count alone, no bar, no percentage.
    expect(progressLine({ ...line, total: 0, done: 10 }, 80)).toMatch(/^migrate version-files 10 rows/);
  });

  it('an empty stage never prints a nonsense ETA, and the display is one line across stages', async () => {
    const drawn = () => new Promise((resolve) => setTimeout(resolve, 300));
    const stderr = new PassThrough() as PassThrough & { isTTY?: boolean; columns?: number };
    stderr.isTTY = true;
    stderr.columns = 80;
    let text = '';
    stderr.on('data', (chunk) => (text += chunk));
    const output = new Output({ stdout: new PassThrough(), stderr, stdin: Readable.from([]), env: { NO_COLOR: '1' } }, { json: false });
    const reporter = progressReporter(output, { 'migrate files': { items: 3, bytes: 30 }, 'migrate snapshots': { items: 2, bytes: 20 } });
    reporter.stage?.('migrate files');
    reporter.advance?.(3, 30);
    await drawn();
    reporter.stageDone?.('migrate files');
    reporter.stage?.('migrate snapshots');
    reporter.advance?.(1, 10);
    await drawn();
    reporter.stop();
    const shown = plain(text);
    expect(shown).toMatch(/3\/5 rows/);
    expect(shown).toMatch(/4\/5 rows/);
    expect(shown).not.toMatch(/NF|NaN|Infinity|\/3 rows|\/2 rows/);
  });
});

describe('terminal text', () => {
  const style = { bold: (s: string) => s, dim: (s: string) => s };
  it('a table narrows its text columns to the width, then turns into key: value lines; without a width it stays whole', () => {
    const header = ['table', 'rows taken', 'message'];
    const rows = [['version-files', '1,234', 'the object is missing and the database holds no copy: content is lost unless restored from a backup']];
    expect(renderTable(header, rows, style).split('\n')[2]).toBe(`version-files       1,234  ${rows[0][2]}`);
    const fitted = renderTable(header, rows, style, 60).split('\n');
    expect(Math.max(...fitted.map((line) => line.length))).toBeLessThanOrEqual(60);
    expect(fitted.join('\n')).toMatch(/^version-files +1,234 +the object/m);
    const narrow = renderTable(header, rows, style, 26);
    expect(narrow).toMatch(/^table: +version-files$/m);
    expect(narrow).toMatch(/^rows taken: 1,234$/m);
    expect(Math.max(...narrow.split('\n').map((line) => line.length))).toBeLessThanOrEqual(26);
  });

  it('prose breaks at spaces, never inside a command in backticks', () => {
    const wrapped = wrapProse('Run 12 paused at 08:30:12 UTC; to go on: `overskill-storage resume 12`, to stop: `overskill-storage cancel 12`.', 40).split('\n');
    expect(wrapped.every((line) => line.length <= 40 || /`overskill-storage \w+ 12`/.test(line))).toBe(true);
    expect(wrapped.join('\n')).toMatch(/`overskill-storage resume 12`/);
    expect(plural(1, 'row')).toBe('1 row');
    expect(plural(2, 'row')).toBe('2 rows');
    expect(plural(1204, 'object')).toBe('1,204 objects');
  });
});
