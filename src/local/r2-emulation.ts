import http from 'node:http';
import { createHash } from 'node:crypto';
import { amzDateMs, checkSignature, toAmzDate, type Credentials } from './sigv4-check.ts';

type WriteKind = 'put' | 'complete' | 'copy' | 'delete';

/**
 * What R2 does that s3rver does not, done in front of it (the local server demo and tests use, and the tests'
 * proxies) so that what the tool relies on R2 for holds here too:
 * - conditional writes: `If-None-Match: *` and `If-Match: <etag>` on PutObject, CompleteMultipartUpload and
 *   CopyObject (and `x-amz-copy-source-if-match`), answered 412 PreconditionFailed when they do not hold;
 * - one write per key per second (`writeIntervalMs`), answered 429 TooManyRequests;
 * - signatures: a SigV4-signed request whose signature does not match what arrived is answered 403
 *   SignatureDoesNotMatch (sigv4-check.ts), as R2 answers it, and one signed more than 15 minutes from the
 *   server's clock 403 RequestTimeTooSkewed. `clockOffsetMs` sets that clock apart from this machine's, and
 *   every answer's Date header then tells it, as a server with another clock would;
 * - digests: a PUT (an object or a part) whose body does not match its Content-MD5 is answered 400 BadDigest,
 *   and one that does not match a declared x-amz-content-sha256 400 XAmzContentSHA256Mismatch, before
 *   anything is stored (such a body is read whole first, then forwarded).
 * Every write and delete of a key runs under that key's lock, from the condition check until the server has
 * answered, so a check and its write are atomic against every other client of the emulation. Reads (GET,
 * HEAD) of a key share it, and a write waits for them: R2 serves a whole object, old or new, while s3rver
 * rewrites the file in place and would send a reader the old length with fewer bytes. Share one
 * instance between proxies to give several clients (the tool, the app) their own latency on one bucket.
 */
export class R2Emulation {
  /** R2 takes at most one write per key per second; 0 turns the rule off. */
  writeIntervalMs = 0;
  /** Whether deletes count as writes under that rule (R2's documentation does not say). */
  limitDeletes = false;
  readonly stats = { preconditionFailed: 0, throttled: 0, writes: 0, deletes: 0, signatureRefused: 0, clockRefused: 0, digestRefused: 0 };
  /** The server's clock minus this machine's (a store whose clock differs from the client's). */
  clockOffsetMs = 0;
  /** Every write and delete decided, in order, for tests that need to tell a history afterwards. */
  readonly journal: { at: number; key: string; kind: WriteKind; lane: string; status: number; condition?: string }[] = [];
  private readonly locks = new Map<string, Promise<void>>();
  private readonly lastWrite = new Map<string, number>();

  /**
   * Which conditions are honoured. Both, as R2 does; a test turns one off to play a store that accepts the
   * header and ignores it (the faults S3-compatible servers have shipped).
   */
  honour = { ifNoneMatch: true, ifMatch: true };

  constructor(
    private readonly targetPort: number,
    private readonly credentials: Credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  ) {}

