import http from 'node:http';
import https from 'node:https';
import { S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { ConfiguredRetryStrategy } from '@smithy/core/retry';
import type { ObjectStoreConfig } from '../config.ts';
import { errorMessage } from '../errors.ts';
import { redact } from '../secrets.ts';

export interface ClientOptions {
  /** Sockets kept open to the endpoint; at least the upload concurrency. */
  maxSockets?: number;
  /** SDK attempts per request (throttling, 5xx and network errors are retried with growing, jittered delays). */
  maxAttempts?: number;
  /** Whole request+response limit; a black-holed request fails after this and is retried. */
  requestTimeoutMs?: number;
  connectionTimeoutMs?: number;
}

/**
 * Delay before retry `attempt` (1-based): 300 ms, 600 ms, 1.2 s, … with ±50% jitter. The first two retries
 * together outlast one second, so a write refused with 429 because another writer touched the same key
 * (R2 takes one write per key per second) is retried after that second has passed.
 */
export function retryDelayMs(attempt: number): number {
  return Math.min(20_000, 300 * 2 ** (attempt - 1) * (0.5 + Math.random()));
}

/** The one S3 client configuration: path-style, our own checksums, the SDK's retry strategy, pooled sockets. */
export function createS3Client(config: ObjectStoreConfig, options: ClientOptions = {}, handler?: NodeHttpHandler): { client: S3Client; handler: NodeHttpHandler } {
  const maxSockets = Math.max(8, options.maxSockets ?? 32);
  const agentOptions = { keepAlive: true, maxSockets, keepAliveMsecs: 1000 };
  const requestHandler =
    handler ??
    new NodeHttpHandler({
      httpAgent: new http.Agent(agentOptions),
      httpsAgent: new https.Agent(agentOptions),
      connectionTimeout: options.connectionTimeoutMs ?? 5_000,
      requestTimeout: options.requestTimeoutMs ?? 60_000,
      throwOnRequestTimeout: true,
    });
  const client = new S3Client({
    endpoint: config.endpoint,
    region: config.region,
    forcePathStyle: true,
    credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
    // Checksums are ours to compute and send explicitly; the SDK's defaults would frame streamed
    // bodies as aws-chunked, which S3-compatible servers do not all understand.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    retryStrategy: new ConfiguredRetryStrategy(Math.max(1, options.maxAttempts ?? 5), retryDelayMs),
    requestHandler,
  });
  return { client, handler: requestHandler };
}

export function httpStatusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

export function isNotFound(error: unknown): boolean {
  const name = (error as { name?: string })?.name;
  return name === 'NoSuchKey' || name === 'NotFound' || httpStatusOf(error) === 404;
}

/** A conditional write whose condition did not hold (412), or an If-Match on a key that is gone (404 on S3). */
export function isPreconditionFailed(error: unknown): boolean {
  const name = (error as { name?: string })?.name;
  return name === 'PreconditionFailed' || httpStatusOf(error) === 412;
}

/**
 * R2's one-write-per-key-per-second rule (429). Not a general slow-down (503 SlowDown): only this answer says
 * the key itself was written a moment ago, which is what the guarded delete reasons about.
 */
export function isKeyWriteLimited(error: unknown): boolean {
  const name = (error as { name?: string })?.name;
  return httpStatusOf(error) === 429 || name === 'TooManyRequests';
}

export function describeS3Error(error: unknown): string {
  const err = error as { name?: string; message?: string; $metadata?: { httpStatusCode?: number; attempts?: number }; code?: string };
  const status = err?.$metadata?.httpStatusCode;
  const attempts = err?.$metadata?.attempts;
  const parts = [err?.name && err.name !== 'Error' ? err.name : undefined, err?.code, errorMessage(error)].filter(Boolean);
  let text = [...new Set(parts)].join(': ');
  if (status) text += ` (HTTP ${status})`;
  if (attempts && attempts > 1) text += ` after ${attempts} attempts`;
  return redact(text);
}
