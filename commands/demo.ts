import { Command } from 'commander';
import { Writable } from 'node:stream';
import { resolve } from 'node:path';
import type { EmbeddedPostgres } from '../src/local/embedded-postgres.ts';
import type { LocalS3Server } from '../src/local/s3-server.ts';
import { makeOutput, type GlobalOptions, type Runtime } from './support/input/context.ts';
import { formatBytes, formatCount, formatDuration } from './support/render/format.ts';
import * as parse from './support/input/parse.ts';
import type { CommandResult } from './support/flow/command.ts';
import { EXIT } from './support/flow/exit.ts';
import type { Output } from './support/render/output.ts';
import { renderTable } from './support/render/format.ts';
import { METRIC_HEADER, metricRows, metricStepLines } from './support/render/report-rows.ts';
import type { SuccessMetric } from '../src/ops/report.ts';

/** Every content's SHA-256 by table and id: the demo proves the round trip ends byte-identical. */
/** A plain client to the embedded database; the driver loads with the demo, not with the CLI. */
async function connect(url: string) {
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

async function contentFingerprint(url: string): Promise<string> {
  const client = await connect(url);
  try {
    const result = await client.query(`SELECT md5(string_agg(h, ',' ORDER BY h)) AS fingerprint FROM (
        SELECT 'f' || id || ':' || coalesce(md5(content), '') AS h FROM app_files
        UNION ALL SELECT 'v' || id || ':' || coalesce(md5(files_snapshot), '') FROM app_versions
        UNION ALL SELECT 'vf' || id || ':' || coalesce(md5(content), '') FROM app_version_files) x`);
    return result.rows[0].fingerprint;
  } finally {
    await client.end();
  }
}

export function demoCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  return new Command('demo')
    .option('--apps <n>', 'apps to seed', parse.integer({ min: 1, max: 10_000 }), 100)
    .option('--files <n>', 'files per app', parse.integer({ min: 1, max: 10_000 }), 85)
    .option('--large-files <n>', 'files of several MB', parse.integer({ min: 0, max: 1000 }), 4)
    .option('--report <file>', 'where to write the HTML report (taken after finalize)', 'overskill-storage-demo-report.html')
    .addHelpText('after', '\nExamples:\n  $ overskill-storage demo\n  $ overskill-storage demo --apps 10 --files 20')
    .action(async (opts, cmd: Command) =>
      run(async () => {
        const [{ startEmbeddedPostgres }, { startLocalS3 }, { OVERSKILL_TABLES_SQL }, { seedDataset }] = await Promise.all([import('../src/local/embedded-postgres.ts'), import('../src/local/s3-server.ts'), import('../src/local/overskill-schema.ts'), import('../src/local/dataset.ts')]);
        const globals = cmd.optsWithGlobals() as GlobalOptions;
        const output = makeOutput(globals, runtime);
        const { runCli } = await import('./program.ts');
        let postgres: EmbeddedPostgres | undefined;
        let seeded: Awaited<ReturnType<typeof seedDataset>> | undefined;
        let s3: LocalS3Server | undefined;
        const started = Date.now();
        const c = output.color;
        try {
          output.log(c.bold('Starting an embedded PostgreSQL (PGlite) and a local S3 server (s3rver)…'));
          postgres = await startEmbeddedPostgres();
          s3 = await startLocalS3({ bucket: 'overskill-dev' });
          output.log(`  PostgreSQL: ${postgres.url}\n  S3:         ${s3.endpoint} (bucket ${s3.bucket})`);
          const client = await connect(postgres.url);
          await client.query(OVERSKILL_TABLES_SQL);
          output.log(c.bold(`Seeding ${formatCount(opts.apps)} apps × ${formatCount(opts.files)} files with version history…`));
          seeded = await seedDataset(client, { apps: opts.apps, filesPerApp: opts.files, largeFiles: opts.largeFiles, largeFileBytes: 2 * 1024 * 1024, versionsPerApp: 3 });
          await client.end();
          output.log(
            `  ${formatCount(seeded.files)} files (${formatBytes(seeded.fileBytes)}), ${formatCount(seeded.versions)} versions with ${formatBytes(seeded.snapshotBytes)} of snapshots, ${formatCount(seeded.versionFiles)} version-file rows\n`,
          );
          const env: NodeJS.ProcessEnv = {
            ...runtime.streams.env,
            DATABASE_URL: postgres.url,
            R2_ENDPOINT: s3.endpoint,
            R2_ACCESS_KEY_ID: s3.accessKeyId,
            R2_SECRET_ACCESS_KEY: s3.secretAccessKey,
            R2_BUCKET: s3.bucket,
            // Nothing but the tool writes here: a flipping step's closing repair need not wait for app saves.
            OVERSKILL_STORAGE_SETTLE: runtime.streams.env.OVERSKILL_STORAGE_SETTLE ?? '0s',
          };
          // With --json each step's JSON document is collected and the demo prints one document at the end;
          // the steps' human output then goes to stderr.
          const steps: { command: string; exitCode: number; result?: unknown }[] = [];
          const step = async (args: string[], expected: number[] = [0]) => {
            const shown = `$ overskill-storage ${args.join(' ')}`;
            if (output.json) output.log(`\n${c.bold.cyan(shown)}`);
            else output.print(`\n${c.bold.cyan(shown)}`);
            let captured = '';
            const stdout = output.json ? new Writable({ write: (chunk, _encoding, done) => ((captured += chunk), done()) }) : runtime.streams.stdout;
            // PGlite serves every connection from one session and interleaves their protocol messages, so the
            // demo's tool talks to it over a single connection.
            const flags = ['--db-connections', '1', ...(globals.color === false ? ['--no-color'] : []), ...(output.json ? ['--json'] : [])];
            const code = await runCli([...args, ...flags], { ...runtime, streams: { ...runtime.streams, stdout, env } });
            if (output.json) steps.push({ command: shown.slice(2), exitCode: code, result: captured.trim() ? JSON.parse(captured) : undefined });
            if (!expected.includes(code)) throw new Error(`demo step "${args.join(' ')}" exited ${code}`);
            return code;
          };
          const before = await contentFingerprint(postgres.url);
          await step(['schema'], [1]);
          await step(['schema', '--apply', '--yes']);
          // The local S3 server honours R2's conditional writes: doctor proves it before anything is written.
          await step(['doctor']);
          await step(['migrate', '--dry-run']);
          await step(['migrate', '--yes', '--concurrency', '16']);
          await step(['verify', '--orphans']);
          await step(['report']);
          await step(['finalize', '--dry-run']);
          await step(['finalize', '--yes']);
          // Phase 3 to the end: the hybrid band (the plan's transition safety) once verify is clean, then the
          // space back to the operating system. The embedded PostgreSQL has no pg_repack, so the demo rewrites
          // offline (VACUUM FULL); against a real server with the app live, `reclaim --yes` uses pg_repack.
          await step(['verify']);
          await step(['finalize', '--hybrid-band', '--yes']);
          await step(['reclaim', '--dry-run']);
          await step(['reclaim', '--offline', '--yes']);
          // The nightly job: verify, a deep sample (all of it here), orphans, and the day's figures (reads included).
          await step(['maintain', '--yes', '--deep-sample', '100%']);
          const shrunk = await filesAgainstBaseline(postgres.url);
          const shrunkLine = `\n${c.bold(`app_files is ${shrunk.reductionPercent.toFixed(1)}% smaller than before anything moved`)} (${formatBytes(shrunk.baselineBytes)} → ${formatBytes(shrunk.afterBytes)}; the plan's target: 70-80%).`;
          if (output.json) output.log(shrunkLine);
          else output.print(shrunkLine);
          await step(['report']);
          // Where Phase 3 ended, kept to end the demo on: the plan's metrics as measured here.
          const metrics = await metricsNow(runtime, env);
          const reportFile = resolve(runtime.cwd, opts.report);
          await step(['report', '--format', 'html', '--out', reportFile]);
          await step(['verify', '--deep', '--app', '1']);
          await step(['rollback', '--yes']);
          await step(['report']);
          await step(['verify']);
          const after = await contentFingerprint(postgres.url);
          const identical = before === after;
          output.print(`\n${identical ? c.green('✓') : c.red('✗')} After migrate → finalize → the hybrid band → reclaim → rollback every content is ${identical ? '' : 'NOT '}byte-identical to where it started.`);
          if (!identical) {
            output.result({ ok: false, byteIdentical: false, steps });
            return { exitCode: EXIT.problems };
          }
          await demoRestore(output, postgres.url, step);
          output.print(c.bold("\nThe plan's success metrics where Phase 3 ended (after the hybrid band and reclaim):"));
          output.print(renderTable(METRIC_HEADER, metricRows({ metrics }), c));
          for (const line of metricStepLines({ metrics })) output.print(c.dim(`  ${line}`));
          output.print(c.green(`\nDemo finished in ${formatDuration(Date.now() - started)}.`));
          output.print(`The HTML report (after finalize): ${reportFile}`);
          output.result({ ok: true, byteIdentical: true, seeded, seconds: (Date.now() - started) / 1000, report: reportFile, filesOnDisk: shrunk, steps });
          return { exitCode: EXIT.ok };
        } finally {
          await s3?.stop().catch(() => undefined);
          await postgres?.stop().catch(() => undefined);
        }
      }),
    );
}

