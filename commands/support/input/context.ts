import { Command, Option } from 'commander';
import { ConfigResolver } from '../../../src/config.ts';
import type { ObjectStore } from '../../../src/object-store.ts';
import type { DatabaseContext, StorageContext } from '../../../src/context.ts';
import type { WalkOptions } from '../../../src/ops/options.ts';
import { DEFAULT_WALK, DEFAULT_INLINE_MAX, type CommonRunOptions } from '../../../src/ops/options.ts';
import { parseTables } from '../../../src/tables.ts';
import { DEFAULT_POLICY, validatePolicy, type PlacementPolicy } from '../../../src/placement.ts';
import { ConfigError, UsageError } from '../../../src/errors.ts';
import { DEFAULT_PRICES, INFREQUENT_ACCESS_PRICES, STORAGE_CLASSES, type Prices, type StorageClass } from '../../../src/cost.ts';
import * as parse from './parse.ts';
import { Output, type EventSink, type LogFormat, type OutputStreams } from '../render/output.ts';
import { describeBucket, describeDatabase, type Target } from '../render/target.ts';

/** Options every command has (declared once on the program, accepted before or after the subcommand). */
export interface GlobalOptions {
  databaseUrl?: string;
  endpoint?: string;
  accountId?: string;
  bucket?: string;
  region?: string;
  allowInsecureEndpoint?: boolean;
  allowUnconditionalStore?: boolean;
  caBundle?: string;
  directDatabaseUrl?: string;
  json?: boolean;
  yes?: boolean;
  color?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  requestTimeout?: number;
  maxAttempts?: number;
  dbConnections?: number;
  operator?: string;
  logFormat?: LogFormat;
  metricsPort?: number;
}

export interface Runtime {
  streams: OutputStreams;
  cwd: string;
  signal: AbortSignal;
  /** The subcommand being run (set by the program before its action). */
  command?: string;
  /** The command line as given (recorded with each run, secrets masked). */
  argv?: string[];
  /** Where run events go besides the log (the metrics of --metrics-port). */
  eventSinks?: Set<EventSink>;
}

export function addGlobalOptions(program: Command): Command {
  return program
    .option('--database-url <url>', 'PostgreSQL URL (default: $DATABASE_URL, then .env)')
    .option('--direct-database-url <url>', "PostgreSQL itself, for the steps that need a session of their own (schema --apply, reclaim) where DATABASE_URL is a pooler in transaction mode (default: $DIRECT_DATABASE_URL)")
    .option('--endpoint <url>', 'S3-compatible endpoint (default: $R2_ENDPOINT, or R2 from $R2_ACCOUNT_ID)')
    .option('--account-id <id>', 'Cloudflare account id (default: $R2_ACCOUNT_ID)')
    .option('--bucket <name>', 'bucket (default: $R2_BUCKET or $CLOUDFLARE_R2_BUCKET_DB_FILES)')
    .option('--region <name>', 'S3 region (R2 uses "auto")')
    .option('--allow-insecure-endpoint', 'allow a plain http:// endpoint on a non-loopback host')
    .option('--ca-bundle <file>', 'PEM certificates to trust for the store besides the public ones, e.g. a private CA (default: $AWS_CA_BUNDLE)')
    .option('--allow-unconditional-store', 'write to a store that ignores If-None-Match/If-Match (only if the app does not write to the bucket meanwhile; see `doctor`)')
    .option('--request-timeout <duration>', 'limit for one S3 request, e.g. 60s', parse.duration)
    .option('--max-attempts <n>', 'attempts per S3 request, with exponential backoff and jitter', parse.integer({ min: 1, max: 20 }))
    .option('--db-connections <n>', 'database connections to use at most, besides the worker session (default: $OVERSKILL_STORAGE_DB_CONNECTIONS, else min(concurrency, 8) + 2)', parse.integer({ min: 1, max: 100 }))
    .option('--operator <name>', 'who is running this, as recorded with the run (default: the OS user)')
    .addOption(new Option('--log-format <format>', 'text, or json: one event per line on stderr (run started, batches, failed and refused items, waits, run ended), each with its run id and worker').choices(['text', 'json']).default('text'))
    .option('--metrics-port <port>', 'serve Prometheus metrics of this run at http://0.0.0.0:PORT/metrics (0 picks a free port, logged)', parse.integer({ min: 0, max: 65535 }))
    .option('--json', 'print one JSON document on stdout (logs stay on stderr)')
    .option('-y, --yes', 'do not ask for confirmation before writing')
    .option('--no-color', 'no colour (NO_COLOR is honoured too)')
    .option('-q, --quiet', 'no log lines on stderr, only errors')
    .option('-v, --verbose', 'say more: the settings resolved, each step as it starts, stack traces on errors');
}

