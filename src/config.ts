import { parseEnv } from 'node:util';
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { ConfigError } from './errors.ts';
import { registerSecret } from './secrets.ts';

/** Where the tool reads from: flags win over the environment, which wins over `.env` in the working directory. */
export interface ConfigSources {
  flags: Partial<Record<ConfigKey, string | undefined>>;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export type ConfigKey =
  | 'databaseUrl'
  | 'accountId'
  | 'endpoint'
  | 'accessKeyId'
  | 'secretAccessKey'
  | 'bucket'
  | 'region';

const ENV_NAMES: Record<ConfigKey, string[]> = {
  databaseUrl: ['DATABASE_URL'],
  accountId: ['R2_ACCOUNT_ID'],
  endpoint: ['R2_ENDPOINT'],
  accessKeyId: ['R2_ACCESS_KEY_ID'],
  secretAccessKey: ['R2_SECRET_ACCESS_KEY'],
  bucket: ['R2_BUCKET', 'CLOUDFLARE_R2_BUCKET_DB_FILES'],
  region: ['R2_REGION'],
};

export interface DatabaseConfig {
  url: string;
}

/**
 * The network between this machine and the store (store/network.ts acts on it): an egress proxy (`HTTPS_PROXY`,
 * `HTTP_PROXY`, `NO_PROXY`, either case, as the AWS CLI, curl and rclone read them) and a private certificate
 * authority (`--ca-bundle` or `AWS_CA_BUNDLE`, the AWS CLI's and SDKs' names).
 */
export interface NetworkOptions {
  /** PEM certificates trusted besides the usual public ones. */
  caBundle?: string;
  /** Where the bundle came from, for messages. */
  caBundleSource?: string;
  proxy?: ProxySettings;
}

export interface ProxySettings {
  httpsProxy?: string;
  httpProxy?: string;
  noProxy?: string;
}

/** The proxy settings of an environment: the lower-case name first, as curl reads them. */
export function proxyFromEnv(env: NodeJS.ProcessEnv): ProxySettings | undefined {
  const read = (name: string) => env[name.toLowerCase()] || env[name.toUpperCase()] || undefined;
  const settings = { httpsProxy: read('https_proxy'), httpProxy: read('http_proxy'), noProxy: read('no_proxy') };
  return settings.httpsProxy || settings.httpProxy ? settings : undefined;
}

export interface ObjectStoreConfig {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  bucket: string;
  region: string;
  allowInsecureEndpoint: boolean;
  /** An egress proxy and a private certificate authority, where the network has them (store/network.ts). */
  network?: NetworkOptions;
}

/**
 * A `.env` file as dotenv users write it (quotes, a comment after a value, `export`), read by Node's own
 * parser (`util.parseEnv`), the one Node's `--env-file` uses, rather than one of ours.
 */
export function parseDotEnv(text: string): Record<string, string> {
  return { ...parseEnv(text) } as Record<string, string>;
}

export function loadDotEnv(cwd: string): Record<string, string> {
  const path = join(cwd, '.env');
  if (!existsSync(path)) return {};
  return parseDotEnv(readFileSync(path, 'utf8'));
}

export class ConfigResolver {
  private readonly dotEnv: Record<string, string>;

  constructor(private readonly sources: ConfigSources) {
    this.dotEnv = loadDotEnv(sources.cwd);
    // Register every secret we can see up front, so even a failure while parsing never shows one.
    for (const key of ['secretAccessKey', 'accessKeyId'] as const) registerSecret(this.get(key));
    const url = this.get('databaseUrl');
    if (url) {
      try {
        registerSecret(decodeURIComponent(new URL(url).password));
      } catch {
        // Malformed URL: reported by database() below.
      }
    }
  }

  get(key: ConfigKey): string | undefined {
    const flag = this.sources.flags[key];
    if (flag !== undefined && flag !== '') return flag;
    for (const name of ENV_NAMES[key]) {
      const value = this.sources.env[name];
      if (value !== undefined && value !== '') return value;
    }
    for (const name of ENV_NAMES[key]) {
      const value = this.dotEnv[name];
      if (value !== undefined && value !== '') return value;
    }
    return undefined;
  }

