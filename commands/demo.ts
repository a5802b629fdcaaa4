import { Command } from 'commander';
import { Writable } from 'node:stream';
import { resolve } from 'node:path';
import type { EmbeddedPostgres } from '../src/local/embedded-postgres.ts';
import type { LocalS3Server } from '../src/local/s3-server.ts';
import { makeOutput, type GlobalOptions, type Runtime } from './support/input/context.ts';
import { formatBytes, formatCount, formatDuration } from './support/render/format.ts';
import * as parse from './support/input/parse.ts';
import type { CommandResult, ProgramServices } from './support/flow/command.ts';
import { EXIT } from './support/flow/exit.ts';
import type { Output } from './support/render/output.ts';
import { METRIC_HEADER, metricRows, metricStepLines } from './support/render/report-rows.ts';
import type { DescribedMetric } from './support/render/metric-text.ts';

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

export function demoCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>, program?: ProgramServices): Command {
  return new Command('demo')
    .option('--apps <n>', 'apps to seed', parse.integer({ min: 1, max: 10_000 }), 100)
    .option('--files <n>', 'files per app', parse.integer({ min: 1, max: 10_000 }), 85)
    .option('--large-files <n>', 'files of several MB (streamed in parts; real apps have few, so none by default)', parse.integer({ min: 0, max: 1000 }), 0)
    .option('--report <file>', 'where to write the HTML report (taken after finalize)', 'overskill-storage-demo-report.html')
    .option('--sql', "also print the SQL of the plan's Phase 1 schema (`schema --apply --dry-run`)")
    .addHelpText('after', '\nExamples:\n  $ overskill-storage demo\n  $ overskill-storage demo --apps 10 --files 20')
    .action(async (opts, cmd: Command) =>
      run(async () => {
        const [{ startEmbeddedPostgres }, { startLocalS3 }, { OVERSKILL_TABLES_SQL }, { seedDataset }] = await Promise.all([import('../src/local/embedded-postgres.ts'), import('../src/local/s3-server.ts'), import('../src/local/overskill-schema.ts'), import('../src/local/dataset.ts')]);
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const output = makeOutput(globals, runtime);
        if (!program) throw new Error('internal: the demo needs the program to run its steps');
        const { runCli } = program;
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
          output.log(c.bold(`Seeding ${formatCount(opts.apps)} apps of about ${formatCount(opts.files)} files each, shaped like real web-app files, with 3 to 10 versions…`));
          seeded = await seedDataset(client, { apps: opts.apps, filesPerApp: opts.files, largeFiles: opts.largeFiles, largeFileBytes: 2 * 1024 * 1024, versionsPerApp: [3, 10] });
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
          // `background`: the command runs as if in another terminal, its lines kept and shown when it ends.
          const step = async (args: string[], expected: number[] = [0], background = false) => {
            const shown = `$ overskill-storage ${args.join(' ')}`;
            if (output.json) output.log(`\n${c.bold.cyan(shown)}`);
            else output.print(`\n${c.bold.cyan(shown)}${background ? c.dim('   (in the first terminal)') : ''}`);
            let captured = '';
            let held = '';
            const capture = new Writable({ write: (chunk, _encoding, done) => ((captured += chunk), done()) });
            const hold = () => new Writable({ write: (chunk, _encoding, done) => ((held += chunk), done()) });
            // Held results are drawn for this terminal's width; held logs as off a terminal (no progress line to replay).
            const heldStdout = Object.assign(hold(), { isTTY: runtime.streams.stdout.isTTY, columns: runtime.streams.stdout.columns });
            const stdout = output.json ? capture : background ? heldStdout : runtime.streams.stdout;
            const stderr = background ? hold() : runtime.streams.stderr;
            // PGlite serves every connection from one session and interleaves their protocol messages, so the
            // demo's tool talks to it over a single connection.
            const flags = ['--db-connections', '1', ...(globals.color === false ? ['--no-color'] : []), ...(output.json ? ['--json'] : [])];
            const code = await runCli([...args, ...flags], { ...runtime, streams: { ...runtime.streams, stdout, stderr, env } });
            if (held) (output.json ? runtime.streams.stderr : runtime.streams.stdout).write(`${held.trimEnd()}\n`);
            if (output.json) steps.push({ command: shown.slice(2), exitCode: code, result: captured.trim() ? JSON.parse(captured) : undefined });
            if (!expected.includes(code)) throw new Error(`demo step "${args.join(' ')}" exited ${code}`);
            return code;
          };
          const before = await contentFingerprint(postgres.url);
          const total = 12;
          let chapter = 0;
          // One chapter a step: what it is for in a line, then the commands exactly as an operator types them.
          const title = (what: string, why: string) => {
            chapter++;
            const heading = `\n${c.bold(`━━ Step ${chapter}/${total}: ${what}`)}\n${c.dim(why)}`;
            if (output.json) output.log(heading);
            else output.print(heading);
          };
          const verdict = (holds: boolean, line: string) => {
            const text = `${holds ? c.green('✓') : c.red('✗')} ${c.bold(line)}`;
            if (output.json) output.log(text);
            else output.print(text);
          };
          title("add the plan's Phase 1 columns", 'Columns with constant defaults and indexes built CONCURRENTLY: the app keeps writing meanwhile.');
          if (opts.sql) await step(['schema', '--apply', '--dry-run']);
          await step(['schema', '--apply', '--yes']);
          title('is this database and bucket fit for the tool?', 'doctor checks the database (access, encoding, columns) and proves the store honours the conditional writes R2 honours.');
          await step(['doctor']);
          title('the plan, before anything changes', 'A dry run reads only: rows, bytes, requests and their cost.');
          await step(['migrate', '--dry-run']);
          title('migrate, watched and paused from a second terminal', 'The run is recorded in PostgreSQL: status, pause and resume work from anywhere, between batches.');
          await watchedMigration(output, postgres.url, seeded, step);
          title('verify every object', 'Listings and metadata: every stored row has its object, of its size and SHA-256; no object is unnamed.');
          verdict((await step(['verify', '--orphans'], [0, 1])) === 0, 'verify: every object present and matching');
          title('Phase 3: finalize', 'Above 10 KiB the database copy is cleared, each only after its R2 copy was read back and matched.');
          await step(['finalize', '--yes']);
          title('the hybrid band, then the space back to the operating system', 'Once verify is clean, the hybrid band loses its database copy too; reclaim rewrites the tables (pg_repack on a live server; VACUUM FULL here).');
          await step(['finalize', '--hybrid-band', '--yes']);
          await step(['reclaim', '--offline', '--yes']);
          const shrunk = await filesAgainstBaseline(postgres.url);
          verdict(shrunk.reductionPercent > 0, `app_files is ${shrunk.reductionPercent.toFixed(1)}% smaller than before anything moved (${formatBytes(shrunk.baselineBytes)} → ${formatBytes(shrunk.afterBytes)}; the plan's target: 70-80%)`);
          title('the nightly job', "The plan's R2CleanupJob as one recorded run: verify, a deep sample (all of it here), our orphans, the day's figures.");
          await step(['maintain', '--yes', '--deep-sample', '100%']);
          title('the report', 'Bytes and counts per location, on-disk sizes against the baseline, R2 cost at list prices, the success metrics.');
          await step(['report']);
          // Where Phase 3 ended, kept to end the demo on: the plan's metrics as measured here.
          const metrics = await metricsNow(runCli, runtime, env);
          const reportFile = resolve(runtime.cwd, opts.report);
          await step(['report', '--format', 'html', '--out', reportFile]);
          title('roll everything back', 'Every R2-only content comes back into the database, verified against its content_hash.');
          await step(['rollback', '--yes']);
          await step(['verify']);
          const after = await contentFingerprint(postgres.url);
          const identical = before === after;
          verdict(identical, `After migrate → finalize → the hybrid band → reclaim → rollback every content is ${identical ? '' : 'NOT '}byte-identical to where it started.`);
          if (!identical) {
            output.result({ ok: false, byteIdentical: false, steps });
            return { exitCode: EXIT.problems };
          }
          title('a one-off restore after a bad deploy', 'A diff against the version first, then one transaction.');
          await demoRestore(output, postgres.url, step);
          verdict(true, 'app 1 is back at version 1.0.0, its objects verified by download');
          title('where Phase 3 ended', "The plan's success metrics as measured after the hybrid band and reclaim.");
          output.print(output.table(METRIC_HEADER, metricRows({ metrics })));
          for (const line of metricStepLines({ metrics })) output.print(c.dim(`  ${line}`));
          output.print(c.green(`\nDemo finished in ${formatDuration(Date.now() - started)}.`) + ` The HTML report (taken after finalize): ${reportFile}`);
          output.print(
            [
              '',
              c.bold('Now point it at your database:'),
              '  export DATABASE_URL=postgres://user@host:5432/overskill',
              '  export R2_ACCOUNT_ID=… R2_ACCESS_KEY_ID=… R2_SECRET_ACCESS_KEY=… R2_BUCKET=…',
              '  overskill-storage doctor            # is everything this tool relies on there?',
              '  overskill-storage schema --apply    # the Phase 1 columns, app live',
              '  overskill-storage migrate --dry-run # the plan; then --rollout 10%, 50%, 100%',
              'Settings may also live in a .env file in the working directory. README: "Running it on your database".',
            ].join('\n'),
          );
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
async function metricsNow(runCli: ProgramServices['runCli'], runtime: Runtime, env: NodeJS.ProcessEnv): Promise<DescribedMetric[]> {
  let captured = '';
  const stdout = new Writable({ write: (chunk, _encoding, done) => ((captured += chunk), done()) });
  const code = await runCli(['report', '--json', '--db-connections', '1', '--probe-reads', '50'], { ...runtime, streams: { ...runtime.streams, stdout, env } });
  if (code !== 0) throw new Error(`demo step "report --json" exited ${code}`);
  return JSON.parse(captured).metrics as DescribedMetric[];
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
  await step(['restore-version', '1', '1.0.0', '--yes']);
  await step(['verify', '--deep', '--app', '1']);
}

/**
 * The migration as an operator watches it: migrate runs (in the background, its lines kept for after), while a
 * second terminal asks `status`, pauses the run, looks again, and resumes it. The run is paced to last a few
 * seconds whatever the dataset, so there is a run to pause.
 */
async function watchedMigration(output: Output, url: string, seeded: { files: number; versions: number; versionFiles: number }, step: (args: string[], expected?: number[], quiet?: boolean) => Promise<number>): Promise<void> {
  const rate = Math.max(2, Math.ceil((seeded.files + seeded.versions + seeded.versionFiles) / 20));
  const migration = step(['migrate', '--yes', '--max-rate', String(rate)], [0], true);
  const client = await connect(url);
  try {
    for (let waited = 0; ; waited += 100) {
      const { rows } = await client.query(
        "SELECT r.id FROM overskill_storage_runs r WHERE r.command = 'migrate' AND r.state = 'running' AND (SELECT coalesce(sum(w.rows_done), 0) FROM overskill_storage_run_workers w WHERE w.run_id = r.id) > 0",
      );
      if (rows.length) break;
      if (waited > 60_000) throw new Error('demo: the migration never started');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await client.end();
  }
  output.print(output.color.dim('(meanwhile, in a second terminal:)'));
  await step(['status']);
  await step(['pause', '--all', '--yes']);
  await step(['status']);
  await step(['resume', '--all', '--yes']);
  output.print(output.color.dim('(back in the first terminal, when it is done:)'));
  await migration;
}
