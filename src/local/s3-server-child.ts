// Runs s3rver in its own process (its list continuation tokens need the legacy OpenSSL provider, which is
// enabled for this process only) and, unless told `bare`, a front that does what R2 does and s3rver does
// not (conditional writes, r2-emulation.ts). Prints {"port": FRONT, "barePort": S3RVER} once both listen.
import http from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { R2Emulation } from './r2-emulation.ts';

const require = createRequire(import.meta.url);
const S3rver = require('s3rver');

const [directory, bucketsArg, mode] = process.argv.slice(2);
const buckets = (bucketsArg || '').split(',').filter(Boolean);
const server = new S3rver({
  address: '127.0.0.1',
  port: Number(process.env.S3RVER_PORT || 0),
  directory,
  silent: true,
  // Path-style only, as the tool sends: a request whose Host is a name (a store reached through a proxy or a
  // gateway) is not taken to name a bucket.
  vhostBuckets: false,
  configureBuckets: buckets.map((name: string) => ({ name })),
});

/** The key a path-style request names, or '' for bucket-level requests. */
function keyOf(url: string): string {
  const path = decodeURIComponent(new URL(url, 'http://front').pathname);
  const bucket = buckets.find((name) => path.startsWith(`/${name}/`));
  return bucket ? path.slice(bucket.length + 2) : '';
}

async function front(barePort: number): Promise<number> {
  const emulation = new R2Emulation(barePort);
  const frontServer = http.createServer((request, response) => {
    // `body`: the request's bytes when the emulation has read them already (to check their digests).
    const forward = (finished: (status: number) => void, body?: Buffer) => {
      const upstream = http.request({ host: '127.0.0.1', port: barePort, method: request.method, path: request.url, headers: request.headers }, (answer) => {
        response.writeHead(answer.statusCode ?? 500, answer.headers);
        answer.pipe(response);
        answer.on('end', () => finished(answer.statusCode ?? 500));
        answer.on('error', () => finished(500));
        // A client gone during the answer must not keep the key's lock either.
        response.on('close', () => finished(answer.statusCode ?? 500));
      });
      upstream.on('error', () => {
        finished(500);
        response.destroy();
      });
      // Never hold the emulation's lock on a key forever, whatever happens to the exchange.
      upstream.setTimeout(30_000, () => upstream.destroy(new Error('upstream timed out')));
      if (body) {
        upstream.end(body);
        return;
      }
      // A client gone mid-body aborts the upload, and releases the emulation's lock on the key.
      request.on('close', () => {
        if (!request.readableEnded) {
          upstream.destroy();
          finished(499);
        }
      });
      request.pipe(upstream);
    };
    void emulation.handle(request, response, keyOf(request.url ?? '/'), forward);
  });
  await new Promise<void>((resolve) => frontServer.listen(Number(process.env.S3_FRONT_PORT || 0), '127.0.0.1', resolve));
  return (frontServer.address() as AddressInfo).port;
}

server.run().then(
  async (address: { port: number }) => {
    const port = mode === 'bare' ? address.port : await front(address.port);
    process.stdout.write(JSON.stringify({ port, barePort: address.port }) + '\n');
  },
  (error: unknown) => {
    process.stderr.write(String((error as Error)?.stack || error) + '\n');
    process.exit(1);
  },
);
const stop = () => server.close().finally(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.on('disconnect', stop);
