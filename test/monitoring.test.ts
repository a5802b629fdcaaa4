import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { spawnWithMetrics } from './support/cli.ts';
import { insertApp, insertFile, text } from './support/seed.ts';
import { S3Proxy } from './support/http-proxy.ts';

/** Prometheus text format: `name{labels} value` lines (comments skipped), as a scraper reads them. */
function parseMetrics(body: string): { name: string; labels: Record<string, string>; value: number }[] {
  return body
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!match) throw new Error(`not Prometheus text format: ${line}`);
      const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
      return { name: match[1], labels, value: Number(match[3]) };
    });
}

describe.skipIf(ON_PGLITE)('monitoring: --log-format json and --metrics-port', () => {
  let env: TestEnv;
  let proxy: S3Proxy;
  const SECRET = 'hunter2-database-password';

  beforeAll(async () => {
    env = await createTestEnv();
    proxy = await new S3Proxy(env.s3.port, env.s3.bucket).start();
  });
  afterAll(async () => {
    await proxy?.stop();
    await env?.close();
  });

  it('a run tells its log pipeline and Prometheus what it does, with its run id and worker, and no secret', async () => {
    const app = await insertApp(env.db, 'monitored');
    for (let i = 0; i < 60; i++) await insertFile(env.db, app, `src/m${i}.ts`, text(2000 + i, `m${i} `));
    proxy.latencyMs = 40;
    proxy.inject((r) => r.method === 'PUT' && r.key.endsWith('/src/m7.ts'), { kind: 'status', status: 500 }, 1000);
    const url = new URL(env.cliEnv.DATABASE_URL!);
    url.password = SECRET;
    const started = await spawnWithMetrics(
      ['migrate', '--yes', '--app', app, '--tables', 'files', '--batch-size', '5', '--concurrency', '4', '--max-rate', '15', '--max-attempts', '2', '--log-format', 'json', '--metrics-port', '0'],
      { ...env.cliEnv, R2_ENDPOINT: proxy.endpoint, DATABASE_URL: url.toString() },
    );
    const { exited, port } = started;
    expect(port, started.stderr()).toBeDefined();
    // scrape while the run goes on, until it has moved rows
    let scraped: ReturnType<typeof parseMetrics> = [];
    let raw = '';
    for (let waited = 0; waited < 60_000; waited += 200) {
      raw = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      scraped = parseMetrics(raw);
      if ((scraped.find((m) => m.name === 'overskill_storage_rows_done_total' && m.labels.table === 'app_files')?.value ?? 0) >= 10) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const metric = (name: string, labels: Record<string, string> = {}) => scraped.find((m) => m.name === name && Object.entries(labels).every(([k, v]) => m.labels[k] === v));
    expect(metric('overskill_storage_rows_done_total', { table: 'app_files' })!.value).toBeGreaterThanOrEqual(10);
    expect(metric('overskill_storage_bytes_done_total', { table: 'app_files' })!.value).toBeGreaterThan(20_000);
    expect(metric('overskill_storage_s3_requests_in_flight')).toBeDefined();
    expect(metric('overskill_storage_http_pool_queue_wait_seconds_total')).toBeDefined();
    expect(metric('overskill_storage_s3_request_duration_seconds_count')!.value).toBeGreaterThan(10);
    expect(metric('overskill_storage_s3_request_duration_seconds_bucket', { le: '0.025' })!.value).toBeLessThan(metric('overskill_storage_s3_request_duration_seconds_bucket', { le: '+Inf' })!.value);
    const running = ['running', 'waiting'].map((state) => metric('overskill_storage_run_state', { state })!.value);
    expect(running.reduce((a, b) => a + b)).toBe(1);
    expect(raw).not.toContain(SECRET);
    expect(raw).not.toContain(env.s3.secretAccessKey);

    expect(await exited).toBe(1);
    const stderr = started.stderr();
    const lines = stderr.trim().split('\n');
    const events = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const event of events) {
      expect(typeof event.time).toBe('string');
      expect(['info', 'warn', 'error']).toContain(event.level);
    }
    const runEvents = events.filter((e) => e.event !== 'log');
    const runId = runEvents.find((e) => e.event === 'run.started')!.runId;
    expect(runId).toMatch(/^\d+$/);
    for (const event of runEvents) {
      expect(event.runId, JSON.stringify(event)).toBe(runId);
      expect(event.worker, JSON.stringify(event)).toMatch(/^\d+$/);
    }
    const batches = runEvents.filter((e) => e.event === 'batch.done');
    expect(batches.reduce((sum, e) => sum + (e.flipped as number), 0)).toBe(59);
    expect(batches[0]).toMatchObject({ table: 'app_files', claimed: expect.any(Number), flipped: expect.any(Number), bytes: expect.any(Number), failed: expect.any(Number), ms: expect.any(Number) });
    const failed = runEvents.filter((e) => e.event === 'item.failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ table: 'app_files', path: 'src/m7.ts', errorClass: expect.any(String), level: 'error' });
    expect(runEvents.some((e) => e.event === 'wait' && typeof e.reason === 'string' && /--max-rate 15/.test(e.reason))).toBe(true);
    expect(runEvents.at(-1)).toMatchObject({ event: 'run.ended', state: 'done', rows: 59, failed: 1 });
    expect(stderr).not.toContain(SECRET);
    expect(stderr).not.toContain(env.s3.secretAccessKey);
  }, 120_000);
});
