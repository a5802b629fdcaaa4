import type { StorageContext } from '../src/context.ts';
import { Command } from 'commander';
import { ConfigError } from '../src/errors.ts';
import type { StoreProperty } from '../src/store/preflight.ts';
import type { DoctorResult } from '../src/ops/doctor.ts';
import { makeOutput, openContext, type OpenedContext, type GlobalOptions, type Runtime } from './support/input/context.ts';
import { EXIT } from './support/flow/exit.ts';
import { DEFAULT_PRICES, INFREQUENT_ACCESS_PRICES } from '../src/cost.ts';
import type { CommandResult } from './support/flow/command.ts';

export function doctorCommand(runtime: Runtime, run: (action: () => Promise<CommandResult>) => Promise<void>): Command {
  return new Command('doctor')
    .addHelpText('after', '\nExamples:\n  $ overskill-storage doctor\n  $ overskill-storage doctor --json')
    .action(async (_opts, command: Command) =>
      run(async () => {
        const globals = command.optsWithGlobals<GlobalOptions>();
        const output = makeOutput(globals, runtime);
        const reach: StoreProperty = { id: 'connect', property: 'the database and the bucket are reachable with these settings', required: true, holds: true, seen: 'connected' };
        let context: OpenedContext<StorageContext>;
        try {
          context = await openContext(globals, runtime, { store: true });
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
          return finish(output, { ok: false, checks: [{ ...reach, holds: false, seen: error.message }] });
        }
        try {
          const { doctor } = await import('../src/ops/doctor.ts');
          // On a terminal the screen starts with what was checked; a pipe gets only the records.
          if (output.width !== undefined) output.print(`${output.color.dim('Database:')} ${context.target.database}\n${output.color.dim('Bucket:')}   ${context.target.bucket ?? ''}\n`);
          return finish(output, await doctor(context, [{ ...reach, seen: `bucket "${context.store.bucket}"` }], { directUrlGiven: Boolean(globals.directDatabaseUrl ?? runtime.streams.env.DIRECT_DATABASE_URL) }));
        } finally {
          await context.close();
        }
      }),
    );
}

/** Each check's name in the terminal's short form; the full sentence stays in pipes, `-v` and `--json`. */
const SHORT_NAMES: Record<string, string> = {
  connect: 'reachable',
  database: 'login',
  schema: 'schema',
  schemaOwner: 'table owner',
  databaseWritable: 'writable',
  databasePrivileges: 'grants',
  contentColumnTypes: 'content columns',
  databaseEncoding: 'encoding',
  databaseConnections: 'connections',
  sessionsKept: 'sessions kept',
  createIfNoneMatch: 'PUT If-None-Match: *',
  replaceIfMatch: 'PUT If-Match, other ETag',
  replaceIfMatchSame: 'PUT If-Match, same ETag',
  completeIfNoneMatch: 'multipart If-None-Match',
  completeIfMatch: 'multipart If-Match',
  etagIsMd5: 'ETag is the MD5',
  metadataRoundTrip: 'metadata round trip',
  sameKeyWriteLimited: 'one write per key/s',
  getDecompresses: 'gzip on GET',
  deleteIfMatch: 'DELETE If-Match',
  deleteIfLastModified: 'DELETE Last-Modified',
  lifecycleKeepsObjects: 'lifecycle rules',
  keysNormalized: 'keys NFC-normalised',
  storageClass: 'storage class',
};
const DATABASE_CHECKS = new Set(['connect', 'database', 'schema', 'schemaOwner', 'databaseWritable', 'databasePrivileges', 'contentColumnTypes', 'databaseEncoding', 'databaseConnections', 'sessionsKept']);

