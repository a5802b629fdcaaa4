import http from 'node:http';
import { createHash } from 'node:crypto';
import { amzDateMs, checkSignature, toAmzDate, type Credentials } from './sigv4-check.ts';

type WriteKind = 'put' | 'complete' | 'copy' | 'delete';

const MiB = 1024 * 1024;

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
 * - key identity: keys are NFC-normalised before storing, so Unicode-equivalent spellings are one object, and a
 *   listing shows the spelling uploaded last (R2's "Unicode interoperability" reference);
 * - keys over 1,024 bytes are refused (400 KeyTooLongError; R2's limits: object key length);
 * - multipart: every part but the last at least 5 MiB and all of one size, the last no larger (400
 *   EntityTooSmall / InvalidPart otherwise), and the object's ETag R2's: the MD5 of the parts' binary MD5s,
 *   then `-N` (R2's "Multipart upload" page; s3rver gives the whole object's MD5);
 * - conditional deletes as R2 documents them: `x-amz-if-match-last-modified-time` on DeleteObject, answered
 *   412 where the object's Last-Modified is another time and deleting as usual where the key is not there
 *   (R2's S3 API compatibility, DeleteObject; S3's DeleteObject reference for the header). If-Match on
 *   DeleteObject is S3's (since 2025-09: 412 on another ETag, 404 where the key is not there) and no condition
 *   on R2: `honour.deleteIfMatch` plays S3, off by default;
 * - the bucket's request budget: about 4,000 writes (PUT, POST, COPY, DELETE) and 20,000 reads a second (R2's
 *   "Optimizing performance"), beyond which a request is refused with 429 (`budgetAnswer` 503 plays S3's
 *   SlowDown) before anything is done; tests scale it down;
 * - lifecycle rules: GetBucketLifecycleConfiguration and PutBucketLifecycleConfiguration store and return the
 *   bucket's rules (404 NoSuchLifecycleConfiguration while there are none), as R2 implements them ("Object
 *   lifecycles"); nothing expires here, the rules are what a tool can read. `lifecycleImplemented` false plays
 *   a store that does not implement the call (501).
 * Every write and delete of a key runs under that key's lock, from the condition check until the server has
 * answered, so a check and its write are atomic against every other client of the emulation. Reads (GET,
 * HEAD) of a key share it, and a write waits for them: R2 serves a whole object, old or new, while s3rver
 * rewrites the file in place and would send a reader the old length with fewer bytes. Share one
 * instance between proxies to give several clients (the tool, the app) their own latency on one bucket.
 */
export class R2Emulation {
  /** R2 takes at most one write per key per second (R2's limits); 0 turns the rule off, for tests that say why. */
  writeIntervalMs = 1000;
  /** Unicode-equivalent keys are one object (R2's default); false plays a byte-oriented store. */
  normalizeKeys = true;
  maxKeyBytes = 1024;
  /** The smallest part but the last; 0 turns the rule off. */
  minPartBytes = 5 * MiB;
  /** Whether deletes count as writes under that rule (R2's documentation does not say). */
  limitDeletes = false;
  /** The bucket's budget per second (R2's figures); Infinity turns a lane's limit off. */
  budget = { writesPerSecond: 4000, readsPerSecond: 20_000 };
  /** How a request over the budget is answered: R2's 429, or 503 SlowDown as S3 answers. */
  budgetAnswer: 429 | 503 = 429;
  /** Requests let through and refused as over the budget, by lane. */
  readonly budgetStats = { writes: 0, reads: 0, writesRefused: 0, readsRefused: 0, firstWriteAt: 0, lastWriteAt: 0 };
  private readonly budgetTokens = { write: { tokens: 0, at: 0 }, read: { tokens: 0, at: 0 } };
  /** The bucket's lifecycle configuration as it was put (XML), if any. */
  lifecycle: string | undefined;
  lifecycleImplemented = true;
  readonly stats = { preconditionFailed: 0, throttled: 0, writes: 0, deletes: 0, signatureRefused: 0, clockRefused: 0, digestRefused: 0, refusedKeys: 0, refusedParts: 0 };
  /** The server's clock minus this machine's (a store whose clock differs from the client's). */
  clockOffsetMs = 0;
  /** Every write and delete decided, in order, for tests that need to tell a history afterwards. */
  readonly journal: { at: number; key: string; kind: WriteKind; lane: string; status: number; condition?: string }[] = [];
  private readonly locks = new Map<string, Promise<void>>();
  private readonly lastWrite = new Map<string, number>();
  /** By key identity: the spelling the key was last written with, which listings show. */
  private readonly spellings = new Map<string, string>();
  /** By key identity: the R2 ETag of an object completed from parts. */
  private readonly compositeEtags = new Map<string, string>();
  /** By upload id: the key and start of every multipart upload not yet completed or aborted (ListMultipartUploads). */
  readonly openUploads = new Map<string, { key: string; initiated: Date }>();
  /** By upload id: each part's size and MD5, as the parts arrived. */
  private readonly uploads = new Map<string, Map<number, { size: number; md5: string }>>();

  /**
   * Which conditions are honoured. PutObject's both, as R2 does; a test turns one off to play a store that
   * accepts the header and ignores it (the faults S3-compatible servers have shipped). If-Match on DeleteObject
   * is S3's (since 2025-09) and undocumented for R2: a switch, off unless a test turns it on.
   */
  honour = { ifNoneMatch: true, ifMatch: true, deleteIfMatch: false, deleteIfLastModified: true };

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
    const kind = classify(request, key);
    const query = new URL(request.url ?? '/', 'http://emulation').searchParams;
    if (!this.withinBudget(request.method === 'GET' || request.method === 'HEAD' ? 'read' : 'write')) {
      await reply(request, response, this.budgetAnswer, this.budgetAnswer === 429 ? 'TooManyRequests' : 'SlowDown', 'Please reduce your request rate.');
      return;
    }
    if (!key && query.has('lifecycle')) {
      await this.answerLifecycle(request, response, body);
      return;
    }
    if (!key && request.method === 'GET' && query.has('uploads')) {
      await this.answerUploads(request, response, query.get('prefix') ?? '');
      return;
    }
    if (key && request.method === 'POST' && query.has('uploads')) this.noteUploadStarted(response, key);
    if (key && request.method === 'DELETE' && query.has('uploadId')) {
      // AbortMultipartUpload, answered here (s3rver refuses the method); its parts are simply forgotten.
      const uploadId = query.get('uploadId')!;
      const known = this.openUploads.delete(uploadId) || this.uploads.delete(uploadId);
      request.resume();
      if (!known) return reply(request, response, 404, 'NoSuchUpload', 'The specified multipart upload does not exist.');
      response.writeHead(204);
      response.end();
      return;
    }
    if (key && (kind || query.has('uploadId') || query.has('uploads')) && Buffer.byteLength(key, 'utf8') > this.maxKeyBytes) {
      this.stats.refusedKeys++;
      await reply(request, response, 400, 'KeyTooLongError', 'Your key is too long');
      return;
    }
    const spelling = key;
    if (this.normalizeKeys) key = this.storeUnderIdentity(request, key);
    if (!key && request.method === 'GET' && !query.has('uploads')) this.rewriteListing(response);
    if (key && (request.method === 'GET' || request.method === 'HEAD')) this.answerCompositeEtag(response, key);
    if (request.method === 'PUT' && query.has('partNumber') && query.has('uploadId')) this.notePart(request, response, query.get('uploadId')!, Number(query.get('partNumber')));
    const send = (finished: (status: number) => void) => forward(finished, body);
    if (!kind) {
      if (key && (request.method === 'GET' || request.method === 'HEAD')) await this.shared(key, () => new Promise<void>((resolve) => send(() => resolve())));
      else send(() => undefined);
      return;
    }
    const condition = ['if-none-match', 'if-match', 'x-amz-copy-source-if-match', 'x-amz-if-match-last-modified-time'].map((name) => (header(request, name) ? `${name}: ${header(request, name)}` : '')).filter(Boolean).join(', ') || undefined;
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
      if (kind === 'complete') {
        const refusal = this.partsRefusal(query.get('uploadId')!);
        if (refusal) {
          this.stats.refusedParts++;
          note(400);
          await reply(request, response, 400, refusal.code, refusal.message);
          return;
        }
      }
      const composite = kind === 'complete' ? this.compositeEtagOf(query.get('uploadId')!) : undefined;
      if (composite) rewriteAnswerBody(response, (text) => text.replace(/<ETag>[^<]*<\/ETag>/, `<ETag>&quot;${composite}&quot;</ETag>`));
      const failed = await this.preconditionFails(request, key);
      if (failed === 'missing') {
        // S3's conditional delete: If-Match on a key that is not there answers 404 NoSuchKey (S3's "How to
        // perform conditional deletes"), as a retry after a delete whose answer was lost meets it.
        note(404);
        await reply(request, response, 404, 'NoSuchKey', 'The specified key does not exist.');
        return;
      }
      if (failed) {
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
        this.compositeEtags.delete(key);
        if (composite) this.compositeEtags.set(key, composite);
        if (kind === 'complete') {
          this.uploads.delete(query.get('uploadId')!);
          this.openUploads.delete(query.get('uploadId')!);
        }
        if (kind === 'delete') this.spellings.delete(key);
        else if (this.normalizeKeys) this.spellings.set(key, spelling);
      }
    });
  }

  private async preconditionFails(request: http.IncomingMessage, key: string): Promise<boolean | 'missing'> {
    const ifNoneMatch = header(request, 'if-none-match');
    const ifMatch = request.method === 'DELETE' && !this.honour.deleteIfMatch ? undefined : header(request, 'if-match');
    const copyIfMatch = header(request, 'x-amz-copy-source-if-match');
    const lastModified = request.method === 'DELETE' && this.honour.deleteIfLastModified ? header(request, 'x-amz-if-match-last-modified-time') : undefined;
    if (ifNoneMatch === undefined && ifMatch === undefined && copyIfMatch === undefined && lastModified === undefined) return false;
    const path = (request.url ?? '/').split('?')[0];
    if (lastModified !== undefined) {
      // Deleted only while the object's Last-Modified is that time (to the second, as HTTP dates go); a key
      // that is not there is deleted as usual (204).
      const current = await this.lastModifiedAt(path);
      const asked = Date.parse(lastModified);
      if (current !== undefined && (Number.isNaN(asked) || Math.floor(asked / 1000) !== Math.floor(current / 1000))) return true;
    }
    if ((ifNoneMatch !== undefined || ifMatch !== undefined) && (this.honour.ifNoneMatch || this.honour.ifMatch)) {
      const current = this.compositeEtags.get(key) ?? (await this.etagAt(path));
      if (this.honour.ifNoneMatch && ifNoneMatch !== undefined && ifNoneMatch.trim() === '*' && current !== undefined) return true;
      if (this.honour.ifMatch && ifMatch !== undefined && current === undefined && request.method === 'DELETE') return 'missing';
      if (this.honour.ifMatch && ifMatch !== undefined && (current === undefined || clean(ifMatch) !== current)) return true;
    }
    if (this.honour.ifMatch && copyIfMatch !== undefined) {
      const source = `/${header(request, 'x-amz-copy-source')!.replace(/^\//, '')}`;
      const current = await this.etagAt(source.split('?')[0]);
      if (current === undefined || clean(copyIfMatch) !== current) return true;
    }
    return false;
  }

  /** Takes one request of the lane from the bucket's budget (a token bucket a fifth of a second deep), or says it is spent. */
  private withinBudget(lane: 'write' | 'read'): boolean {
    const perSecond = lane === 'write' ? this.budget.writesPerSecond : this.budget.readsPerSecond;
    const counted = lane === 'write' ? 'writes' : 'reads';
    if (!Number.isFinite(perSecond)) {
      this.budgetStats[counted]++;
      return true;
    }
    const bucket = this.budgetTokens[lane];
    const now = Date.now();
    const depth = Math.max(1, perSecond / 5);
    bucket.tokens = bucket.at === 0 ? depth : Math.min(depth, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
    bucket.at = now;
    if (bucket.tokens < 1) {
      this.budgetStats[`${counted}Refused`]++;
      return false;
    }
    bucket.tokens -= 1;
    this.budgetStats[counted]++;
    if (lane === 'write') {
      this.budgetStats.firstWriteAt ||= now;
      this.budgetStats.lastWriteAt = now;
    }
    return true;
  }

  /** GetBucketLifecycleConfiguration, PutBucketLifecycleConfiguration and DeleteBucketLifecycle, answered here. */
  private async answerLifecycle(request: http.IncomingMessage, response: http.ServerResponse, read?: Buffer): Promise<void> {
    if (!this.lifecycleImplemented) return reply(request, response, 501, 'NotImplemented', 'A header you provided implies functionality that is not implemented');
    if (request.method === 'PUT') {
      this.lifecycle = (read ?? (await readBody(request))).toString('utf8');
      response.writeHead(200, { 'content-length': 0 });
      response.end();
      return;
    }
    if (request.method === 'DELETE') {
      request.resume();
      this.lifecycle = undefined;
      response.writeHead(204);
      response.end();
      return;
    }
    if (this.lifecycle === undefined) return reply(request, response, 404, 'NoSuchLifecycleConfiguration', 'The lifecycle configuration does not exist');
    request.resume();
    const body = Buffer.from(this.lifecycle, 'utf8');
    response.writeHead(200, { 'content-type': 'application/xml', 'content-length': body.length });
    response.end(body);
  }

  /** The Last-Modified time of the object at a request path, or undefined when there is none. */
  private lastModifiedAt(path: string): Promise<number | undefined> {
    return new Promise((resolve, reject) => {
      const head = http.request({ host: '127.0.0.1', port: this.targetPort, method: 'HEAD', path }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode === 200 && res.headers['last-modified'] ? Date.parse(String(res.headers['last-modified'])) : undefined));
      });
      head.on('error', reject);
      head.end();
    });
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

  /**
   * R2 stores a key under its NFC form: the request goes on under that spelling (the copy source too), so the
   * server behind keeps one object per identity. Returns the key's identity.
   */
  private storeUnderIdentity(request: http.IncomingMessage, key: string): string {
    const identity = key.normalize('NFC');
    if (identity !== key) {
      const url = new URL(request.url ?? '/', 'http://emulation');
      const bucket = url.pathname.split('/')[1];
      request.url = `/${bucket}/${identity.split('/').map(encodeURIComponent).join('/')}${url.search}`;
    }
    const source = header(request, 'x-amz-copy-source');
    if (source !== undefined) {
      const [path, version] = source.split('?');
      const decoded = decodeURIComponent(path);
      // Rewritten only when it has another spelling, and then as the tool writes it (see copySourcePath).
      if (decoded !== decoded.normalize('NFC')) {
        const encoded = encodeURIComponent(decoded.normalize('NFC')).replace(/%(2F|40|3A|2C|3B|24|3D|26)/g, (escape) => decodeURIComponent(escape));
        request.headers['x-amz-copy-source'] = `${encoded}${version ? `?${version}` : ''}`;
      }
    }
    return identity;
  }

  /** A listing names each object by the spelling it was last written with, and gives completed uploads R2's ETag. */
  private rewriteListing(response: http.ServerResponse): void {
    rewriteAnswerBody(response, (text) =>
      text.replace(/<Contents>([\s\S]*?)<\/Contents>/g, (whole, inner: string) => {
        const key = /<Key>([^<]*)<\/Key>/.exec(inner)?.[1];
        if (key === undefined) return whole;
        const identity = unescapeXml(key).normalize('NFC');
        const spelling = this.spellings.get(identity);
        const etag = this.compositeEtags.get(identity);
        let out = inner;
        if (spelling !== undefined) out = out.replace(/<Key>[^<]*<\/Key>/, `<Key>${escapeXml(spelling)}</Key>`);
        if (etag !== undefined) out = out.replace(/<ETag>[^<]*<\/ETag>/, `<ETag>&quot;${etag}&quot;</ETag>`);
        return `<Contents>${out}</Contents>`;
      }),
    );
  }

  private answerCompositeEtag(response: http.ServerResponse, key: string): void {
    const etag = this.compositeEtags.get(key);
    if (etag === undefined) return;
    rewriteAnswerHeaders(response, (headers) => ({ ...headers, etag: `"${etag}"` }));
  }

  /** Keeps the upload id a CreateMultipartUpload answers, with its key and time (s3rver lists no uploads). */
  private noteUploadStarted(response: http.ServerResponse, key: string): void {
    rewriteAnswerBody(response, (text) => {
      const uploadId = /<UploadId>([^<]*)<\/UploadId>/.exec(text)?.[1];
      if (uploadId) this.openUploads.set(unescapeXml(uploadId), { key, initiated: new Date() });
      return text;
    });
  }

  /** ListMultipartUploads, answered from the uploads seen starting (one page: the emulation holds few). */
  private async answerUploads(request: http.IncomingMessage, response: http.ServerResponse, prefix: string): Promise<void> {
    request.resume();
    const bucket = new URL(request.url ?? '/', 'http://emulation').pathname.split('/')[1];
    const uploads = [...this.openUploads.entries()].filter(([, u]) => u.key.startsWith(prefix)).sort(([, a], [, b]) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const body = Buffer.from(
      `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>${escapeXml(bucket)}</Bucket><Prefix>${escapeXml(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${uploads
        .map(([id, u]) => `<Upload><Key>${escapeXml(u.key)}</Key><UploadId>${escapeXml(id)}</UploadId><Initiated>${u.initiated.toISOString()}</Initiated><StorageClass>STANDARD</StorageClass></Upload>`)
        .join('')}</ListMultipartUploadsResult>`,
      'utf8',
    );
    response.writeHead(200, { 'content-type': 'application/xml', 'content-length': body.length });
    response.end(body);
  }

  /** Records a part's size and MD5 as it is stored, for the part rules and the composite ETag. */
  private notePart(request: http.IncomingMessage, response: http.ServerResponse, uploadId: string, partNumber: number): void {
    const size = Number(header(request, 'content-length') ?? NaN);
    rewriteAnswerHeaders(response, (headers, status) => {
      if (status < 300 && Number.isFinite(size)) {
        const parts = this.uploads.get(uploadId) ?? new Map();
        parts.set(partNumber, { size, md5: clean(String(headers.etag ?? '')) });
        this.uploads.set(uploadId, parts);
      }
      return headers;
    });
  }

  private partsOf(uploadId: string): { size: number; md5: string }[] {
    return [...(this.uploads.get(uploadId) ?? new Map()).entries()].sort(([a], [b]) => a - b).map(([, part]) => part);
  }

  /** R2's rules for the parts of a multipart upload, or undefined when they hold. */
  private partsRefusal(uploadId: string): { code: string; message: string } | undefined {
    const parts = this.partsOf(uploadId);
    if (!this.minPartBytes || parts.length < 2) return undefined;
    const first = parts[0].size;
    const body = parts.slice(0, -1);
    if (body.some((part) => part.size < this.minPartBytes)) return { code: 'EntityTooSmall', message: 'Your proposed upload is smaller than the minimum allowed object size.' };
    if (body.some((part) => part.size !== first) || parts[parts.length - 1].size > first) {
      return { code: 'InvalidPart', message: 'All non-trailing parts must have the same length.' };
    }
    return undefined;
  }

  /** The MD5 of the parts' binary MD5s, then -N: R2's (and S3's) ETag of an object completed from parts. */
  private compositeEtagOf(uploadId: string): string | undefined {
    const parts = this.partsOf(uploadId);
    if (!parts.length || parts.some((part) => !/^[0-9a-f]{32}$/.test(part.md5))) return undefined;
    const digest = createHash('md5');
    for (const part of parts) digest.update(Buffer.from(part.md5, 'hex'));
    return `${digest.digest('hex')}-${parts.length}`;
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

/** Changes the headers of the answer `response` is about to send (status, then headers), wherever they come from. */
function rewriteAnswerHeaders(response: http.ServerResponse, change: (headers: http.OutgoingHttpHeaders, status: number) => http.OutgoingHttpHeaders): void {
  const writeHead = response.writeHead.bind(response) as (status: number, headers?: http.OutgoingHttpHeaders) => http.ServerResponse;
  response.writeHead = ((status: number, headers?: http.OutgoingHttpHeaders) => writeHead(status, change({ ...(headers ?? {}) }, status))) as typeof response.writeHead;
}

/** Holds a successful answer's body until it is complete, and sends it changed by `change` (with its new length). */
function rewriteAnswerBody(response: http.ServerResponse, change: (text: string) => string): void {
  const writeHead = response.writeHead.bind(response) as (status: number, headers?: http.OutgoingHttpHeaders) => http.ServerResponse;
  const write = response.write.bind(response) as (chunk: unknown) => boolean;
  const end = response.end.bind(response) as (chunk?: unknown, callback?: () => void) => http.ServerResponse;
  let head: { status: number; headers: http.OutgoingHttpHeaders } | undefined;
  const chunks: Buffer[] = [];
  response.writeHead = ((status: number, headers?: http.OutgoingHttpHeaders) => {
    head = { status, headers: { ...(headers ?? {}) } };
    return response;
  }) as typeof response.writeHead;
  response.write = ((chunk: unknown) => {
    if (chunk !== undefined && chunk !== null) chunks.push(Buffer.from(chunk as Buffer));
    return true;
  }) as typeof response.write;
  response.end = ((chunk?: unknown, callback?: () => void) => {
    if (typeof chunk === 'function') {
      callback = chunk as () => void;
      chunk = undefined;
    }
    if (chunk !== undefined && chunk !== null) chunks.push(Buffer.from(chunk as Buffer));
    const status = head?.status ?? 200;
    let bytes = Buffer.concat(chunks);
    if (status < 300) bytes = Buffer.from(change(bytes.toString('utf8')), 'utf8');
    const headers = Object.fromEntries(Object.entries(head?.headers ?? {}).filter(([name]) => !['content-length', 'transfer-encoding'].includes(name.toLowerCase())));
    writeHead(status, { ...headers, 'content-length': bytes.length });
    write(bytes);
    return end(callback);
  }) as typeof response.end;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

function unescapeXml(text: string): string {
  return text.replace(/&(lt|gt|quot|apos|amp|#(\d+)|#x([0-9a-fA-F]+));/g, (_, name: string, dec?: string, hex?: string) =>
    dec ? String.fromCodePoint(Number(dec)) : hex ? String.fromCodePoint(parseInt(hex, 16)) : ({ lt: '<', gt: '>', quot: '"', apos: "'", amp: '&' } as Record<string, string>)[name],
  );
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
