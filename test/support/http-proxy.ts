import http from 'node:http';
import { createGunzip } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import type { R2Emulation } from '../../src/local/r2-emulation.ts';

/** What the injector may do to one request instead of (or while) forwarding it. */
export type Fault =
  | { kind: 'status'; status: number; code?: string }
  | { kind: 'truncate'; keepBytes: number }
  | { kind: 'blackhole' }
  | { kind: 'reset' }
  | { kind: 'delay'; ms: number }
  /**
   * Flips one byte of the request body and drops Content-MD5: a server that stores what it gets. The bytes
   * go to `serverPort` (the server itself, past the front's checks): the fault is the server's, not the wire's.
   */
  | { kind: 'corrupt' }
  /**
   * Flips one byte of the request body and forwards everything else as it came: bytes damaged on the wire. Put
   * it on a proxy in front of a front that checks digests (a proxy whose own emulation reads bodies first
   * would check them before the damage).
   */
  | { kind: 'garble' }
  /** Forwards the request (the server acts on it) but never answers the client. */
  | { kind: 'hold'; onForwarded?: () => void }
  /** Answers the server's headers and the first `keepBytes` of its body, then holds the rest for ever (the socket stays open). */
  | { kind: 'stallBody'; keepBytes: number }
  /** Holds the request until `opened` settles: the client is then known to be waiting on this very request. */
  | { kind: 'gate'; arrived: () => void; opened: Promise<void> };

export interface SeenRequest {
  method: string;
  path: string;
  key: string;
  query: string;
}

/**
 * An HTTP proxy in front of the S3 server: it forwards every request unchanged (the Host header too, so
 * SigV4 signatures stay valid), records what it saw, and answers chosen requests with faults. With an
 * R2Emulation it also does what R2 does and s3rver does not (see r2-emulation.ts); several proxies (one per
 * client, each with its own latency) can share one emulation, as several clients share one bucket.
 */
export class S3Proxy {
  readonly seen: SeenRequest[] = [];
  private server?: http.Server;
  private rules: { match: (request: SeenRequest, index: number) => boolean; fault: Fault; times: number }[] = [];
  latencyMs = 0;
  /** A name for this proxy's client in the emulation's journal. */
  lane = '';
  /** A random extra delay up to this, per request, so requests overtake each other. */
  jitterMs = 0;
  /** Hand objects stored with Content-Encoding: gzip back decompressed to clients that did not ask for gzip (as Cloudflare may). */
  decompressForPlainClients = false;
  /** GETs answered decompressed so far, and their keys. */
  decompressed = 0;
  readonly decompressedKeys: string[] = [];
  port = 0;
  /** Per forwarded request, ms from forwarding it to the server's answer: how long the server itself took (the bench). */
  readonly serverMs: number[] = [];
  /** Where a `corrupt` fault sends its bytes (the bare server behind any front); the target by default. */
  serverPort?: number;
  /**
   * Further servers on the same store (s3rver processes sharing one directory): requests go to the target and
   * these in turn, as a store's requests are spread over its machines (the bench).
   */
  alsoTo: number[] = [];
  private turn = 0;

  constructor(private readonly targetPort: number, private readonly bucket: string, readonly r2?: R2Emulation) {}

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private nextUpstream(): number {
    if (this.alsoTo.length === 0) return this.targetPort;
    const ports = [this.targetPort, ...this.alsoTo];
    return ports[this.turn++ % ports.length];
  }

  /** Injects `fault` into the next `times` requests that `match` accepts. */
  inject(match: (request: SeenRequest, index: number) => boolean, fault: Fault, times = 1): void {
    this.rules.push({ match, fault, times });
  }

  clearFaults(): void {
    this.rules = [];
  }

  count(method: string, keyPrefix = ''): number {
    return this.seen.filter((request) => request.method === method && request.key.startsWith(keyPrefix) && !request.query.includes('uploadId') && !request.query.includes('uploads')).length;
  }