function finish(output: ReturnType<typeof makeOutput>, result: DoctorResult): CommandResult {
  const c = output.color;
  const mark = (check: StoreProperty) => (check.holds ? c.green('✓') : check.required ? c.red('✗') : c.yellow('–'));
  if (output.width === undefined || output.verbose) {
    // Off a terminal (and with -v) each check is one whole record: the property in full, required or not.
    output.print(output.table(['', 'property', 'needed', 'seen'], result.checks.map((check) => [mark(check), check.property, check.required ? 'required' : 'info', check.seen])));
  } else {
    // On a terminal, one screen: a short name per check, the database's and the store's apart; a required
    // check that fails is said again in full below, with what it risks. `–` marks what only informs.
    const section = (title: string, checks: StoreProperty[]) =>
      checks.length ? output.print(output.table(['', title, 'seen'], checks.map((check) => [mark(check), SHORT_NAMES[check.id] ?? check.property, check.seen]))) : undefined;
    section('database', result.checks.filter((check) => DATABASE_CHECKS.has(check.id)));
    output.print('');
    section('store', result.checks.filter((check) => !DATABASE_CHECKS.has(check.id)));
  }
  const failing = result.checks.filter((check) => check.required && !check.holds);
  // What the probes cost is for the record (pipes, -v), not for the one screen a terminal gets.
  if (result.store && (output.width === undefined || output.verbose)) {
    const { classA, classB, free } = result.store.requests;
    output.print(c.dim(`Store probes: ${classA} class A, ${classB} class B and ${free} free requests, under _overskill-storage/probes/, deleted again${result.store.leftBehind.length ? ` except ${result.store.leftBehind.join(', ')}` : ''}.`));
  }
  if (result.guards) {
    const g = result.guards;
    output.print(
      g.deletes === 'if-match'
        ? 'Deletes: guarded by If-Match on DeleteObject (an object rewritten since it was checked is refused, 412).'
        : g.deletes === 'last-modified'
          ? "Deletes: guarded by R2's conditional delete, x-amz-if-match-last-modified-time on DeleteObject (an object rewritten since it was checked has another Last-Modified and is refused, 412)."
          : `Deletes: guarded by a conditional 0-byte tombstone, then the delete${g.deleteGapCovered ? " (the store's one write per key per second covers the moment between them)" : c.yellow(' (this store does not refuse a second write within a second: an app write landing between the tombstone and the delete could be lost; keep the app from writing during cleanup, rollback --purge and prune-versions)')}.`,
    );
    output.print(
      g.keysNormalized
        ? 'Keys: Unicode-equivalent spellings are one object here, as on R2; rows whose paths are such spellings never share one.'
        : 'Keys: this store keeps Unicode-equivalent spellings apart; the tool still gives such rows keys that R2 would keep apart too.',
    );
    const transitions = result.store?.lifecycle?.transitions ?? [];
    if (transitions.length) {
      const ia = INFREQUENT_ACCESS_PRICES;
      const rules = transitions.map((r) => `"${r.id}" moves ${r.prefix ? `${r.prefix}*` : 'every key'} to ${r.storageClass} ${r.when}`).join('; ');
      output.print(
        c.yellow(
          `Lifecycle: ${rules}. There storage costs $${ia.storagePerGbMonth}/GB-month instead of $${DEFAULT_PRICES.storagePerGbMonth}, but every byte read back (finalize's read-back, verify --deep, the app's reads) pays $${ia.retrievalPerGb}/GB, reads $${ia.classBPerMillion}/M instead of $${DEFAULT_PRICES.classBPerMillion}/M, writes $${ia.classAPerMillion}/M instead of $${DEFAULT_PRICES.classAPerMillion}/M, each transition a write, and ${ia.minimumDays} days of storage at least: price plans and the report with --storage-class infrequent-access.`,
        ),
      );
    }
    if (g.storageClass && g.storageClass !== 'STANDARD') output.print(c.yellow(`Storage class: ${g.storageClass}. Reads and read-backs pay retrieval fees and objects are charged 30 days at least: pass --storage-class infrequent-access to plans and report.`));
  }
  if (failing.length) {
    output.print(c.red(`\nNot safe for this tool: ${failing.length} required propert${failing.length === 1 ? 'y does' : 'ies do'} not hold.`));
    for (const check of failing) output.print(c.red(`  ${check.property}${check.risk ? `: without it, ${check.risk}` : ''}`));
  } else {
    output.print(c.green('\nEverything this tool relies on holds here.'));
  }
  output.result({ ok: failing.length === 0, failing: failing.map((check) => check.id), checks: result.checks, ...(result.guards ? { guards: result.guards } : {}), ...(result.store ? { requests: result.store.requests, leftBehind: result.store.leftBehind } : {}) });
  return { exitCode: failing.length ? EXIT.problems : EXIT.ok };
}