export function makeOutput(globals: GlobalOptions, runtime: Runtime): Output {
  return new Output(runtime.streams, {
    json: globals.json ?? false,
    color: globals.color,
    quiet: globals.quiet,
    verbose: globals.verbose,
    command: runtime.command,
    logFormat: globals.logFormat,
    sinks: (runtime.eventSinks ??= new Set()),
  });
}

/** A context a command opened: a StorageContext where it opened the bucket, a DatabaseContext where it may not have. */
export type OpenedContext<Context extends DatabaseContext = DatabaseContext> = Context & {
  /** The database and bucket as plans and prompts name them (the bucket even where the command opened no store). */
  target: Target;
  close(): Promise<void>;
};

export interface OpenOptions {
  /** 'unchecked': the store is opened without the bucket check's round trips (a read whose every byte is hash-verified). */
  store: boolean | 'unchecked';
  concurrency?: number;
  onRequest?: (command: string) => void;
  database?: 'read' | 'write';
  /** What needs a database session of its own (pg_repack, CREATE INDEX CONCURRENTLY): a pooler in transaction mode cannot give one. */
  ownSession?: string;
}

/** Resolves configuration, connects, and checks both services before any work: errors name the fix. */
/**
 * `concurrency` sizes both pools: S3 sockets at least the requests in flight (fewer would quietly cap the
 * run), database connections a few (claims and flips are short; large contents stream on their own).
 */
/**
 * `database`: what the command will ask of the database, checked right after connecting, before anything is
 * planned or changed ('write': writable, granted, text columns, UTF8; 'read': text columns, UTF8).
 */
