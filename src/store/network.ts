import http from 'node:http';
import https from 'node:https';
import { rootCertificates } from 'node:tls';
import { HttpsProxyAgent } from 'https-proxy-agent';
import { Pool, ProxyAgent, type Dispatcher } from 'undici';
import type { NetworkOptions, ProxySettings } from '../config.ts';

export type { NetworkOptions, ProxySettings } from '../config.ts';

/**
 * How the tool's requests reach the store through the network a production cluster has: an egress proxy and
 * a private certificate authority (config.ts reads both). Both request paths take both: the per-object
 * requests (undici) and the SDK's (Node's agents).
 */
/** Whether NO_PROXY exempts a host: `*`, a host, `.domain` or `domain` (and its subdomains), an optional `:port`. */
function exempt(url: URL, noProxy: string | undefined): boolean {
  if (!noProxy) return false;
  const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  return noProxy
    .split(/[,\s]+/)
    .map((entry) => entry.trim().toLowerCase())
    .filter(Boolean)
    .some((entry) => {
      if (entry === '*') return true;
      const [name, entryPort] = entry.startsWith('[') ? [entry.slice(1, entry.indexOf(']')), entry.slice(entry.indexOf(']') + 2) || undefined] : entry.split(':');
      if (entryPort && entryPort !== port) return false;
      const bare = name.replace(/^\*?\./, '');
      return host === bare || host.endsWith(`.${bare}`);
    });
}

/** The proxy a request to `endpoint` goes through, or undefined for a direct connection. */
export function proxyFor(endpoint: string, settings: ProxySettings | undefined): string | undefined {
  if (!settings) return undefined;
  const url = new URL(endpoint);
  if (exempt(url, settings.noProxy)) return undefined;
  return url.protocol === 'https:' ? settings.httpsProxy : settings.httpProxy;
}

/** The certificates to trust: the public ones Node trusts, and the bundle's. */
function trusted(options: NetworkOptions): string[] | undefined {
  return options.caBundle ? [...rootCertificates, options.caBundle] : undefined;
}

/** The per-object requests' dispatcher: a pool to the endpoint, or the proxy's tunnel to it. */
export function objectDispatcher(endpoint: string, options: NetworkOptions, pool: { connections: number; connectTimeoutMs: number; headersTimeoutMs: number; bodyTimeoutMs: number }): Dispatcher {
  const ca = trusted(options);
  const proxy = proxyFor(endpoint, options.proxy);
  const common = {
    connections: pool.connections,
    // One request per connection at a time: a PUT is not idempotent enough to be replayed behind another
    // that broke the connection, and R2's round trip is spent waiting, not in the socket.
    pipelining: 1,
    headersTimeout: pool.headersTimeoutMs,
    bodyTimeout: pool.bodyTimeoutMs,
  };
  if (proxy) {
    return new ProxyAgent({ ...common, uri: proxy, requestTls: { ...(ca ? { ca } : {}), timeout: pool.connectTimeoutMs }, proxyTls: { ...(ca ? { ca } : {}), timeout: pool.connectTimeoutMs }, connect: { timeout: pool.connectTimeoutMs } });
  }
  return new Pool(new URL(endpoint).origin, { ...common, connect: { timeout: pool.connectTimeoutMs, ...(ca ? { ca } : {}) } });
}

/** https-proxy-agent's tunnel, whose TLS to the store (not only to the proxy) trusts the bundle too. */
class TrustingProxyAgent extends HttpsProxyAgent<string> {
  constructor(
    proxy: string,
    agentOptions: http.AgentOptions & { ca?: string[] },
    private readonly ca?: string[],
  ) {
    super(proxy, agentOptions);
  }

  override connect(request: http.ClientRequest, options: Parameters<HttpsProxyAgent<string>['connect']>[1]) {
    // Only the TLS to an https store reads `ca`; a plain connection's options ignore it.
    return super.connect(request, (this.ca ? { ...options, ca: this.ca } : options) as typeof options);
  }
}

/** The SDK path's agents for http and https endpoints: Node's own, or the proxy's tunnel. */
export function sdkAgents(endpoint: string, options: NetworkOptions, agentOptions: http.AgentOptions): { httpAgent: http.Agent; httpsAgent: https.Agent } {
  const ca = trusted(options);
  const proxy = proxyFor(endpoint, options.proxy);
  if (proxy) {
    const tunnel = new TrustingProxyAgent(proxy, { ...agentOptions, ...(ca ? { ca } : {}) }, ca);
    return { httpAgent: tunnel, httpsAgent: tunnel as unknown as https.Agent };
  }
  return { httpAgent: new http.Agent(agentOptions), httpsAgent: new https.Agent({ ...agentOptions, ...(ca ? { ca } : {}) }) };
}

const CERTIFICATE_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** The certificate error code somewhere in an error's causes, if there is one. */
export function certificateErrorCode(error: unknown): string | undefined {
  for (let e = error as { code?: string; cause?: unknown; message?: string } | undefined, depth = 0; e && depth < 6; e = e.cause as typeof e, depth++) {
    if (e.code && CERTIFICATE_CODES.has(e.code)) return e.code;
    const named = [...CERTIFICATE_CODES].find((code) => e!.message?.includes(code));
    if (named) return named;
  }
  return undefined;
}

/** One sentence for a store whose certificate this machine does not trust: what, where, and the three ways to trust it. */
export function certificateSentence(endpoint: string, code: string, options: NetworkOptions): string {
  const host = new URL(endpoint).host;
  const trustedNow = options.caBundleSource ? ` (the bundle from ${options.caBundleSource} was trusted, and does not vouch for it)` : '';
  return `The object store at ${host} presented a certificate this machine does not trust (${code})${trustedNow}. To trust its certificate authority, give its PEM file as --ca-bundle FILE, or AWS_CA_BUNDLE=FILE (as the AWS CLI reads it), or NODE_EXTRA_CA_CERTS=FILE (Node's own).`;
}

/** For `-v`: how requests reach the store. */
export function describeRoute(endpoint: string, options: NetworkOptions): string {
  const proxy = proxyFor(endpoint, options.proxy);
  const via = proxy ? `through the proxy ${redactProxy(proxy)}` : options.proxy ? 'directly (NO_PROXY exempts it)' : 'directly';
  return `${via}${options.caBundleSource ? `, trusting the certificates of ${options.caBundleSource} besides the public ones` : ''}`;
}

function redactProxy(proxy: string): string {
  try {
    const url = new URL(proxy);
    if (url.password) url.password = '***';
    return url.toString().replace(/\/$/, '');
  } catch {
    return proxy;
  }
}
