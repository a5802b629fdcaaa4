import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { insertApp, insertFile, insertVersion, insertVersionFile, text } from './support/seed.ts';
import { renderReportHtml } from '../commands/support/render/report-html.ts';

/**
 * The HTML report in a real browser (Debian's chromium, driven by playwright-core), with every network
 * request blocked: it must draw every chart from the numbers `report --json` prints, log no error, ask for
 * nothing, and cope with an empty database and an enormous table. Screenshots go to test-results/.
 * CI installs chromium and sets REQUIRE_BROWSER=1, so there a missing browser fails instead of skipping.
 */
const CHROMIUM = '/usr/bin/chromium';
const HAVE_BROWSER = existsSync(CHROMIUM);
if (!HAVE_BROWSER && process.env.REQUIRE_BROWSER === '1') throw new Error(`REQUIRE_BROWSER=1 but ${CHROMIUM} is missing (apt-get install -y chromium)`);
if (!HAVE_BROWSER) console.warn(`report-html: ${CHROMIUM} is not installed, so the browser checks do not run here (apt-get install -y chromium).`);

const SHOTS = join(import.meta.dirname, '..', 'test-results');

interface PageCheck {
  errors: string[];
  requests: string[];
  charts: Record<string, { datasets: number; labels: number; painted: boolean }>;
  facts: Record<string, number>;
  embedded: any;
  renderMs: number;
}

async function open(browser: Browser, file: string, scheme: 'light' | 'dark' = 'light', shot?: string): Promise<PageCheck & { page: Page }> {
  const context = await browser.newContext({ colorScheme: scheme, viewport: { width: 1200, height: 900 } });
  const errors: string[] = [];
  const requests: string[] = [];
  // the network is blocked: anything but the file itself is aborted, and recorded
  await context.route('**/*', (route) => (route.request().url().startsWith('file:') ? route.continue() : (requests.push(route.request().url()), route.abort())));
  const page = await context.newPage();
  page.on('console', (message) => message.type() === 'error' && errors.push(message.text()));
  page.on('pageerror', (error) => errors.push(String(error)));
  page.on('requestfailed', (request) => errors.push(`request failed: ${request.url()}`));
  await page.goto(pathToFileURL(file).href);
  await page.waitForSelector('body[data-rendered="true"]', { timeout: 10_000 });
  const state = await page.evaluate(() => {
    const charts: Record<string, { datasets: number; labels: number; painted: boolean }> = {};
    const all = (window as any).__charts as Record<string, any>;
    for (const [name, chart] of Object.entries(all)) {
      const canvas = chart.canvas as HTMLCanvasElement;
      const pixels = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
      let painted = false;
      for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) { painted = true; break; }
      charts[name] = { datasets: chart.data.datasets.length, labels: chart.data.labels.length, painted };
    }
    const facts: Record<string, number> = {};
    document.querySelectorAll<HTMLElement>('[data-field]').forEach((element) => (facts[element.dataset.field!] = Number(element.dataset.value)));
    return { charts, facts, embedded: JSON.parse(document.getElementById('report-data')!.textContent!), renderMs: (window as any).__renderMs as number };
  });
  if (shot) {
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, shot), fullPage: true });
  }
  return { ...state, errors, requests, page };
}

const pick = (document: any, path: string) => path.split('.').reduce((value, part) => value?.[part], document);

