import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A server that speaks just enough of the PostgreSQL protocol to refuse every login with 28P01
 * ("password authentication failed"), as a real server with password auth would.
 */
export async function startRefusingPostgres(): Promise<{ port: number; stop(): Promise<void> }> {
  const server: Server = createServer((socket) => {
    socket.once('data', (data) => {
      // SSLRequest: answer "no SSL", then wait for the real startup message.
      if (data.length === 8 && data.readInt32BE(4) === 80877103) {
        socket.write('N');
        socket.once('data', () => refuse());
        return;
      }
      refuse();
    });
    const refuse = () => {
      const fields = ['SFATAL', 'VFATAL', 'C28P01', 'Mpassword authentication failed for user "app"'];
      const body = Buffer.concat([...fields.map((field) => Buffer.from(field + '\0')), Buffer.from('\0')]);
      const header = Buffer.alloc(5);
      header.write('E', 0);
      header.writeInt32BE(body.length + 4, 1);
      socket.end(Buffer.concat([header, body]));
    };
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, stop: () => new Promise((resolve) => server.close(() => resolve())) };
}
