import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { insertApp, insertFile, text } from './support/seed.ts';
import { proxyFor } from '../src/store/network.ts';

const HOST = 's3.internal.test';

/** A private CA and a certificate it signed for HOST and 127.0.0.1, made with openssl. */
function privateCa(dir: string): { caFile: string; key: Buffer; cert: Buffer } {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=overskill test private CA');
  run('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', `/CN=${HOST}`);
  writeFileSync(join(dir, 'san.ext'), `subjectAltName=DNS:${HOST},IP:127.0.0.1\n`);
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext');
  return { caFile: join(dir, 'ca.pem'), key: readFileSync(join(dir, 'server.key')), cert: readFileSync(join(dir, 'server.pem')) };
}

/**
 * Production networks between the tool and its bucket: a TLS-terminating gateway whose certificate a private
 * CA signed (an on-premises S3, a corporate gateway), and an egress proxy that is the only way out (and the
 * only resolver of the store's name). Both request paths of the tool go through both.
 */
describe('a private CA and an egress proxy', () => {
  let env: TestEnv;
  let dir: string;
  let caFile: string;
  let tls: https.Server;
  let tlsPort: number;
  let proxy: http.Server;
  let proxyPort: number;
  const tunnels: string[] = [];

  beforeAll(async () => {
    env = await createTestEnv();
    dir = mkdtempSync(join(tmpdir(), 'oss-ca-'));
    const ca = privateCa(dir);
    caFile = ca.caFile;
    // The gateway: TLS in front of the local store, every request passed on as it came (signatures stay valid).
    tls = https.createServer({ key: ca.key, cert: ca.cert }, (request, response) => {
      const upstream = http.request({ host: '127.0.0.1', port: env.s3.port, method: request.method, path: request.url, headers: request.headers }, (answer) => {
        response.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(response);
      });
      upstream.on('error', () => response.destroy());
      request.pipe(upstream);
    });
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
    tlsPort = (tls.address() as AddressInfo).port;
    // The egress proxy: CONNECT tunnels only, and the only one that knows where HOST is.
    proxy = http.createServer((_request, response) => {
      response.writeHead(405);
      response.end();
    });
    proxy.on('connect', (request: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
      const [host, port] = String(request.url).split(':');
      tunnels.push(`${host}:${port}`);
      const target = net.connect(Number(port), host === HOST ? '127.0.0.1' : host, () => {
        socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        if (head.length) target.write(head);
        target.pipe(socket);
        socket.pipe(target);
      });
      target.on('error', () => socket.destroy());
      socket.on('error', () => target.destroy());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    proxyPort = (proxy.address() as AddressInfo).port;
  });
  afterAll(async () => {
    tls?.closeAllConnections();
    proxy?.closeAllConnections();
    await new Promise((resolve) => tls?.close(resolve));
    await new Promise((resolve) => proxy?.close(resolve));
    await env?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const direct = () => ({ ...env.cliEnv, R2_ENDPOINT: `https://127.0.0.1:${tlsPort}` });
  const viaProxy = () => ({ ...env.cliEnv, R2_ENDPOINT: `https://${HOST}:${tlsPort}`, HTTPS_PROXY: `http://127.0.0.1:${proxyPort}`, AWS_CA_BUNDLE: caFile });

  it('a certificate this machine does not trust is refused in one sentence: "certificate", the host, and the three ways to trust one', async () => {
    const doctor = await cli(['doctor', '--json'], direct());
    expect(doctor.code).toBe(1);
    const seen = doctor.json().checks.find((c: { id: string }) => c.id === 'connect').seen as string;
    expect(seen).toMatch(new RegExp(`The object store at 127\\.0\\.0\\.1:${tlsPort} presented a certificate this machine does not trust \\(\\w+\\)`));
    expect(seen).toMatch(/--ca-bundle FILE, or AWS_CA_BUNDLE=FILE .*, or NODE_EXTRA_CA_CERTS=FILE/);
    const cleanup = await cli(['cleanup', '--dry-run'], direct());
    expect(cleanup.code).toBe(2);
    expect(cleanup.stderr).toMatch(/certificate this machine does not trust/);
    // `cat` skips the bucket check (its bytes are hash-checked): its GET says the same sentence.
    const app = await insertApp(env.db, 'untrusted-cat');
    await insertFile(env.db, app, 'src/c.ts', text(20_000, 'c '));
    expect((await cli(['migrate', '--yes', '--app', app, '--ca-bundle', caFile], direct())).code).toBe(0);
    expect((await cli(['finalize', '--yes', '--app', app, '--r2-threshold', '1KiB', '--ca-bundle', caFile], direct())).code).toBe(0);
    const cat = await cli(['cat', app, 'src/c.ts'], direct());
    expect(cat.code).toBe(2);
    expect(cat.stderr).toMatch(new RegExp(`The object store at 127\\.0\\.0\\.1:${tlsPort} presented a certificate this machine does not trust .*--ca-bundle FILE, or AWS_CA_BUNDLE=FILE .*, or NODE_EXTRA_CA_CERTS=FILE`));
    expect(cat.stdout).toBe('');
  });

  it('AWS_CA_BUNDLE and --ca-bundle are trusted by every request, on both request paths', async () => {
    const app = await insertApp(env.db, 'private-ca');
    // A small file (per-object requests) and one large enough for a multipart upload (the SDK's path).
    await insertFile(env.db, app, 'src/small.ts', text(30_000, 'small '));
    await insertFile(env.db, app, 'public/large.txt', text(6 * 1024 * 1024 + 100, 'large '));
    const doctor = await cli(['doctor', '--json'], { ...direct(), AWS_CA_BUNDLE: caFile });
    expect(doctor.code, doctor.stdout).toBe(0);
    for (const args of [['migrate', '--yes', '--app', app], ['verify', '--deep', '--app', app], ['cat', app, 'public/large.txt']]) {
      const run = await cli([...args, '--ca-bundle', caFile], direct());
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(0);
    }
    expect((await cli(['rollback', '--yes', '--purge', '--app', app], { ...direct(), AWS_CA_BUNDLE: caFile })).code).toBe(0);
    const missing = await cli(['doctor'], { ...direct(), AWS_CA_BUNDLE: join(dir, 'nope.pem') });
    expect(missing.stdout + missing.stderr).toMatch(/Cannot read the certificate bundle .*nope\.pem \(AWS_CA_BUNDLE\)/);
  });

  it('HTTPS_PROXY carries every request to a store only the proxy can reach, and -v names it; NO_PROXY bypasses it', async () => {
    const app = await insertApp(env.db, 'proxied');
    await insertFile(env.db, app, 'src/a.ts', text(20_000, 'a '));
    await insertFile(env.db, app, 'public/large.txt', text(6 * 1024 * 1024 + 100, 'large '));
    const before = tunnels.length;
    const verbose = await cli(['doctor', '-v'], viaProxy());
    expect(verbose.code, verbose.stdout + verbose.stderr).toBe(0);
    expect(verbose.stderr).toMatch(new RegExp(`reached through the proxy http://127\\.0\\.0\\.1:${proxyPort}, trusting the certificates of AWS_CA_BUNDLE`));
    for (const args of [['migrate', '--yes', '--app', app], ['verify', '--deep', '--app', app], ['finalize', '--yes', '--app', app, '--r2-threshold', '1KiB'], ['cat', app, 'src/a.ts'], ['rollback', '--yes', '--purge', '--app', app], ['cleanup', '--grace', '0s', '--yes']]) {
      const run = await cli(args, viaProxy());
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(0);
    }
    expect(tunnels.slice(before).length).toBeGreaterThan(0);
    expect(new Set(tunnels.slice(before))).toEqual(new Set([`${HOST}:${tlsPort}`]));
    // Without the proxy the name does not resolve; with NO_PROXY naming it, the proxy is not asked.
    const counted = tunnels.length;
    const bypassed = await cli(['doctor', '--json'], { ...viaProxy(), NO_PROXY: `.internal.test` });
    expect(bypassed.code).toBe(1);
    expect(tunnels.length).toBe(counted);
    const lower = await cli(['doctor', '--json'], { ...viaProxy(), HTTPS_PROXY: undefined, https_proxy: `http://127.0.0.1:${proxyPort}` });
    expect(lower.code, lower.stdout).toBe(0);
  }, 120_000);

  it('reads NO_PROXY as curl does', () => {
    const settings = { httpsProxy: 'http://proxy:3128', httpProxy: 'http://proxy:3128' };
    expect(proxyFor('https://x.r2.cloudflarestorage.com', settings)).toBe('http://proxy:3128');
    expect(proxyFor('https://x.r2.cloudflarestorage.com', { ...settings, noProxy: 'cloudflarestorage.com' })).toBeUndefined();
    expect(proxyFor('https://x.r2.cloudflarestorage.com', { ...settings, noProxy: '.r2.cloudflarestorage.com' })).toBeUndefined();
    expect(proxyFor('https://x.r2.cloudflarestorage.com', { ...settings, noProxy: 'storage.com' })).toBe('http://proxy:3128');
    expect(proxyFor('http://127.0.0.1:9000', { ...settings, noProxy: 'localhost,127.0.0.1' })).toBeUndefined();
    expect(proxyFor('http://127.0.0.1:9000', { ...settings, noProxy: '127.0.0.1:9001' })).toBe('http://proxy:3128');
    expect(proxyFor('https://a.example', { ...settings, noProxy: '*' })).toBeUndefined();
    expect(proxyFor('https://a.example', { httpProxy: 'http://p:1' })).toBeUndefined();
  });
});