export async function openContext(globals: GlobalOptions, runtime: Runtime, options: OpenOptions & { store: true | 'unchecked' }): Promise<OpenedContext<StorageContext>>;
export async function openContext(globals: GlobalOptions, runtime: Runtime, options: OpenOptions): Promise<OpenedContext>;
export async function openContext(globals: GlobalOptions, runtime: Runtime, options: OpenOptions): Promise<OpenedContext> {
  const resolver = new ConfigResolver({
    flags: { databaseUrl: globals.databaseUrl, endpoint: globals.endpoint, accountId: globals.accountId, bucket: globals.bucket, region: globals.region },
    env: runtime.streams.env,
    cwd: runtime.cwd,
  });
  const database = resolver.database();
  const storeConfig = options.store ? resolver.objectStore({ allowInsecureEndpoint: globals.allowInsecureEndpoint, caBundle: globals.caBundle }) : undefined;
  const named = storeConfig ?? namedStore(resolver);
  const target: Target = { database: describeDatabase(database.url), bucket: named ? describeBucket(named.bucket, named.endpoint) : undefined };
  const concurrency = options.concurrency ?? 8;
  const fromEnv = Number(runtime.streams.env.OVERSKILL_STORAGE_DB_CONNECTIONS);
  const connections = globals.dbConnections ?? (Number.isSafeInteger(fromEnv) && fromEnv >= 1 ? fromEnv : Math.min(concurrency, 8) + 2);
  // The database driver and the S3 SDK load only in commands that connect: --help and --version stay light.
  const [{ createDb, checkConnection, setPooling }, { ObjectStore }, { detectSessionPooling, describeTransactionPooling }] = await Promise.all([
    import('../../../src/db.ts'),
    import('../../../src/object-store.ts'),
    import('../../../src/sql/session-pooling.ts'),
  ]);
  let databaseUrl = database.url;
  let db = createDb({ url: databaseUrl, poolSize: connections });
  let store: ObjectStore | undefined;
  let metrics: { close(): Promise<void> } | undefined;
  const output = makeOutput(globals, runtime);
  let since = performance.now();
  const step = (what: string) => {
    output.detail(`${what} (${Math.round(performance.now() - since)} ms)`);
    since = performance.now();
  };
  try {
    await checkConnection(db, databaseUrl);
    step(`connected to database ${target.database}, at most ${connections} connections`);
    // Found before any other statement: how the tool's settings are made depends on it (src/db.ts).
    let pooling = await detectSessionPooling(db, databaseUrl);
    if (pooling.kind === 'transaction' && options.ownSession) {
      const direct = globals.directDatabaseUrl ?? runtime.streams.env.DIRECT_DATABASE_URL;
      if (!direct) {
        throw new ConfigError(
          `${options.ownSession} needs a database session of its own, and DATABASE_URL reaches PostgreSQL through ${describeTransactionPooling(pooling)}. Nothing was changed. Give PostgreSQL's own address with --direct-database-url (or DIRECT_DATABASE_URL), as Rails and Supabase keep a "direct" URL for migrations.`,
        );
      }
      await db.destroy();
      databaseUrl = direct;
      target.database = describeDatabase(direct);
      db = createDb({ url: databaseUrl, poolSize: connections });
      await checkConnection(db, databaseUrl);
      pooling = await detectSessionPooling(db, databaseUrl);
      if (pooling.kind === 'transaction') {
        throw new ConfigError(`${options.ownSession} needs a database session of its own, and the direct database URL also reaches ${describeTransactionPooling(pooling)}. Nothing was changed. Point --direct-database-url at PostgreSQL itself.`);
      }
      step(`${options.ownSession}: through the direct URL, ${target.database}`);
    }
    // Where it cannot be told, settings are made per transaction: right behind a pooler and on a kept session.
    setPooling(db, pooling.kind === 'unknown' ? 'transaction' : pooling.kind);
    step(`sessions: ${pooling.seen}`);
    if (options.database) {
      const gate = await import('../../../src/ops/database-gate.ts');
      await (options.database === 'write' ? gate.assertDatabaseAllowsWrites(db) : gate.assertDatabaseReadable(db));
      step(`the database allows what this command needs (${options.database === 'write' ? 'writes' : 'reads'})`);
      if (options.database === 'write') {
        const room = await gate.assertConnectionsAvailable(db, connections, `a pool of ${connections} for --concurrency ${concurrency}`);
        if (room.warning) output.warn(room.warning);
        step(`connections: room for ${Number.isFinite(room.limits.headroom) ? room.limits.headroom : 'any number'} more, this command takes up to ${connections}`);
      }
    }
    if (storeConfig) {
      store = new ObjectStore(storeConfig, {
        maxSockets: concurrency + 8,
        requestTimeoutMs: globals.requestTimeout,
        maxAttempts: globals.maxAttempts,
        onRequest: options.onRequest,
        // After Ctrl-C or SIGTERM no failed attempt is retried: the requests in flight end within one deadline.
        stopping: runtime.signal,
      });
      if (options.store !== 'unchecked') await store.checkBucket();
      step(`bucket ${target.bucket} answers as S3, ${concurrency + 8} sockets at most, reached ${(await import('../../../src/store/network.ts')).describeRoute(storeConfig.endpoint, storeConfig.network ?? {})}`);
    }
    if (globals.metricsPort !== undefined) metrics = await startMetrics(globals.metricsPort, output, runtime, store);
  } catch (error) {
    store?.destroy();
    await db.destroy();
    throw error;
  }
  return {
    db,
    store,
    databaseUrl,
    target,
    close: async () => {
      await metrics?.close();
      store?.destroy();
      await db.destroy();
    },
  };
}

/** The bucket a command that opens no store would use, for naming it; none when it is not configured. */
function namedStore(resolver: ConfigResolver): { bucket: string; endpoint: string } | undefined {
  try {
    return resolver.objectStore({ allowInsecureEndpoint: true });
  } catch {
    return undefined;
  }
}

