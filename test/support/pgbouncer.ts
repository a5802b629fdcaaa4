import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_URL } from './env.ts';

/** Debian's pgbouncer, when installed (CI installs it; REQUIRE_PGBOUNCER makes its absence a failure). */
export const PGBOUNCER = (() => {
  const found = spawnSync('pgbouncer', ['--version'], { encoding: 'utf8' });
  return { available: found.status === 0 };
})();

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/**
 * A PgBouncer in front of the test server on a free loopback port, in `mode` (transaction or session). It
 * refuses to run as root, so as root it is started as `postgres`. `serverLifetimeS`: PgBouncer closes a server
 * connection this old once it is free, so a client's transactions move between ever new backends.
 */
export async function startPgBouncer(mode: 'transaction' | 'session', settings: { serverLifetimeS?: number; poolSize?: number } = {}): Promise<{ url: (database: string) => string; port: number; stop: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'oss-pgbouncer-'));
  const port = await freePort();
  const server = new URL(ADMIN_URL);
  writeFileSync(join(dir, 'users.txt'), `"${decodeURIComponent(server.username) || 'postgres'}" ""\n`);
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=${server.hostname} port=${server.port || 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'auth_type = trust',
      `auth_file = ${join(dir, 'users.txt')}`,
      `pool_mode = ${mode}`,
      `default_pool_size = ${settings.poolSize ?? 10}`,
      ...(settings.serverLifetimeS ? [`server_lifetime = ${settings.serverLifetimeS}`] : []),
      'unix_socket_dir =',
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
      '',
    ].join('\n'),
  );
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chmodSync(dir, 0o755);
    for (const file of ['', 'users.txt', 'pgbouncer.ini']) chownSync(join(dir, file), uid, gid);
  }
  const command = asRoot ? ['runuser', ['-u', 'postgres', '--', 'pgbouncer', '-d', join(dir, 'pgbouncer.ini')]] : ['pgbouncer', ['-d', join(dir, 'pgbouncer.ini')]];
  const started = spawnSync(command[0] as string, command[1] as string[], { encoding: 'utf8' });
  if (started.status !== 0) throw new Error(`pgbouncer did not start: ${started.stderr}`);
  for (let waited = 0; waited < 5000; waited += 50) {
    const ready = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => (socket.end(), resolve(true)));
      socket.on('error', () => resolve(false));
    });
    if (ready) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    port,
    url: (database: string) => {
      const url = new URL(ADMIN_URL);
      url.port = String(port);
      url.pathname = `/${database}`;
      return url.toString();
    },
    stop: () => {
      try {
        process.kill(Number(readFileSync(join(dir, 'pgbouncer.pid'), 'utf8').trim()), 'SIGTERM');
      } catch {
        // already gone
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