  async handle(request: http.IncomingMessage, response: http.ServerResponse, key: string, forward: (finished: (status: number) => void, body?: Buffer) => void, lane = ''): Promise<void> {
    const now = Date.now() + this.clockOffsetMs;
    if (this.clockOffsetMs) dateEveryAnswer(response, () => Date.now() + this.clockOffsetMs);
    const signature = checkSignature(request, this.credentials, now);
    if (signature && !signature.ok) {
      if (signature.code === 'RequestTimeTooSkewed') this.stats.clockRefused++;
      else this.stats.signatureRefused++;
      await reply(request, response, signature.code === 'AuthorizationHeaderMalformed' || signature.code === 'InvalidArgument' ? 400 : 403, signature.code, signature.message);
      return;
    }
    // s3rver checks the signing time against this machine's clock (it checks no signature): told in its terms.
    const signedAt = amzDateMs(header(request, 'x-amz-date') ?? '');
    if (this.clockOffsetMs && !Number.isNaN(signedAt)) request.headers['x-amz-date'] = toAmzDate(signedAt - this.clockOffsetMs);
    // Bytes R2 checks against the digests the request declares (s3rver checks neither): read them first.
    let body: Buffer | undefined;
    if (request.method === 'PUT' && declaresDigest(request)) {
      try {
        body = await readBody(request);
      } catch {
        return; // the client went away mid-body
      }
      const refusal = digestRefusal(request, body);
      if (refusal) {
        this.stats.digestRefused++;
        await reply(request, response, 400, refusal.code, refusal.message);
        return;
      }
    }
    const send = (finished: (status: number) => void) => forward(finished, body);
    const kind = classify(request, key);
    if (!kind) {
      if (key && (request.method === 'GET' || request.method === 'HEAD')) await this.shared(key, () => new Promise<void>((resolve) => send(() => resolve())));
      else send(() => undefined);
      return;
    }
    const condition = ['if-none-match', 'if-match', 'x-amz-copy-source-if-match'].map((name) => (header(request, name) ? `${name}: ${header(request, name)}` : '')).filter(Boolean).join(', ') || undefined;
    const note = (status: number) => this.journal.push({ at: Date.now(), key, kind, lane, status, condition });
    await this.exclusive(key, async () => {
      const limited = kind !== 'delete' || this.limitDeletes;
      const last = this.lastWrite.get(key);
      if (limited && this.writeIntervalMs > 0 && last !== undefined && Date.now() - last < this.writeIntervalMs) {
        this.stats.throttled++;
        note(429);
        await reply(request, response, 429, 'TooManyRequests', 'Reduce your concurrent request rate for the same object.');
        return;
      }
      if (await this.preconditionFails(request)) {
        this.stats.preconditionFailed++;
        note(412);
        await reply(request, response, 412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
        return;
      }
      const status = await new Promise<number>((resolve) => send(resolve));
      note(status);
      if (status < 300) {
        if (kind === 'delete') this.stats.deletes++;
        else this.stats.writes++;
        if (limited) this.lastWrite.set(key, Date.now());
      }
    });
  }

  private async preconditionFails(request: http.IncomingMessage): Promise<boolean> {
    const ifNoneMatch = header(request, 'if-none-match');
    const ifMatch = header(request, 'if-match');
    const copyIfMatch = header(request, 'x-amz-copy-source-if-match');
    if (ifNoneMatch === undefined && ifMatch === undefined && copyIfMatch === undefined) return false;
    const path = (request.url ?? '/').split('?')[0];
    if ((ifNoneMatch !== undefined || ifMatch !== undefined) && (this.honour.ifNoneMatch || this.honour.ifMatch)) {
      const current = await this.etagAt(path);
      if (this.honour.ifNoneMatch && ifNoneMatch !== undefined && ifNoneMatch.trim() === '*' && current !== undefined) return true;
      if (this.honour.ifMatch && ifMatch !== undefined && (current === undefined || clean(ifMatch) !== current)) return true;
    }
    if (this.honour.ifMatch && copyIfMatch !== undefined) {
      const source = `/${header(request, 'x-amz-copy-source')!.replace(/^\//, '')}`;
      const current = await this.etagAt(source.split('?')[0]);
      if (current === undefined || clean(copyIfMatch) !== current) return true;
    }
    return false;
  }

  /** The current ETag of the object at a request path (as the server stores it), or undefined when there is none. */
  private etagAt(path: string): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      const head = http.request({ host: '127.0.0.1', port: this.targetPort, method: 'HEAD', path }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode === 200 ? clean(String(res.headers.etag ?? '')) : undefined));
      });
      head.on('error', reject);
      head.end();
    });
  }

  private readonly readers = new Map<string, Set<Promise<void>>>();

  /** A read of `key`: after the write in progress, alongside other reads; the next write waits for it. */
  private async shared(key: string, task: () => Promise<void>): Promise<void> {
    await this.locks.get(key);
    const reading = task();
    const set = this.readers.get(key) ?? new Set<Promise<void>>();
    this.readers.set(key, set);
    set.add(reading);
    try {
      await reading;
    } finally {
      set.delete(reading);
      if (!set.size && this.readers.get(key) === set) this.readers.delete(key);
    }
  }

  private async exclusive(key: string, task: () => Promise<void>): Promise<void> {
    const writes = this.locks.get(key) ?? Promise.resolve();
    const previous = writes.then(() => Promise.all([...(this.readers.get(key) ?? [])]).then(() => undefined));
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const chained = previous.then(() => mine);
    this.locks.set(key, chained);
    await previous;
    try {
      await task();
    } finally {
      release();
      if (this.locks.get(key) === chained) this.locks.delete(key);
    }
  }
}