/** The run's Prometheus metrics on --metrics-port, fed by its events, until the context closes. */
async function startMetrics(port: number, output: Output, runtime: Runtime, store: ObjectStore | undefined): Promise<{ close(): Promise<void> }> {
  const { RunMetrics, serveMetrics } = await import('../render/metrics.ts');
  const metrics = new RunMetrics(store);
  const served = await serveMetrics(metrics, port);
  const sink: EventSink = (event) => metrics.observe(event);
  (runtime.eventSinks ??= new Set()).add(sink);
  // Said even with --quiet: a scraper needs to know where to look.
  output.warn(`metrics at http://0.0.0.0:${served.port}/metrics`);
  return {
    close: async () => {
      runtime.eventSinks?.delete(sink);
      metrics.close();
      await served.close();
    },
  };
}

/** The placement thresholds' flags, parsed to bytes (thresholdOptions). */
export interface ThresholdFlags {
  hybridThreshold?: number;
  r2Threshold?: number;
}

/** The flags addWalkOptions adds, as its parsers give them. */
export interface WalkFlags extends ThresholdFlags {
  app?: string[];
  rollout?: number;
  shard?: { index: number; count: number };
  tables?: string;
  limit?: number;
  batchSize: number;
  batchBytes: number;
  concurrency: number;
  settle?: number;
}

/** The flags addPacingOptions adds. */
export interface PacingFlags {
  maxRate?: number;
  maxDbLoad?: number;
  dbLoadProbe?: string;
  dbLoadTimeout?: number;
}

/** The flags addPriceOptions adds. */
export interface PriceFlags {
  storageClass?: StorageClass;
  priceStorage?: number;
  priceClassA?: number;
  priceClassB?: number;
  priceDatabase: number;
}

/** Flags of every command that walks rows (migrate, verify, finalize, rollback). */
export function addWalkOptions(command: Command): Command {
  return command
    .option('--app <id>', 'only this app (repeatable, or comma-separated)', parse.collectIds)
    .option('--rollout <percent>', 'only this percentage of apps, chosen by a stable hash of app_id (10 → 50 → 100 only widens)', parse.percent())
    .option('--shard <I/N>', 'only rows with id mod N = I (run N processes, one per shard)', parse.shard)
    .option('--tables <list>', 'comma-separated: files, snapshots, version-files (default: all three)')
    .option('--limit <n>', 'stop after this many rows', parse.integer({ min: 1 }))
    .option('--batch-size <n>', 'rows per batch', parse.integer({ min: 1, max: 100_000 }), DEFAULT_WALK.batchSize)
    .addOption(new Option('--batch-bytes <size>', 'content bytes per batch, e.g. 8MiB').argParser(parse.byteSize({ min: 1 })).default(DEFAULT_WALK.batchBytes, '8MiB'))
    .option('--concurrency <n>', 'S3 requests in flight', parse.integer({ min: 1, max: 1024 }), DEFAULT_WALK.concurrency)
    .option('--settle <duration>', "after flipping rows, wait this long for the app's saves in flight, then repair any they left unreadable (default: $OVERSKILL_STORAGE_SETTLE, else 2s)", parse.duration)
    .addOption(thresholdOptions()[0])
    .addOption(thresholdOptions()[1]);
}

/** The placement thresholds, as every command that places or reports contents takes them. */
export function thresholdOptions(): [Option, Option] {
  return [
    new Option('--hybrid-threshold <size>', 'smallest content that goes to R2').argParser(parse.byteSize()).default(DEFAULT_POLICY.hybridMin, '1KiB'),
    new Option('--r2-threshold <size>', 'contents above this lose their database copy at finalize').argParser(parse.byteSize()).default(DEFAULT_POLICY.r2Above, '10KiB'),
  ];
}

export function addPacingOptions(command: Command): Command {
  return command
    .option('--max-rate <n>', 'at most this many objects per second', parse.decimal({ min: 0, exclusiveMin: true }))
    .option('--max-db-load <n>', 'pause while --db-load-probe returns more than this', parse.decimal({ min: 0 }))
    .option('--db-load-probe <sql>', 'SQL returning one number, e.g. replication lag in seconds; run read-only, and checked before the run starts', "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'")
    .option('--db-load-timeout <duration>', "the probe's statement timeout; a probe that takes longer holds the run like a high load", parse.duration);
}