  database(): DatabaseConfig {
    const url = this.get('databaseUrl');
    if (!url) {
      throw new ConfigError('DATABASE_URL is not set: pass --database-url or set DATABASE_URL (e.g. postgres://user@host:5432/db).');
    }
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new ConfigError('DATABASE_URL is malformed: expected postgres://user:password@host:port/database.');
    }
    if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
      throw new ConfigError(`DATABASE_URL must start with postgres:// or postgresql://, not ${parsed.protocol}//.`);
    }
    if (!parsed.pathname || parsed.pathname === '/') {
      throw new ConfigError('DATABASE_URL names no database: add /database_name after the host.');
    }
    return { url };
  }

  /**
   * The network between this machine and the store: the certificate authority to trust besides the public
   * ones (`--ca-bundle`, else AWS_CA_BUNDLE, as the AWS CLI reads them) and the egress proxy (HTTPS_PROXY,
   * HTTP_PROXY, NO_PROXY, either case).
   */
  network(caBundleFlag?: string): NetworkOptions {
    const file = caBundleFlag ?? (this.sources.env.AWS_CA_BUNDLE || undefined);
    let caBundle: string | undefined;
    if (file) {
      const path = isAbsolute(file) ? file : join(this.sources.cwd, file);
      try {
        caBundle = readFileSync(path, 'utf8');
      } catch (error) {
        throw new ConfigError(`Cannot read the certificate bundle ${file} (${caBundleFlag ? '--ca-bundle' : 'AWS_CA_BUNDLE'}): ${(error as Error).message}`);
      }
      if (!/-----BEGIN CERTIFICATE-----/.test(caBundle)) throw new ConfigError(`${file} (${caBundleFlag ? '--ca-bundle' : 'AWS_CA_BUNDLE'}) holds no PEM certificate (-----BEGIN CERTIFICATE-----).`);
    }
    return { ...(caBundle ? { caBundle, caBundleSource: `${caBundleFlag ? '--ca-bundle' : 'AWS_CA_BUNDLE'} ${file}` } : {}), ...(proxyFromEnv(this.sources.env) ? { proxy: proxyFromEnv(this.sources.env) } : {}) };
  }

  objectStore(options: { allowInsecureEndpoint?: boolean; caBundle?: string } = {}): ObjectStoreConfig {
    const accountId = this.get('accountId');
    let endpoint = this.get('endpoint');
    if (!endpoint && accountId) {
      if (!/^[a-zA-Z0-9-]+$/.test(accountId)) throw new ConfigError('R2_ACCOUNT_ID must be the hex account id from the Cloudflare dashboard.');
      endpoint = `https://${accountId}.r2.cloudflarestorage.com`;
    }
    if (!endpoint) throw new ConfigError('No object store configured: set R2_ACCOUNT_ID (Cloudflare R2) or R2_ENDPOINT (any S3-compatible server).');
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new ConfigError(`R2_ENDPOINT is not a URL: ${endpoint}`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError('R2_ENDPOINT must be an http:// or https:// URL.');
    const allowInsecureEndpoint = options.allowInsecureEndpoint ?? false;
    if (url.protocol === 'http:' && !isLoopbackHost(url.hostname) && !allowInsecureEndpoint) {
      throw new ConfigError(
        `R2_ENDPOINT ${url.host} is plain http:// to a non-loopback host: credentials and data would cross the network unencrypted. Use https://, or pass --allow-insecure-endpoint.`,
      );
    }
    const accessKeyId = this.get('accessKeyId');
    const secretAccessKey = this.get('secretAccessKey');
    if (!accessKeyId) throw new ConfigError('R2_ACCESS_KEY_ID is not set.');
    if (!secretAccessKey) throw new ConfigError('R2_SECRET_ACCESS_KEY is not set.');
    const bucket = this.get('bucket');
    if (!bucket) throw new ConfigError('R2_BUCKET (or CLOUDFLARE_R2_BUCKET_DB_FILES) is not set.');
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new ConfigError(`R2_BUCKET "${bucket}" is not a valid bucket name.`);
    return {
      endpoint: url.toString().replace(/\/$/, ''),
      accessKeyId,
      secretAccessKey,
      bucket,
      region: this.get('region') ?? 'auto',
      allowInsecureEndpoint,
      network: this.network(options.caBundle),
    };
  }
}

export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host) || host.endsWith('.localhost');
}