function classify(request: http.IncomingMessage, key: string): WriteKind | undefined {
  if (!key) return undefined;
  const query = new URL(request.url ?? '/', 'http://emulation').searchParams;
  if (request.method === 'PUT' && !query.has('partNumber')) return header(request, 'x-amz-copy-source') ? 'copy' : 'put';
  if (request.method === 'POST' && query.has('uploadId')) return 'complete';
  if (request.method === 'DELETE' && !query.has('uploadId')) return 'delete';
  return undefined;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

function declaresDigest(request: http.IncomingMessage): boolean {
  return header(request, 'content-md5') !== undefined || SHA256_HEX.test(header(request, 'x-amz-content-sha256') ?? '');
}

function readBody(request: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
    request.on('close', () => {
      if (!request.readableEnded) reject(new Error('the client went away mid-body'));
    });
  });
}

/** R2's answer to a body that is not what its headers say it is, or undefined when it is. */
function digestRefusal(request: http.IncomingMessage, body: Buffer): { code: string; message: string } | undefined {
  const md5 = header(request, 'content-md5');
  if (md5 !== undefined && createHash('md5').update(body).digest('base64') !== md5.trim()) {
    return { code: 'BadDigest', message: 'The Content-MD5 you specified did not match what we received.' };
  }
  const sha256 = header(request, 'x-amz-content-sha256') ?? '';
  if (SHA256_HEX.test(sha256) && createHash('sha256').update(body).digest('hex') !== sha256) {
    return { code: 'XAmzContentSHA256Mismatch', message: "The provided 'x-amz-content-sha256' header does not match what was computed." };
  }
  return undefined;
}

function header(request: http.IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Every answer on `response` carries the emulated server's Date, whatever the server behind it said. */
function dateEveryAnswer(response: http.ServerResponse, clock: () => number): void {
  const writeHead = response.writeHead.bind(response) as (status: number, headers?: http.OutgoingHttpHeaders) => http.ServerResponse;
  response.writeHead = ((status: number, headers?: http.OutgoingHttpHeaders) => {
    const rest = Object.fromEntries(Object.entries(headers ?? {}).filter(([name]) => name.toLowerCase() !== 'date'));
    return writeHead(status, { ...rest, date: new Date(clock()).toUTCString() });
  }) as typeof response.writeHead;
}

function clean(etag: string): string {
  return etag.replace(/^W\//, '').replace(/"/g, '').trim().toLowerCase();
}

function reply(request: http.IncomingMessage, response: http.ServerResponse, status: number, code: string, message: string): Promise<void> {
  return new Promise((resolve) => {
    let sent = false;
    const send = () => {
      if (sent) return;
      sent = true;
      if (response.destroyed) return resolve();
      response.writeHead(status, { 'content-type': 'application/xml' });
      response.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`, () => resolve());
      response.once('close', () => resolve());
    };
    if (request.readableEnded || request.destroyed) send();
    else {
      request.on('end', send);
      // a client that goes away mid-body gets no answer, and holds nothing
      request.on('close', send);
      request.resume();
    }
  });
}
