import { describe, expect, it } from 'vitest';
import { PassThrough, Readable } from 'node:stream';
import { etaText, progressReporter } from '../commands/support/render/progress.ts';
import { Output } from '../commands/support/render/output.ts';

describe('progress', () => {
  it('ETA comes from the rate so far, and says "-" where there is nothing to go by', () => {
    expect(etaText(0, 0, 1)).toBe('-');
    expect(etaText(100, 0, 5)).toBe('-');
    expect(etaText(100, 50, 10)).toBe('10.0 s');
    expect(etaText(100, 100, 10)).toBe('0 ms');
  });

  it('a bar over zero rows never prints a nonsense ETA', () => {
    const stderr = new PassThrough() as PassThrough & { isTTY?: boolean };
    stderr.isTTY = true;
    let text = '';
    stderr.on('data', (chunk) => (text += chunk));
    const output = new Output({ stdout: new PassThrough(), stderr, stdin: Readable.from([]), env: { NO_COLOR: '1' } }, { json: false });
    const reporter = progressReporter(output);
    reporter.stage?.('migrate', { items: 0, bytes: 0 });
    reporter.stageDone?.('migrate');
    // eslint-disable-next-line no-control-regex
    const plain = text.replace(/\u001b\[[0-9;?]*[A-Za-z]|\u001b[0-9]/g, '');
    expect(plain).toContain('ETA -');
    expect(plain).not.toMatch(/NF|NaN|Infinity/);
  });
});
