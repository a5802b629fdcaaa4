import { ObjectStore, type ObjectStoreOptions, type PutResult, type WriteIntent } from '../../src/object-store.ts';
import type { LocalS3Server } from '../../src/local/s3-server.ts';

/** A real store pointed at any endpoint (e.g. a fault-injecting proxy in front of the S3 server). */
export function storeAt(s3: LocalS3Server, endpoint: string, options: ObjectStoreOptions = {}): ObjectStore {
  return new ObjectStore(
    { endpoint, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, bucket: s3.bucket, region: 'auto', allowInsecureEndpoint: false },
    { requestTimeoutMs: 5_000, maxAttempts: 3, ...options },
  );
}

/**
 * A real store that runs `before` ahead of every verified upload: tests use it to let "the app" write to a
 * row between the tool's read and its flip. The upload itself goes to the real S3 server unchanged.
 */
export class StoreWithHook extends ObjectStore {
  before: (key: string) => Promise<void> = async () => undefined;

  override async putVerified(key: string, body: Buffer, sha256: string, contentType: string, intent?: WriteIntent): Promise<PutResult> {
    await this.before(key);
    return super.putVerified(key, body, sha256, contentType, intent);
  }
}

export function hookedStore(s3: LocalS3Server): StoreWithHook {
  return new StoreWithHook(
    { endpoint: s3.endpoint, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, bucket: s3.bucket, region: 'auto', allowInsecureEndpoint: false },
    { requestTimeoutMs: 5_000, maxAttempts: 3 },
  );
}
