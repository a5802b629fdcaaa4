import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';

/**
 * Checks a request's AWS Signature Version 4 (the Authorization header form) as R2 does, which s3rver does
 * not: the canonical request is rebuilt from what arrived on the wire (method, path as sent, query, the
 * signed headers) and signed again with the secret. Written from the specification, apart from any
 * client's signer, so a client that signs something other than what it sends is caught here.
 * The payload hash is taken as the client declared it (x-amz-content-sha256); the body is not read.
 */
export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export type SignatureVerdict = { ok: true } | { ok: false; code: 'SignatureDoesNotMatch' | 'InvalidAccessKeyId' | 'AuthorizationHeaderMalformed' | 'RequestTimeTooSkewed' | 'InvalidArgument'; message: string };

/** How far a request's signing time may be from the server's clock (S3's rule). */
export const MAX_SKEW_MS = 15 * 60_000;

/** `20261202T051916Z` as milliseconds since the epoch; NaN when it is not that form. */
export function amzDateMs(text: string): number {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  return m ? Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) : Number.NaN;
}

export function toAmzDate(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '');
}

const AUTH = /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request,\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$/;

function rfc3986(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function canonicalQuery(raw: string): string {
  if (!raw) return '';
  return raw
    .split('&')
    .filter(Boolean)
    .map((pair) => {
      const at = pair.indexOf('=');
      const name = decodeURIComponent((at < 0 ? pair : pair.slice(0, at)).replace(/\+/g, '%20'));
      const value = at < 0 ? '' : decodeURIComponent(pair.slice(at + 1).replace(/\+/g, '%20'));
      return [rfc3986(name), rfc3986(value)] as const;
    })
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
}

function headerValue(request: http.IncomingMessage, name: string): string {
  const value = request.headers[name];
  const text = Array.isArray(value) ? value.join(',') : (value ?? '');
  return text.trim().replace(/\s+/g, ' ');
}

/**
 * Undefined when the request carries no SigV4 Authorization header (anonymous requests are let through).
 * `now` is the server's clock: a request signed more than 15 minutes from it is refused.
 */
export function checkSignature(request: http.IncomingMessage, credentials: Credentials, now = Date.now()): SignatureVerdict | undefined {
  const authorization = request.headers.authorization;
  if (!authorization) return undefined;
  const parts = AUTH.exec(authorization.trim());
  if (!parts) return { ok: false, code: 'AuthorizationHeaderMalformed', message: 'The authorization header is malformed' };
  const [, accessKeyId, date, region, service, signedHeaders, signature] = parts;
  if (accessKeyId !== credentials.accessKeyId) return { ok: false, code: 'InvalidAccessKeyId', message: 'The access key ID you provided does not exist in our records' };
  const amzDate = headerValue(request, 'x-amz-date');
  if (!amzDate.startsWith(date)) return { ok: false, code: 'AuthorizationHeaderMalformed', message: 'The credential date does not match x-amz-date' };
  const signedAt = amzDateMs(amzDate);
  if (Number.isNaN(signedAt)) return { ok: false, code: 'AuthorizationHeaderMalformed', message: 'x-amz-date is not a date' };
  if (Math.abs(signedAt - now) > MAX_SKEW_MS) return { ok: false, code: 'RequestTimeTooSkewed', message: 'The difference between the request time and the current time is too large.' };
  const url = request.url ?? '/';
  const queryAt = url.indexOf('?');
  const path = queryAt < 0 ? url : url.slice(0, queryAt);
  const names = signedHeaders.split(';');
  if (!names.includes('host')) return { ok: false, code: 'AuthorizationHeaderMalformed', message: 'host is not among the signed headers' };
  let query: string;
  try {
    query = canonicalQuery(queryAt < 0 ? '' : url.slice(queryAt + 1));
  } catch {
    return { ok: false, code: 'InvalidArgument', message: 'The query string is not valid percent-encoding' };
  }
  const canonicalRequest = [
    request.method,
    path,
    query,
    names.map((name) => `${name}:${headerValue(request, name)}\n`).join(''),
    signedHeaders,
    headerValue(request, 'x-amz-content-sha256') || 'UNSIGNED-PAYLOAD',
  ].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonicalRequest).digest('hex')].join('\n');
  let key: Buffer = createHmac('sha256', `AWS4${credentials.secretAccessKey}`).update(date).digest();
  for (const part of [region, service, 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
  const expected = createHmac('sha256', key).update(stringToSign).digest();
  if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) {
    return { ok: false, code: 'SignatureDoesNotMatch', message: 'The request signature we calculated does not match the signature you provided' };
  }
  return { ok: true };
}
