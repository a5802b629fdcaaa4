import { Command } from 'commander';
import { FILES } from '../src/tables.ts';
import { DEFAULT_WALK } from '../src/ops/options.ts';
import { DataError } from '../src/errors.ts';
import { makeOutput, openContext, type GlobalOptions, type Runtime } from './support/input/context.ts';
import { formatBytes, formatCount, plural } from './support/render/format.ts';
import * as parse from './support/input/parse.ts';
import type { CommandResult } from './support/flow/command.ts';
import { EXIT } from './support/flow/exit.ts';
import { resolve } from 'node:path';

export function exportCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  return new Command('export')
    .argument('<app_id>', 'the app', parse.id)
    .requiredOption('--out <dir>', 'directory to write into (created if missing); nothing is written outside it')
    .option('--version <version>', 'a version id or version_number instead of the current files')
    .option('--concurrency <n>', 'R2 reads in flight', parse.integer({ min: 1, max: 1024 }), DEFAULT_WALK.concurrency)
    .addHelpText('after', '\nExamples:\n  $ overskill-storage export 42 --out ./app-42\n  $ overskill-storage export 42 --version 1.4.0 --out ./app-42-v1.4.0 --json')
    .action(async (appId: string, opts, cmd: Command) =>
      run(async () => {
        const [{ exportApp }, { contentRefs, streamStoredContent }] = await Promise.all([import('../src/ops/export.ts'), import('../src/ops/read-content.ts')]);
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        const output = makeOutput(globals, runtime);
        const context = await openContext(globals, runtime, { store: true, concurrency: opts.concurrency, database: 'read' });
        try {
          const result = await exportApp(context, { appId, directory: resolve(runtime.cwd, opts.out), version: opts.version, concurrency: opts.concurrency });
          const c = output.color;
          const bytes = result.written.reduce((sum, file) => sum + file.bytes, 0);
          output.print(c.green(`Wrote ${plural(result.written.length, 'file')}, ${formatBytes(bytes)}, to ${result.directory}`));
          // A row with no content_hash (never migrated) has nothing to disagree with: only a mismatch is said.
          const unverified = result.written.filter((file) => file.verified === false);
          if (unverified.length) output.print(c.yellow(`${plural(unverified.length, 'file')} came from database content that no longer matches content_hash (written as the database holds them).`));
          for (const refused of result.refused) output.print(c.red(`  refused ${JSON.stringify(refused.path)}: ${refused.reason}`));
          for (const failed of result.failed) output.print(c.red(`  failed ${JSON.stringify(failed.path)}: ${failed.reason}`));
          output.result(result);
          return { exitCode: result.refused.length || result.failed.length ? EXIT.problems : EXIT.ok };
        } finally {
          await context.close();
        }
      }),
    );
}

export function catCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  return new Command('cat')
    .argument('<app_id>', 'the app', parse.id)
    .argument('<path>', 'the file path (a leading "/" is optional)')
    .addHelpText('after', '\nExample:\n  $ overskill-storage cat 42 src/App.tsx')
    .action(async (appId: string, path: string, _opts, cmd: Command) =>
      run(async () => {
        const [{ exportApp }, { contentRefs, streamStoredContent }] = await Promise.all([import('../src/ops/export.ts'), import('../src/ops/read-content.ts')]);
        const globals = cmd.optsWithGlobals<GlobalOptions>();
        // One file, its bytes checked against content_hash as they stream: the bucket check's three round trips
        // would only delay it (a wrong endpoint fails the GET, or its bytes fail the hash).
        const context = await openContext(globals, runtime, { store: 'unchecked', database: 'read' });
        try {
          await (await import('../src/ops/scope.ts')).assertScopeSelects(context.db, { appIds: [appId] });
          const candidates = path.startsWith('/') ? [path, path.slice(1)] : [path, `/${path}`];
          const refs = await contentRefs(context.db, FILES, 't.app_id = $1::bigint AND t.path = ANY($2::text[])', [appId, candidates], 1024 * 1024);
          const ref = refs.find((row) => row.path === path) ?? refs[0];
          if (!ref) throw new DataError(`App ${appId} has no file ${JSON.stringify(path)}.`);
          for await (const chunk of streamStoredContent(context, ref)) runtime.streams.stdout.write(chunk);
          return { exitCode: EXIT.ok };
        } finally {
          await context.close();
        }
      }),
    );
}