export function addPriceOptions(command: Command): Command {
  return command
    .addOption(new Option('--storage-class <class>', "the R2 storage class objects land in (`doctor` tells): its list prices are the defaults below").choices(STORAGE_CLASSES).default('standard'))
    .addOption(new Option('--price-storage <usd>', 'R2 storage, $/GB-month (default: the class\'s; Standard 0.015)').argParser(parse.decimal()))
    .addOption(new Option('--price-class-a <usd>', 'R2 Class A (writes, lists), $/million (Standard 4.50)').argParser(parse.decimal()))
    .addOption(new Option('--price-class-b <usd>', 'R2 Class B (reads), $/million (Standard 0.36)').argParser(parse.decimal()))
    .addOption(new Option('--price-database <usd>', 'PostgreSQL storage, $/GB-month (values the bytes saved)').argParser(parse.decimal()).default(DEFAULT_PRICES.databasePerGbMonth));
}

export function pricesFrom(opts: PriceFlags): Prices {
  const storageClass = opts.storageClass ?? 'standard';
  const list = storageClass === 'infrequent-access' ? INFREQUENT_ACCESS_PRICES : { ...DEFAULT_PRICES, retrievalPerGb: 0 };
  return {
    storageClass,
    storagePerGbMonth: opts.priceStorage ?? list.storagePerGbMonth,
    classAPerMillion: opts.priceClassA ?? list.classAPerMillion,
    classBPerMillion: opts.priceClassB ?? list.classBPerMillion,
    retrievalPerGb: list.retrievalPerGb,
    databasePerGbMonth: opts.priceDatabase,
  };
}

export function policyFrom(opts: ThresholdFlags): PlacementPolicy {
  const policy = { hybridMin: opts.hybridThreshold ?? DEFAULT_POLICY.hybridMin, r2Above: opts.r2Threshold ?? DEFAULT_POLICY.r2Above };
  const problem = validatePolicy(policy);
  if (problem) throw new UsageError(`Invalid thresholds: ${problem}.`);
  return policy;
}

/** The settle period before a flipping run's closing repair: --settle, else $OVERSKILL_STORAGE_SETTLE, else 2 s. */
export const DEFAULT_SETTLE_MS = 2000;

function settleFrom(opts: Pick<WalkFlags, 'settle'>, env: NodeJS.ProcessEnv): number {
  if (opts.settle !== undefined) return opts.settle;
  const fromEnv = env.OVERSKILL_STORAGE_SETTLE;
  if (fromEnv === undefined || fromEnv === '') return DEFAULT_SETTLE_MS;
  try {
    return parse.duration(fromEnv);
  } catch {
    throw new UsageError(`OVERSKILL_STORAGE_SETTLE must be a duration like 2s or 500ms, got "${fromEnv}".`);
  }
}

export function runOptionsFrom(opts: WalkFlags & PacingFlags, signal: AbortSignal, env: NodeJS.ProcessEnv = {}): CommonRunOptions {
  let tables;
  try {
    tables = parseTables(opts.tables);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const probeSql = opts.dbLoadProbe;
  if (opts.maxDbLoad !== undefined && !probeSql) throw new UsageError('--max-db-load needs --db-load-probe.');
  const walk: WalkOptions = {
    filter: { appIds: opts.app, rolloutPercent: opts.rollout, shard: opts.shard },
    limit: opts.limit,
    batchSize: opts.batchSize,
    batchBytes: opts.batchBytes,
    concurrency: opts.concurrency,
    maxRate: opts.maxRate,
    dbLoad: opts.maxDbLoad !== undefined && probeSql ? { probeSql, threshold: opts.maxDbLoad, timeoutMs: opts.dbLoadTimeout } : undefined,
    signal,
  };
  return { ...walk, tables, policy: policyFrom(opts), inlineMaxBytes: DEFAULT_INLINE_MAX, settleMs: settleFrom(opts, env) };
}
