/** report on a table of `--report-rows` rows, and its HTML page written by the CLI and drawn by headless chromium. */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { query, type Db } from '../../src/db.ts';
import type { BenchStore } from '../fixture.ts';
import { runWorker, timeNode } from '../processes.ts';
import { seedFiles } from '../seed.ts';

/** Loads the page in headless chromium (network blocked): ms from navigation until every chart is drawn. */
async function renderInBrowser(file: string): Promise<number | undefined> {
  if (!existsSync('/usr/bin/chromium')) return undefined;
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  try {
    const page = await browser.newPage();
    await page.route('**/*', (route) => (route.request().url().startsWith('file:') ? route.continue() : route.abort()));
    const started = Date.now();
    await page.goto(`file://${file}`);
    await page.waitForSelector('body[data-rendered="true"]');
    return Date.now() - started;
  } finally {
    await browser.close();
  }
}

/** Replaces the table's rows with `rows` new ones. */
export async function measureLargeReport(db: Db, url: string, s3: BenchStore, rows: number): Promise<{ reportLarge: Record<string, unknown>; reportHtml: Record<string, unknown> }> {
  await query(db, 'DELETE FROM app_files');
  console.log(`Seeding ${rows} rows for report…`);
  await seedFiles(db, { count: rows, largePercent: 0 });
  await query(db, 'ANALYZE app_files');
  const big = await runWorker('report', url, s3.endpoint, s3.bucket, 1);
  console.log(`report             ${big.seconds.toFixed(3)} s on ${rows} rows (target < 2 s at 1,000,000)`);
  const page = join(mkdtempSync(join(tmpdir(), 'overskill-html-')), 'report.html');
  const reportEnv = { ...process.env, DATABASE_URL: url, NO_COLOR: '1' };
  const written = await timeNode(['bin/overskill-storage.js', 'report', '--format', 'html', '--out', page], reportEnv);
  const drawn = await renderInBrowser(page);
  console.log(
    `report --format html on ${rows} rows: written in ${written.seconds.toFixed(2)} s; ${drawn ? `loaded and drawn by headless chromium in ${drawn.toFixed(0)} ms, ${(written.seconds + drawn / 1000).toFixed(2)} s in all` : 'no /usr/bin/chromium to draw it'} (target < 2 s)`,
  );
  return { reportLarge: { rows, seconds: big.seconds }, reportHtml: { rows, writeSeconds: written.seconds, drawMs: drawn } };
}