/** The report's success metrics now, read from `report --json` as a script would. */
async function metricsNow(runtime: Runtime, env: NodeJS.ProcessEnv): Promise<SuccessMetric[]> {
  const { runCli } = await import('./program.ts');
  let captured = '';
  const stdout = new Writable({ write: (chunk, _encoding, done) => ((captured += chunk), done()) });
  const code = await runCli(['report', '--json', '--db-connections', '1', '--probe-reads', '50'], { ...runtime, streams: { ...runtime.streams, stdout, env } });
  if (code !== 0) throw new Error(`demo step "report --json" exited ${code}`);
  return JSON.parse(captured).metrics as SuccessMetric[];
}

/** app_files on disk now against the baseline the tool recorded at `schema --apply`: the plan's first success metric, on this dataset. */
async function filesAgainstBaseline(url: string): Promise<{ baselineBytes: number; afterBytes: number; reductionPercent: number }> {
  const client = await connect(url);
  try {
    const afterBytes = Number((await client.query("SELECT pg_total_relation_size('app_files')::float8 AS bytes")).rows[0].bytes);
    const baselineBytes = Number((await client.query("SELECT total_bytes::float8 AS bytes FROM overskill_storage_baseline WHERE table_name = 'app_files'")).rows[0]?.bytes ?? 0);
    return { baselineBytes, afterBytes, reductionPercent: baselineBytes ? ((baselineBytes - afterBytes) / baselineBytes) * 100 : 0 };
  } finally {
    await client.end();
  }
}

/** An operator's one-off restore: app 1 is edited (as a bad deploy would), then put back to 1.0.0. */
async function demoRestore(output: Output, url: string, step: (args: string[], expected?: number[]) => Promise<number>): Promise<void> {
  const client = await connect(url);
  try {
    await step(['migrate', '--yes', '--app', '1']);
    output.print(output.color.dim('\n(simulating a bad deploy: app 1 gets a broken App.tsx and a stray file)'));
    await client.query(`UPDATE app_files SET content = 'export default () => { throw new Error("oops") }', storage_location = 'database', r2_object_key = NULL WHERE app_id = 1 AND path = 'src/App.tsx'`);
    await client.query(`INSERT INTO app_files (app_id, path, content, file_type) VALUES (1, 'src/debug.log', repeat('debug line\n', 300), 'log')`);
  } finally {
    await client.end();
  }
  await step(['restore-version', '1', '1.0.0', '--dry-run']);
  await step(['restore-version', '1', '1.0.0', '--yes']);
  await step(['verify', '--deep', '--app', '1']);
}
