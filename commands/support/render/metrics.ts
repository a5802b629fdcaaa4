import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ObjectStore } from '../../../src/object-store.ts';
import type { RunEvent } from '../../../src/reporter.ts';

/** The states a run's worker can be in, one gauge series each (1 for the current one). */
const RUN_STATES = ['starting', 'running', 'waiting', 'done', 'failed', 'interrupted', 'cancelled'] as const;

/**
 * Prometheus metrics of one process's run, through the standard client library, served at /metrics on
 * `--metrics-port`. Labels are tables, error classes and states only: never a URL, key, path or credential.
 */
export class RunMetrics {
  readonly registry = new Registry();
  private readonly rows = new Counter({ name: 'overskill_storage_rows_done_total', help: 'Rows moved (flipped) by this process', labelNames: ['table'], registers: [this.registry] });
  private readonly bytes = new Counter({ name: 'overskill_storage_bytes_done_total', help: 'Content bytes moved by this process', labelNames: ['table'], registers: [this.registry] });
  private readonly failed = new Counter({ name: 'overskill_storage_items_failed_total', help: 'Items that failed', labelNames: ['table', 'error_class'], registers: [this.registry] });
  private readonly refused = new Counter({ name: 'overskill_storage_items_refused_total', help: 'Items refused (left as they were, for a reason)', labelNames: ['table', 'error_class'], registers: [this.registry] });
  private readonly batches = new Counter({ name: 'overskill_storage_batches_total', help: 'Batches claimed, worked and flipped', labelNames: ['table'], registers: [this.registry] });
  private readonly state = new Gauge({ name: 'overskill_storage_run_state', help: "1 for this process's current run state", labelNames: ['state'], registers: [this.registry] });
  private readonly waiting = new Gauge({ name: 'overskill_storage_waiting', help: '1 while the run waits (database load, --max-rate, pause)', registers: [this.registry] });
  private readonly latency = new Histogram({
    name: 'overskill_storage_s3_request_duration_seconds',
    help: 'S3 request attempts, from the wait for a socket to the last body byte',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  private unlisten?: () => void;

  constructor(private readonly store?: ObjectStore) {
    collectDefaultMetrics({ register: this.registry, prefix: 'overskill_storage_process_' });
    const transport = () => store?.transportStats();
    new Gauge({ name: 'overskill_storage_s3_requests_in_flight', help: 'S3 requests in flight now', registers: [this.registry], collect() { this.set(transport()?.inFlight ?? 0); } });
    new Gauge({ name: 'overskill_storage_s3_requests_total', help: 'S3 request attempts sent', registers: [this.registry], collect() { this.set(transport()?.requests ?? 0); } });
    new Gauge({ name: 'overskill_storage_s3_requests_timed_out_total', help: 'S3 request attempts ended by their deadline', registers: [this.registry], collect() { this.set(transport()?.timedOut ?? 0); } });
    new Gauge({ name: 'overskill_storage_http_pool_queued_total', help: 'S3 requests that waited for a socket of the pool', registers: [this.registry], collect() { this.set(transport()?.queued ?? 0); } });
    new Gauge({ name: 'overskill_storage_http_pool_queue_wait_seconds_total', help: 'Time S3 requests waited for a socket of the pool', registers: [this.registry], collect() { this.set((transport()?.queueWaitMs.total ?? 0) / 1000); } });
    new Gauge({ name: 'overskill_storage_http_pool_queue_wait_seconds_max', help: 'Longest wait of one S3 request for a socket of the pool', registers: [this.registry], collect() { this.set((transport()?.queueWaitMs.max ?? 0) / 1000); } });
    const pace = () => store?.paceSnapshot();
    const lanes = ['write', 'read'] as const;
    new Gauge({ name: 'overskill_storage_bucket_pace_per_second', help: "Requests per second this process allows itself towards the bucket, by lane; 0 while the bucket has not throttled it (unpaced)", labelNames: ['lane'], registers: [this.registry], collect() { for (const lane of lanes) this.set({ lane }, pace()?.[lane].ratePerSecond ?? 0); } });
    new Gauge({ name: 'overskill_storage_bucket_throttled_total', help: "S3 requests the bucket refused as over its budget (429 not of the per-key rule, 503 SlowDown), by lane", labelNames: ['lane'], registers: [this.registry], collect() { for (const lane of lanes) this.set({ lane }, pace()?.[lane].throttled ?? 0); } });
    new Gauge({ name: 'overskill_storage_bucket_throttled_ratio', help: 'Share of the S3 requests sent that the bucket refused as over its budget, by lane', labelNames: ['lane'], registers: [this.registry], collect() { for (const lane of lanes) this.set({ lane }, pace()?.[lane].throttledShare ?? 0); } });
    new Gauge({ name: 'overskill_storage_bucket_is_limit', help: "1 while the bucket's request budget is what limits this process (it throttled within the last minute)", registers: [this.registry], collect() { const p = pace(); this.set(p && (p.write.bucketLimited || p.read.bucketLimited) ? 1 : 0); } });
    this.unlisten = store?.onLatency((ms) => this.latency.observe(ms / 1000));
    this.setState('starting');
  }

  private setState(current: (typeof RUN_STATES)[number]): void {
    for (const state of RUN_STATES) this.state.set({ state }, state === current ? 1 : 0);
  }

  observe(event: RunEvent): void {
    switch (event.type) {
      case 'run.started':
        this.setState('running');
        break;
      case 'batch.done':
        this.batches.inc({ table: event.table });
        this.rows.inc({ table: event.table }, event.flipped);
        this.bytes.inc({ table: event.table }, event.bytes);
        break;
      case 'item.failed':
        this.failed.inc({ table: event.table, error_class: event.errorClass });
        break;
      case 'item.refused':
        this.refused.inc({ table: event.table, error_class: event.errorClass });
        break;
      case 'wait':
        this.waiting.set(event.reason ? 1 : 0);
        this.setState(event.reason ? 'waiting' : 'running');
        break;
      case 'run.ended':
        this.waiting.set(0);
        this.setState(event.state === 'done' ? 'done' : event.state === 'cancelled' ? 'cancelled' : event.state === 'interrupted' ? 'interrupted' : 'failed');
        break;
    }
  }

  close(): void {
    this.unlisten?.();
  }
}

/** Serves `metrics` at http://127.0.0.1:PORT/metrics (0.0.0.0 with `host`), until closed. */
export async function serveMetrics(metrics: RunMetrics, port: number, host = '0.0.0.0'): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((request, response) => {
    if (request.url?.split('?')[0] !== '/metrics') {
      response.writeHead(404).end('see /metrics\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (error: Error) => response.writeHead(500).end(`${error.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  server.unref();
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/**
 * `maintain`'s figures in Prometheus text format, for node_exporter's textfile collector: written to a
 * temporary file beside `path` and renamed over it, so the collector never reads half a file.
 */
export async function writeMaintainTextfile(path: string, result: import('../../../src/ops/maintain.ts').MaintainResult, durationSeconds: number): Promise<void> {
  const { rename, writeFile } = await import('node:fs/promises');
  const registry = new Registry();
  const gauge = (name: string, help: string, value: number, labels?: Record<string, string>) => {
    const g = new Gauge({ name: `overskill_storage_maintain_${name}`, help, labelNames: labels ? Object.keys(labels) : [], registers: [registry] });
    if (labels) g.set(labels, value);
    else g.set(value);
    return g;
  };
  gauge('last_run_timestamp_seconds', 'When maintain last ended (Unix time)', Date.now() / 1000);
  gauge('duration_seconds', 'How long it took', durationSeconds);
  gauge('success', '1 when it found nothing wrong and was not interrupted', result.problems.length === 0 && !result.interrupted ? 1 : 0);
  gauge('problems', 'Problems found (verify, the deep sample, cleanup)', result.problems.length);
  const checked = new Gauge({ name: 'overskill_storage_maintain_rows_checked', help: 'Stored rows checked against the listings, and deep (downloaded and hashed)', labelNames: ['check'], registers: [registry] });
  checked.set({ check: 'listing' }, Object.values(result.verify.checked).reduce((a, b) => a + b, 0));
  checked.set({ check: 'deep' }, Object.values(result.deepSample.checked).reduce((a, b) => a + b, 0));
  const orphans = new Gauge({ name: 'overskill_storage_maintain_orphans', help: 'Orphaned objects of ours: found past the grace period, removed, inside the grace period', labelNames: ['state'], registers: [registry] });
  orphans.set({ state: 'found' }, result.cleanup.orphans);
  orphans.set({ state: 'removed' }, result.cleanup.deleted + result.cleanup.quarantined);
  orphans.set({ state: 'too_young' }, result.cleanup.tooYoung);
  const bytes = new Gauge({ name: 'overskill_storage_content_bytes', help: 'Content bytes by location', labelNames: ['location'], registers: [registry] });
  for (const [location, value] of Object.entries(result.snapshot.bytesByLocation)) bytes.set({ location }, value);
  gauge('database_disk_bytes', 'The three tables on disk (heap, TOAST, indexes)', result.snapshot.databaseDiskBytes);
  const cost = new Gauge({ name: 'overskill_storage_monthly_cost_dollars', help: 'Monthly storage cost now, at the report prices', labelNames: ['where'], registers: [registry] });
  cost.set({ where: 'database' }, result.snapshot.monthlyCost.database);
  cost.set({ where: 'r2' }, result.snapshot.monthlyCost.r2);
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, await registry.metrics());
  await rename(temporary, path);
}