  putsPerKey(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const request of this.seen) {
      if (request.method === 'PUT' && request.key && !request.query.includes('partNumber')) counts.set(request.key, (counts.get(request.key) ?? 0) + 1);
      if (request.method === 'POST' && request.query.includes('uploadId')) counts.set(request.key, (counts.get(request.key) ?? 0) + 1);
    }
    return counts;
  }

  async start(): Promise<this> {
    const sockets = new Set<import('node:net').Socket>();
    this.server = http.createServer((request, response) => this.handle(request, response));
    this.server.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    (this as unknown as { sockets: typeof sockets }).sockets = sockets;
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const socket of (this as unknown as { sockets: Set<import('node:net').Socket> }).sockets ?? []) socket.destroy();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }

  private handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    const url = new URL(request.url ?? '/', 'http://proxy');
    const path = decodeURIComponent(url.pathname);
    const prefix = `/${this.bucket}/`;
    const seen: SeenRequest = { method: request.method ?? 'GET', path, key: path.startsWith(prefix) ? path.slice(prefix.length) : '', query: url.search };
    const index = this.seen.length;
    this.seen.push(seen);
    const rule = this.rules.find((candidate) => candidate.times > 0 && candidate.match(seen, index));
    if (rule) rule.times--;
    const fault = rule?.fault;
    // `body`: the request's bytes when a front (the emulation) has read them already.
    const forward = (finished: (status: number) => void = () => undefined, body?: Buffer) => {
      // (A body read whole already leaves the request destroyed: that is not the client going away.)
      if (request.destroyed && !body) {
        finished(499); // the client went away while the request waited: nothing reaches the server
        return;
      }
      if (fault?.kind === 'status') {
        request.resume();
        request.on('end', () => {
          response.writeHead(fault.status, { 'content-type': 'application/xml' });
          response.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${fault.code ?? 'InternalError'}</Code><Message>injected</Message></Error>`);
        });
        return;
      }
      if (fault?.kind === 'blackhole') {
        request.resume();
        return; // never answers
      }
      if (fault?.kind === 'reset') {
        request.socket.destroy();
        return;
      }
      const headers = { ...request.headers };
      if (fault?.kind === 'corrupt') delete headers['content-md5'];
      const forwardedAt = performance.now();
      const upstream = http.request(
        { host: '127.0.0.1', port: fault?.kind === 'corrupt' ? (this.serverPort ?? this.targetPort) : this.nextUpstream(), method: request.method, path: request.url, headers },
        (upstreamResponse) => {
          const status = upstreamResponse.statusCode ?? 500;
          this.serverMs.push(performance.now() - forwardedAt);
          upstreamResponse.on('end', () => finished(status));
          upstreamResponse.on('error', () => finished(500));
          if (fault?.kind === 'hold') {
            upstreamResponse.resume();
            upstreamResponse.on('end', () => fault.onForwarded?.());
            return;
          }
          if (fault?.kind === 'truncate' || fault?.kind === 'stallBody') {
            // The headers and the first bytes of the body; then the socket is cut (truncate) or held open for ever (stallBody).
            const cut = fault.kind === 'truncate';
            response.writeHead(upstreamResponse.statusCode ?? 500, upstreamResponse.headers);
            let sent = 0;
            upstreamResponse.on('data', (chunk: Buffer) => {
              if (sent >= fault.keepBytes) return;
              const part = chunk.subarray(0, fault.keepBytes - sent);
              sent += part.length;
              response.write(part);
              if (cut && sent >= fault.keepBytes) setTimeout(() => response.socket?.destroy(), 5);
            });
            if (cut) upstreamResponse.on('end', () => response.socket?.destroy());
            return;
          }
          // Cloudflare's transparent decompression: an object stored with Content-Encoding: gzip goes to a
          // client that did not send Accept-Encoding: gzip decompressed, without that header or its length.
          const encoded = /gzip/i.test(String(upstreamResponse.headers['content-encoding'] ?? ''));
          if (this.decompressForPlainClients && request.method === 'GET' && encoded && !/gzip/i.test(String(request.headers['accept-encoding'] ?? ''))) {
            const headers = { ...upstreamResponse.headers };
            delete headers['content-encoding'];
            delete headers['content-length'];
            response.writeHead(upstreamResponse.statusCode ?? 500, headers);
            upstreamResponse.pipe(createGunzip()).pipe(response);
            this.decompressed++;
            this.decompressedKeys.push(seen.key);
            return;
          }
          response.writeHead(upstreamResponse.statusCode ?? 500, upstreamResponse.headers);
          upstreamResponse.pipe(response);
        },
      );
      upstream.on('error', () => {
        finished(500);
        response.socket?.destroy();
      });
      // Never hold an emulation lock on a key forever, whatever happens to the exchange.
      upstream.setTimeout(30_000, () => upstream.destroy(new Error('upstream timed out')));
      if (body) {
        upstream.end(body);
        return;
      }
      if (fault?.kind === 'corrupt' || fault?.kind === 'garble') {
        let flipped = false;
        request.on('data', (chunk: Buffer) => {
          const copy = Buffer.from(chunk);
          if (!flipped && copy.length) {
            copy[0] ^= 0x01;
            flipped = true;
          }
          upstream.write(copy);
        });
        request.on('end', () => upstream.end());
        return;
      }
      // A client that dies mid-body (a killed process) aborts the upload, as a real server would: the server is
      // not left waiting for the rest, and the emulation's lock on the key is released.
      request.on('close', () => {
        if (!request.readableEnded) {
          upstream.destroy();
          finished(499);
        }
      });
      request.pipe(upstream);
    };
    const reachesServer = fault?.kind !== 'status' && fault?.kind !== 'blackhole' && fault?.kind !== 'reset';
    const proceed = () => {
      if (this.r2 && reachesServer) void this.r2.handle(request, response, seen.key, forward, this.lane);
      else forward();
    };
    const delay = (fault?.kind === 'delay' ? fault.ms : 0) + this.latencyMs + Math.random() * this.jitterMs;
    if (fault?.kind === 'gate') {
      fault.arrived();
      void fault.opened.then(proceed);
    } else if (delay > 0) setTimeout(proceed, delay);
    else proceed();
  }
}
