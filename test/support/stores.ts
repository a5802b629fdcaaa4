import { ObjectStore, type BufferPut, type ObjectStoreOptions, type PutResult } from '../../src/object-store.ts';
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

  override async putVerified(request: BufferPut): Promise<PutResult> {
    await this.before(request.key);
    return super.putVerified(request);
  }
}

export function hookedStore(s3: LocalS3Server): StoreWithHook {
  return new StoreWithHook(
    { endpoint: s3.endpoint, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, bucket: s3.bucket, region: 'auto', allowInsecureEndpoint: false },
    { requestTimeoutMs: 5_000, maxAttempts: 3 },
  );
}

/**
 * One bucket that two clients write, as the tool and the app do: a fresh database and S3 server, one R2
 * emulation straight in front of the server, and a proxy (for faults and latency) per client in front of it.
 */
export async function sharedBucket(options: { schema?: boolean; tool: ObjectStoreOptions; app: ObjectStoreOptions }) {
  const { createTestEnv } = await import('./env.ts');
  const { S3Proxy } = await import('./http-proxy.ts');
  const { R2Emulation } = await import('../../src/local/r2-emulation.ts');
  const env = await createTestEnv(options.schema === undefined ? {} : { schema: options.schema });
  const r2 = new R2Emulation(env.s3.barePort);
  const toolProxy = await new S3Proxy(env.s3.barePort, env.s3.bucket, r2).start();
  const appProxy = await new S3Proxy(env.s3.barePort, env.s3.bucket, r2).start();
  const tool = storeAt(env.s3, toolProxy.endpoint, options.tool);
  const app = storeAt(env.s3, appProxy.endpoint, options.app);
  return {
    env,
    r2,
    toolProxy,
    appProxy,
    tool,
    app,
    close: async () => {
      tool.destroy();
      app.destroy();
      await toolProxy.stop();
      await appProxy.stop();
      await env.close();
    },
  };
}
