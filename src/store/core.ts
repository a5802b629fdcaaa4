import type { S3Client } from '@aws-sdk/client-s3';
import type { ObjectHead } from './ownership.ts';
import type { ObjectRequests } from './object-requests.ts';

/** What the write and delete modules need from the store: its clients, and the two reads they decide by. */
export interface StoreCore {
  readonly client: S3Client;
  /** The same endpoint and sockets, with no automatic retries: for requests that must not be replayed later. */
  readonly onceClient: S3Client;
  /** PUT, HEAD, GET and DELETE of one key. */
  readonly objects: ObjectRequests;
  readonly bucket: string;
  readonly partSize: number;
  head(key: string): Promise<ObjectHead | undefined>;
  readAndHash(key: string): Promise<{ sha256: string; size: number }>;
}
