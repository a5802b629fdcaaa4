import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { DescribedReport } from './metric-text.ts';
import { formatBytes, formatCount, formatMoney } from './format.ts';
import { DISK_HEADER, METRIC_HEADER, diskRows, metricRows, metricStepLines } from './report-rows.ts';

/**
 * The report as one self-contained HTML page: Chart.js and the drawing code are inlined, the data is the
 * same document `report --json` prints (embedded as JSON), and a Content-Security-Policy forbids every
 * network request. Each chart has its numbers in a table under it, and the page reads without JavaScript.
 */
export function renderReportHtml(document: DescribedReport & { schemaVersion: number; command: string }): string {
  const r = document;
  const fact = (label: string, field: string, value: number, text: string) =>
    `<div class="fact"><dt>${escapeHtml(label)}</dt><dd data-field="${field}" data-value="${value}">${escapeHtml(text)}</dd></div>`;
  const table = (header: string[], rows: (string | number)[][]) =>
    `<table><thead><tr>${header.map((cell) => `<th scope="col">${escapeHtml(cell)}</th>`).join('')}</tr></thead><tbody>${
      rows.length ? rows.map((row) => `<tr>${row.map((cell, i) => (i === 0 ? `<th scope="row">${escapeHtml(String(cell))}</th>` : `<td>${escapeHtml(String(cell))}</td>`)).join('')}</tr>`).join('') : `<tr><td colspan="${header.length}">no rows</td></tr>`
    }</tbody></table>`;
  const section = (id: string, title: string, description: string, chart: string, numbers: string) =>
    `<section id="${id}"><h2>${escapeHtml(title)}</h2><p class="note">${description}</p>${chart}<details><summary>The numbers</summary>${numbers}</details></section>`;
  const canvas = (id: string, label: string) => `<div class="chart"><canvas id="chart-${id}" role="img" aria-label="${escapeHtml(label)}"></canvas></div>`;

  const bytesRows = r.tables.flatMap((t) => [
    [`${t.table}, before`, formatBytes(t.contentBytes), '0 B', '0 B'],
    [`${t.table}, now`, ...['database', 'hybrid', 'r2'].map((location) => formatBytes(bytesAt(t.locations, location)))],
  ]);
  const buckets = [...new Set(r.sizes.map((b) => b.bucket))].sort((a, b) => a - b);
  const sizeRows = buckets.map((bucket) => [bucketLabel(bucket), ...r.tables.map((t) => formatCount(r.sizes.find((b) => b.table === t.table && b.bucket === bucket)?.rows ?? 0))]);
  const diskTable = diskRows(r);
  const metricTable = metricRows(r).map((row, i) => [...row, r.metrics[i].note]);
  const costRows = [
    ['now', formatMoney(r.monthly.now.database), formatMoney(r.monthly.now.r2), formatMoney(r.monthly.now.total)],
    ['after finalize', formatMoney(r.monthly.afterFinalize.database), formatMoney(r.monthly.afterFinalize.r2), formatMoney(r.monthly.afterFinalize.total)],
  ];
  const t = r.totals;

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>OverSkill storage report, ${escapeHtml(r.generatedAt)}</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>OverSkill storage report</h1>
<p class="note">Generated ${escapeHtml(r.generatedAt)} by overskill-storage. Prices: R2 storage $${r.prices.storagePerGbMonth}/GB-month, Class A $${r.prices.classAPerMillion}/million, database storage $${r.prices.databasePerGbMonth}/GB-month. Placement: database below ${formatBytes(r.policy.hybridMin)}, R2 only above ${formatBytes(r.policy.r2Above)} after finalize.</p>
</header>
<section id="totals"><h2>Totals</h2><dl>
${fact('Rows', 'totals.rows', t.rows, formatCount(t.rows))}
${fact('Migration progress', 'totals.progressPercent', t.progressPercent, `${t.progressPercent}%`)}
${fact('Content held in the database (on disk)', 'totals.dbStoredBytes', t.dbStoredBytes, `${formatBytes(t.dbStoredBytes)} (${formatBytes(t.dbBytes)} of content)`)}
${fact('Stored in R2', 'totals.r2Bytes', t.r2Bytes, formatBytes(t.r2Bytes))}
${fact('Database bytes saved (on disk, estimated)', 'totals.dbStoredBytesSaved', t.dbStoredBytesSaved, `≈ ${formatBytes(t.dbStoredBytesSaved)} (${formatBytes(t.dbBytesSaved)} of content)`)}
${fact('Freeable by finalize (on disk)', 'totals.finalizableStoredBytes', t.finalizableStoredBytes, `${formatBytes(t.finalizableStoredBytes)} (${formatBytes(t.finalizableBytes)} of content)`)}
${fact('Still to migrate', 'totals.pendingRows', t.pendingRows, `${formatCount(t.pendingRows)} rows`)}
${fact('Monthly storage cost now', 'monthly.now.total', r.monthly.now.total, formatMoney(r.monthly.now.total))}
</dl></section>
<section id="metrics"><h2>The plan's success metrics</h2><p class="note">Measured by this report against the baseline recorded before anything moved.</p>${table([...METRIC_HEADER, 'how'], metricTable)}${metricStepLines(r).length ? `<ul class="steps">${metricStepLines(r).map((line) => `<li>${escapeHtml(line)}</li>`).join('')}</ul>` : ''}</section>
${section('bytes', 'Bytes by table and storage location, before and now', '"Before" is every content in the database, as before any migration; "now" is where each row\'s content lives today (hybrid rows have it in both places).', canvas('bytes', 'Stacked bars of content bytes per table, before and now, by storage location'), table(['table', 'database', 'hybrid', 'r2'], bytesRows))}
${section('sizes', 'How large the contents are', `Rows per size, on a logarithmic size axis (powers of two). The dashed lines are the placement thresholds: below ${escapeHtml(formatBytes(r.policy.hybridMin))} stays in the database, above ${escapeHtml(formatBytes(r.policy.r2Above))} leaves it at finalize. Moving a threshold moves every bar on the other side of its line.`, canvas('sizes', 'Bars of row counts per content size band, per table, with the thresholds marked'), table(['size', ...r.tables.map((x) => x.table)], sizeRows))}
${section('disk', 'On-disk table sizes', 'What PostgreSQL holds on disk for each table now: the heap, the TOAST table where large contents live (compressed), and the indexes. Space freed by finalize is reused by PostgreSQL after VACUUM and returned to the operating system only by VACUUM FULL or pg_repack.', canvas('disk', 'Stacked bars of heap, TOAST and index bytes per table'), table(DISK_HEADER, diskTable))}
${section('cost', 'Monthly storage cost, now and after finalize', 'The contents\' storage at the prices above: PostgreSQL for what the database holds, R2 for what the bucket holds. Finalize clears the database copies of hybrid rows above the threshold; R2 holds the same bytes before and after.', canvas('cost', 'Stacked bars of monthly database and R2 storage cost, now and after finalize'), table(['when', 'database', 'R2', 'total'], costRows))}
${
    (r.history ?? []).length
      ? section(
          'history',
          'History: bytes and cost, per day',
          'One point per <code>overskill-storage maintain</code> run (the nightly job): content bytes by where they live (the contents\' own bytes), what the database\'s contents take on disk (TOAST compresses the large ones), the three tables on disk, and the monthly storage cost at that day\'s figures and these prices.',
          `${canvas('history', 'Lines of content bytes by location and of the tables on disk, per day')}${canvas('history-cost', 'Lines of monthly storage cost (database, R2, total), per day')}`,
          table(
            ['day', 'database only', 'hybrid', 'R2 only', 'database content on disk', 'tables on disk', 'monthly cost', 'problems'],
            (r.history ?? []).map((point) => [
              new Date(point.takenAt).toISOString().slice(0, 16).replace('T', ' '),
              formatBytes(point.snapshot.bytesByLocation.database),
              formatBytes(point.snapshot.bytesByLocation.hybrid),
              formatBytes(point.snapshot.bytesByLocation.r2),
              point.snapshot.databaseStoredBytes === undefined ? '-' : formatBytes(point.snapshot.databaseStoredBytes),
              formatBytes(point.snapshot.databaseDiskBytes),
              formatMoney(point.snapshot.monthlyCost.total),
              formatCount(point.snapshot.problems),
            ]),
          ),
        )
      : '<section id="history"><h2>History</h2><p class="note">No history yet: each <code>overskill-storage maintain</code> run (the nightly job) keeps the day\'s figures, and this section then draws bytes by location, the database\'s size and the monthly cost per day.</p></section>'
  }
${
    r.runs.runs.length
      ? section(
          'runs',
          'Runs',
          `The last ${r.runs.runs.length === 1 ? 'recorded run' : `${r.runs.runs.length} recorded runs`}: who ran what, and each run's rows done over time (per minute, its workers summed; the time axis starts at each run's start). Details: <code>overskill-storage report --runs</code>.`,
          r.runs.progress.length ? canvas('runs', 'Lines of rows done per minute since each run started') : '',
          table(
            ['run', 'command', 'state', 'operator', 'host', 'started', 'workers', 'rows', 'bytes', 'failed', 'refused'],
            r.runs.runs.map((run) => [run.id, run.command, run.state, run.operator, run.host, new Date(run.started_at).toISOString(), run.workers, formatCount(run.rows_done), formatBytes(run.bytes_done), formatCount(run.failed), formatCount(run.refused)]),
          ),
        )
      : '<section id="runs"><h2>Runs</h2><p class="note">No runs recorded in this database yet: every writing command records one (who ran what, when, how it went), and this section then plots each run\'s progress.</p></section>'
  }
<script type="application/json" id="report-data">${jsonForScript(document)}</script>
<script>${chartJsSource()}</script>
<script>${DRAW}</script>
</body>
</html>
`;
}

function bytesAt(locations: { location: string; dbBytes: number; r2Bytes: number }[], location: string): number {
  const found = locations.find((l) => l.location === location);
  if (!found) return 0;
  return location === 'database' ? found.dbBytes : found.r2Bytes;
}

function bucketLabel(bucket: number): string {
  return `${formatBytes(2 ** bucket)} – ${formatBytes(2 ** (bucket + 1))}`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** JSON inside a script element: "<" escaped so no "</script>" can end it early. */
function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

let chartJs: string | undefined;
function chartJsSource(): string {
  if (chartJs === undefined) {
    const require = createRequire(import.meta.url);
    const file = join(dirname(require.resolve('chart.js')), 'chart.umd.min.js');
    // No source map reference: the page must never ask for anything.
    chartJs = readFileSync(file, 'utf8').replace(/\/\/# sourceMappingURL=.*$/m, '').replace(/<\/script/gi, '<\\/script');
  }
  return chartJs;
}

const STYLE = `
:root { color-scheme: light dark; --fg: #1d232a; --bg: #ffffff; --muted: #56606b; --grid: rgba(0,0,0,0.12); --panel: #f5f7f9;
  --c-database: #3366cc; --c-hybrid: #e08a00; --c-r2: #1a936f; --c-heap: #6b5fb5; --c-toast: #c2456b; --c-index: #7f8c8d;
  --c-t0: #3366cc; --c-t1: #e08a00; --c-t2: #1a936f; --c-threshold: #b00020; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6e9ed; --bg: #15191e; --muted: #a5adb6; --grid: rgba(255,255,255,0.16); --panel: #1e242b;
    --c-database: #7aa2f7; --c-hybrid: #f2b35c; --c-r2: #5fd3a6; --c-heap: #b4a7f5; --c-toast: #f28fad; --c-index: #b9c3c9;
    --c-t0: #7aa2f7; --c-t1: #f2b35c; --c-t2: #5fd3a6; --c-threshold: #ff6b81; }
}
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); margin: 0 auto; max-width: 1100px; padding: 1.5rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; } h2 { font-size: 1.2rem; margin: 0 0 .5rem; }
.note { color: var(--muted); margin: 0 0 .75rem; }
section { background: var(--panel); border-radius: 8px; padding: 1rem 1.25rem; margin: 1rem 0; break-inside: avoid; }
dl { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: .5rem 1.5rem; margin: 0; }
dt { color: var(--muted); font-size: .85rem; } dd { margin: 0; font-size: 1.25rem; font-variant-numeric: tabular-nums; }
.chart { position: relative; height: 320px; }
table { border-collapse: collapse; margin-top: .5rem; font-variant-numeric: tabular-nums; }
th, td { padding: .2rem .75rem; border-bottom: 1px solid var(--grid); text-align: right; } thead th, tbody th { text-align: left; }
summary { cursor: pointer; color: var(--muted); margin-top: .5rem; }
@media print {
  :root { color-scheme: light; --fg: #000; --bg: #fff; --panel: #fff; --muted: #333; }
  body { max-width: none; padding: 0; } section { border: 1px solid #ccc; }
  details > summary { display: none; } details { display: block; } details > table { display: table; }
  .chart { height: 260px; }
}
`;

/** Runs in the page: draws the four charts from the embedded document (no animation, so a print or a test sees them drawn). */
const DRAW = `
(function () {
  var started = performance.now();
  var data = JSON.parse(document.getElementById('report-data').textContent);
  var css = getComputedStyle(document.documentElement);
  var v = function (name) { return css.getPropertyValue(name).trim(); };
  Chart.defaults.color = v('--fg');
  Chart.defaults.borderColor = v('--grid');
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  function bytes(n) { var u = 0; n = Math.abs(n); while (n >= 1024 && u < units.length - 1) { n /= 1024; u++; } return (u ? n.toFixed(n >= 100 ? 0 : 1) : n) + ' ' + units[u]; }
  function money(n) { return '$' + (Math.abs(n) < 0.01 && n !== 0 ? n.toFixed(4) : n.toFixed(2)); }
  var byteAxis = { beginAtZero: true, ticks: { callback: function (value) { return bytes(value); } } };
  var tooltipBytes = { callbacks: { label: function (c) { return c.dataset.label + ': ' + bytes(c.raw); } } };
  var charts = {};
  window.__charts = charts;

  var locations = ['database', 'hybrid', 'r2'];
  var at = function (t, loc) { var f = t.locations.filter(function (l) { return l.location === loc; })[0]; return f ? (loc === 'database' ? f.dbBytes : f.r2Bytes) : 0; };
  var labels = []; var series = { database: [], hybrid: [], r2: [] };
  data.tables.forEach(function (t) {
    labels.push(t.table + ', before'); series.database.push(t.contentBytes); series.hybrid.push(0); series.r2.push(0);
    labels.push(t.table + ', now'); locations.forEach(function (loc) { series[loc].push(at(t, loc)); });
  });
  charts.bytes = new Chart(document.getElementById('chart-bytes'), {
    type: 'bar',
    data: { labels: labels, datasets: locations.map(function (loc) { return { label: loc, data: series[loc], backgroundColor: v('--c-' + loc) }; }) },
    options: { scales: { x: { stacked: true }, y: Object.assign({ stacked: true }, byteAxis) }, plugins: { tooltip: tooltipBytes } }
  });

  var buckets = Array.from(new Set(data.sizes.map(function (b) { return b.bucket; }))).sort(function (a, b) { return a - b; });
  var first = buckets.length ? buckets[0] : 0;
  var all = []; for (var b = first; buckets.length && b <= buckets[buckets.length - 1]; b++) all.push(b);
  var thresholds = {
    id: 'thresholds',
    afterDatasetsDraw: function (chart) {
      if (!all.length) return;
      var x = chart.scales.x, ctx = chart.ctx, area = chart.chartArea;
      [[data.policy.hybridMin, 'database | R2'], [data.policy.r2Above, 'R2 only after finalize']].forEach(function (mark, index) {
        var position = Math.log2(Math.max(mark[0], 1)) - first - 0.5;
        if (position < -0.5 || position > all.length - 0.5) return;
        var px = x.getPixelForValue(position);
        ctx.save(); ctx.strokeStyle = v('--c-threshold'); ctx.fillStyle = v('--c-threshold'); ctx.setLineDash([6, 4]); ctx.lineWidth = 2;
        ctx.beginPath(); ctx.moveTo(px, area.top); ctx.lineTo(px, area.bottom); ctx.stroke();
        ctx.setLineDash([]); ctx.font = '12px system-ui, sans-serif'; ctx.fillText(bytes(mark[0]) + ': ' + mark[1], px + 4, area.top + 12 + index * 16);
        ctx.restore();
      });
    }
  };
  var tableColors = ['--c-t0', '--c-t1', '--c-t2'];
  charts.sizes = new Chart(document.getElementById('chart-sizes'), {
    type: 'bar',
    data: {
      labels: all.map(function (b) { return bytes(Math.pow(2, b)); }),
      datasets: data.tables.map(function (t, i) {
        return { label: t.table, backgroundColor: v(tableColors[i % 3]), data: all.map(function (b) { var f = data.sizes.filter(function (s) { return s.table === t.table && s.bucket === b; })[0]; return f ? f.rows : 0; }) };
      })
    },
    options: { scales: { x: { title: { display: true, text: 'content size (from)' } }, y: { beginAtZero: true, title: { display: true, text: 'rows' } } } },
    plugins: [thresholds]
  });

  var parts = [['heapBytes', 'heap', '--c-heap'], ['toastBytes', 'TOAST', '--c-toast'], ['indexBytes', 'indexes', '--c-index']];
  charts.disk = new Chart(document.getElementById('chart-disk'), {
    type: 'bar',
    data: { labels: data.disk.map(function (d) { return d.table; }), datasets: parts.map(function (p) { return { label: p[1], backgroundColor: v(p[2]), data: data.disk.map(function (d) { return d[p[0]]; }) }; }) },
    options: { indexAxis: 'y', scales: { x: Object.assign({ stacked: true }, byteAxis), y: { stacked: true } }, plugins: { tooltip: tooltipBytes } }
  });

  charts.cost = new Chart(document.getElementById('chart-cost'), {
    type: 'bar',
    data: {
      labels: ['now', 'after finalize'],
      datasets: [
        { label: 'database storage', backgroundColor: v('--c-database'), data: [data.monthly.now.database, data.monthly.afterFinalize.database] },
        { label: 'R2 storage', backgroundColor: v('--c-r2'), data: [data.monthly.now.r2, data.monthly.afterFinalize.r2] }
      ]
    },
    options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { callback: function (value) { return money(value); } } } },
      plugins: { tooltip: { callbacks: { label: function (c) { return c.dataset.label + ': ' + money(c.raw) + '/month'; } } } } }
  });

  var progress = data.runs ? data.runs.progress : [];
  if (progress.length && document.getElementById('chart-runs')) {
    var runIds = Array.from(new Set(progress.map(function (p) { return p.run_id; }))).slice(0, 10);
    var startOf = {}; data.runs.runs.forEach(function (run) { startOf[run.id] = new Date(run.started_at).getTime(); });
    charts.runs = new Chart(document.getElementById('chart-runs'), {
      type: 'line',
      data: { datasets: runIds.map(function (id, i) {
        var run = data.runs.runs.filter(function (r) { return r.id === id; })[0];
        return { label: 'run ' + id + (run ? ' (' + run.command + ')' : ''), borderColor: v(tableColors[i % 3]), backgroundColor: v(tableColors[i % 3]), stepped: false,
          data: progress.filter(function (p) { return p.run_id === id; }).map(function (p) { return { x: Math.max(0, (new Date(p.minute).getTime() - (startOf[id] || new Date(p.minute).getTime())) / 60000), y: p.rows_done }; }) };
      }) },
      options: { parsing: true, scales: { x: { type: 'linear', beginAtZero: true, title: { display: true, text: 'minutes since the run started' } }, y: { beginAtZero: true, title: { display: true, text: 'rows done' } } } }
    });
  }

  var history = data.history || [];
  if (history.length && document.getElementById('chart-history')) {
    var historyLabels = history.map(function (p) { return p.takenAt.slice(0, 16).replace('T', ' '); });
    charts.history = new Chart(document.getElementById('chart-history'), {
      type: 'line',
      data: { labels: historyLabels, datasets: [
        { label: 'database only', borderColor: v('--c-database'), backgroundColor: v('--c-database'), data: history.map(function (p) { return p.snapshot.bytesByLocation.database; }) },
        { label: 'hybrid', borderColor: v('--c-hybrid'), backgroundColor: v('--c-hybrid'), data: history.map(function (p) { return p.snapshot.bytesByLocation.hybrid; }) },
        { label: 'R2 only', borderColor: v('--c-r2'), backgroundColor: v('--c-r2'), data: history.map(function (p) { return p.snapshot.bytesByLocation.r2; }) },
        { label: 'tables on disk', borderColor: v('--c-toast'), backgroundColor: v('--c-toast'), borderDash: [6, 4], data: history.map(function (p) { return p.snapshot.databaseDiskBytes; }) }
      ] },
      options: { scales: { y: byteAxis }, plugins: { tooltip: tooltipBytes } }
    });
    charts.historyCost = new Chart(document.getElementById('chart-history-cost'), {
      type: 'line',
      data: { labels: historyLabels, datasets: [
        { label: 'database storage', borderColor: v('--c-database'), backgroundColor: v('--c-database'), data: history.map(function (p) { return p.snapshot.monthlyCost.database; }) },
        { label: 'R2 storage', borderColor: v('--c-r2'), backgroundColor: v('--c-r2'), data: history.map(function (p) { return p.snapshot.monthlyCost.r2; }) },
        { label: 'total', borderColor: v('--c-heap'), backgroundColor: v('--c-heap'), borderDash: [6, 4], data: history.map(function (p) { return p.snapshot.monthlyCost.total; }) }
      ] },
      options: { scales: { y: { beginAtZero: true, ticks: { callback: function (value) { return money(value); } } } },
        plugins: { tooltip: { callbacks: { label: function (c) { return c.dataset.label + ': ' + money(c.raw) + '/month'; } } } } }
    });
  }

  window.addEventListener('beforeprint', function () { Object.keys(charts).forEach(function (k) { charts[k].resize(); }); });
  window.__renderMs = performance.now() - started;
  document.body.setAttribute('data-rendered', 'true');
})();
`;
