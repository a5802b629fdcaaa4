import type { S3Client } from '@aws-sdk/client-s3';
import type { ObjectHead } from './ownership.ts';
import type { ObjectRequests } from './object-requests.ts';

/** What the write and delete modules need from the store: its two ways out, and the two reads they decide by. */
export interface StoreCore {
  /** Multipart uploads (lib-storage) and the rest of the SDK's commands. */
  readonly client: S3Client;
  /** PUT, HEAD, GET and DELETE of one key; each may be sent once, without retries, where it must not be replayed. */
  readonly objects: ObjectRequests;
  readonly bucket: string;
  readonly partSize: number;
  /**
   * Whether the store was proven to refuse a DeleteObject whose If-Match names another ETag (the store gate's
   * probe). Unknown (undefined) counts as no: deletes then bridge the check with a conditional tombstone.
   */
  conditionalDeletes?: boolean;
  /**
   * Whether the store was proven to refuse a DeleteObject whose `x-amz-if-match-last-modified-time` names
   * another time (R2's conditional delete): the guard where If-Match on DeleteObject is not honoured.
   */
  lastModifiedDeletes?: boolean;
  head(key: string): Promise<ObjectHead | undefined>;
  readAndHash(key: string): Promise<{ sha256: string; size: number }>;
}