describe.skipIf(!HAVE_BROWSER)('report --format html, in a real browser', () => {
  let env: TestEnv;
  let empty: TestEnv;
  let browser: Browser;
  let dir: string;

  beforeAll(async () => {
    [env, empty] = await Promise.all([createTestEnv(), createTestEnv()]);
    dir = mkdtempSync(join(tmpdir(), 'oss-html-'));
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
    for (let a = 0; a < 3; a++) {
      const app = await insertApp(env.db, `app ${a}`);
      const version = await insertVersion(env.db, app, '1.0.0', JSON.stringify({ 'a.ts': text(4000, 'snap') }));
      for (let i = 0; i < 40; i++) {
        const id = await insertFile(env.db, app, `src/f${i}.ts`, text(Math.round(60 * 1.25 ** i), `${a}/${i} `));
        if (i % 5 === 0) await insertVersionFile(env.db, version, id, 'created', text(3000 + i * 100, 'v'));
      }
    }
    for (const args of [['migrate', '--yes'], ['finalize', '--yes', '--app', '1']]) expect((await cli(args, env.cliEnv)).code).toBe(0);
  });
  afterAll(async () => {
    await browser?.close();
    rmSync(dir, { recursive: true, force: true });
    await Promise.all([env?.close(), empty?.close()]);
  });

  it('draws every chart, offline and without errors, with the numbers report --json prints', async () => {
    const file = join(dir, 'report.html');
    expect((await cli(['report', '--format', 'html', '--out', file], env.cliEnv)).code).toBe(0);
    const json = (await cli(['report', '--json'], env.cliEnv)).json();
    const page = await open(browser, file, 'light', 'report-light.png');
    expect(page.errors).toEqual([]);
    expect(page.requests).toEqual([]);
    expect(page.charts.bytes).toEqual({ datasets: 3, labels: 6, painted: true }); // database / hybrid / r2; before and now per table
    expect(page.charts.sizes.datasets).toBe(3); // one series per table
    expect(page.charts.sizes.labels).toBeGreaterThan(8);
    expect(page.charts.sizes.painted).toBe(true);
    expect(page.charts.disk).toEqual({ datasets: 3, labels: 3, painted: true }); // heap / TOAST / indexes per table
    expect(page.charts.cost).toEqual({ datasets: 2, labels: 2, painted: true }); // database / R2, now and after finalize
    // the runs that made this database what it is: migrate and finalize, each a line of rows done per minute
    expect(page.charts.runs).toMatchObject({ datasets: 2, painted: true });
    expect(json.runs.runs.map((run: { command: string; state: string }) => `${run.command} ${run.state}`)).toEqual(['finalize succeeded', 'migrate succeeded']);
    expect(await page.page.locator('#runs table tbody tr').count()).toBe(2);
    // the totals shown are report --json's, and the page embeds that same document
    expect(Object.keys(page.facts).length).toBeGreaterThan(5);
    for (const [field, value] of Object.entries(page.facts)) expect(value, field).toBe(pick(json, field));
    for (const key of ['schemaVersion', 'command', 'tables', 'totals', 'monthly', 'sizes', 'policy', 'prices', 'cost', 'runs']) expect(page.embedded[key], key).toEqual(json[key]);
    expect(json.monthly.afterFinalize.database).toBeLessThan(json.monthly.now.database + 1e-12);
    await page.page.context().close();
  });

  it("the demo's own report: every chart drawn with the numbers of the demo's report --json step", async () => {
    const file = join(dir, 'demo-report.html');
    const demo = await cli(['demo', '--apps', '4', '--files', '15', '--large-files', '1', '--report', file, '--json'], { PATH: process.env.PATH, NO_COLOR: '1' }, { cwd: dir });
    expect(demo.code, demo.stderr).toBe(0);
    const document = demo.json();
    expect(document.report).toBe(file);
    // the demo rewrites app_files and measures it against the baseline, whatever it comes to
    expect(demo.stderr).toMatch(/app_files is -?\d+\.\d% smaller than before anything moved \(.+ → .+; the plan's target: 70-80%\)/);
    const step = document.steps.find((s: { command: string }) => s.command.startsWith('overskill-storage report --format html'));
    const json = step.result;
    const page = await open(browser, file, 'light', 'report-demo.png');
    expect(page.errors).toEqual([]);
    expect(page.requests).toEqual([]);
    expect(Object.values(page.charts).every((chart) => chart.painted)).toBe(true);
    expect(page.charts.bytes.datasets).toBe(3);
    expect(page.charts.sizes.datasets).toBe(3);
    for (const [field, value] of Object.entries(page.facts)) expect(value, field).toBe(pick(json, field));
    expect(page.embedded).toEqual(json);
    await page.page.context().close();
  });

  it('reads in a dark scheme and prints with every table open', async () => {
    const file = join(dir, 'report.html');
    const dark = await open(browser, file, 'dark', 'report-dark.png');
    expect(dark.errors).toEqual([]);
    const background = await dark.page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    expect(background).not.toBe('rgb(255, 255, 255)');
    await dark.page.emulateMedia({ media: 'print', colorScheme: 'light' });
    const hiddenTables = await dark.page.evaluate(() => [...document.querySelectorAll('details table')].filter((table) => (table as HTMLElement).offsetHeight === 0).length);
    expect(hiddenTables).toBe(0);
    // every chart has a text alternative
    expect(await dark.page.evaluate(() => [...document.querySelectorAll('canvas')].every((canvas) => canvas.getAttribute('role') === 'img' && canvas.getAttribute('aria-label')))).toBe(true);
    await dark.page.context().close();
  });

  it('renders an empty database and one enormous table', async () => {
    const file = join(dir, 'empty.html');
    expect((await cli(['report', '--format', 'html', '--out', file], empty.cliEnv)).code).toBe(0);
    const page = await open(browser, file, 'light', 'report-empty.png');
    expect(page.errors).toEqual([]);
    expect(page.facts['totals.rows']).toBe(0);
    expect(Object.values(page.charts).every((chart) => chart.painted)).toBe(true);
    expect(page.charts.runs).toBeUndefined();
    expect(await page.page.locator('#runs').textContent()).toMatch(/No runs recorded/);
    await page.page.context().close();

    const json = (await cli(['report', '--json'], env.cliEnv)).json();
    const huge = structuredClone(json);
    const files = huge.tables[0];
    files.rows = 2e9;
    files.contentBytes = 3e15;
    files.locations = [{ location: 'database', rows: 1e9, dbBytes: 1e15, r2Bytes: 0 }, { location: 'r2', rows: 1e9, dbBytes: 0, r2Bytes: 2e15 }];
    huge.totals.rows = 2e9;
    huge.sizes.push({ table: 'files', bucket: 40, rows: 1e9, bytes: 2e15 });
    huge.disk[0] = { table: 'files', heapBytes: 4e14, toastBytes: 9e14, indexBytes: 1e14, totalBytes: 1.4e15 };
    const hugeFile = join(dir, 'huge.html');
    writeFileSync(hugeFile, renderReportHtml(huge));
    const big = await open(browser, hugeFile, 'light', 'report-huge.png');
    expect(big.errors).toEqual([]);
    expect(big.facts['totals.rows']).toBe(2e9);
    expect(big.charts.sizes.labels).toBeGreaterThan(30);
    expect(Object.values(big.charts).every((chart) => chart.painted)).toBe(true);
    await big.page.context().close();
  });

  // Last: it adds maintain runs to this database's history.
  it("draws the nightly job's history: bytes by location, the tables on disk and the monthly cost per day", async () => {
    for (let day = 0; day < 3; day++) expect((await cli(['maintain', '--yes', '--grace', '0s'], env.cliEnv)).code).toBe(0);
    const file = join(dir, 'history.html');
    expect((await cli(['report', '--format', 'html', '--out', file], env.cliEnv)).code).toBe(0);
    const json = (await cli(['report', '--json'], env.cliEnv)).json();
    expect(json.history).toHaveLength(3);
    const page = await open(browser, file, 'light', 'report-history.png');
    expect(page.errors).toEqual([]);
    expect(page.charts.history).toEqual({ datasets: 4, labels: 3, painted: true }); // database only / hybrid / R2 only / tables on disk
    expect(page.charts.historyCost).toEqual({ datasets: 3, labels: 3, painted: true }); // database / R2 / total
    expect(await page.page.locator('#history table tbody tr').count()).toBe(3);
    expect(page.embedded.history).toEqual(json.history);
    await page.page.context().close();
  }, 120_000);
});
