import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { S3Proxy } from './support/http-proxy.ts';
import { insertApp, insertFile, text } from './support/seed.ts';
import { R2Emulation } from '../src/local/r2-emulation.ts';
import { query } from '../src/db.ts';

/**
 * A store whose clock is not the operator's machine's: S3 and R2 refuse a signature made more than 15
 * minutes from their own clock. Every command corrects its signing clock from the store's Date header, as
 * the AWS SDK does, and resends what was refused for it: the whole round trip works, every write included.
 */
describe('a store whose clock is 40 minutes behind the machine running the tool', () => {
  let env: TestEnv;
  let skewed: R2Emulation;
  let front: S3Proxy;

  beforeAll(async () => {
    env = await createTestEnv();
    // In front of the bare server: the local server's own front keeps this machine's clock.
    skewed = new R2Emulation(env.s3.barePort);
    skewed.clockOffsetMs = -40 * 60_000;
    front = await new S3Proxy(env.s3.barePort, env.s3.bucket, skewed).start();
  }, 120_000);
  afterAll(async () => {
    await front?.stop();
    await env?.close();
  });

  it('the store check, migrate (a streamed 3 MB row included), verify --deep, finalize and rollback all succeed; contents end byte-identical', async () => {
    const app = await insertApp(env.db);
    for (let i = 0; i < 20; i++) await insertFile(env.db, app, `skew/${i}.txt`, text(1200 + i * 1500, `s${i}ü`));
    await insertFile(env.db, app, 'skew/large.bin', text(3 * 1024 * 1024, 'L'));
    const snapshot = () => query(env.db, 'SELECT id, content FROM app_files WHERE app_id = $1 ORDER BY id', [app]);
    const before = await snapshot();
    const cliEnv = { ...env.cliEnv, R2_ENDPOINT: front.endpoint };
    for (const args of [['migrate', '--yes'], ['verify', '--deep'], ['finalize', '--yes'], ['verify', '--deep'], ['rollback', '--yes', '--purge'], ['verify']]) {
      const refusedBefore = skewed.stats.clockRefused;
      const run = await cli([...args, '--app', app], cliEnv);
      expect(run.code, `${args.join(' ')}: ${run.stdout} ${run.stderr}`).toBe(0);
      // Each command is a new process with its clock uncorrected: the store refused some of its first requests.
      if (args[0] !== 'verify' || args.includes('--deep')) expect(skewed.stats.clockRefused, args.join(' ')).toBeGreaterThan(refusedBefore);
    }
    expect(await snapshot()).toEqual(before);
    expect(skewed.stats.signatureRefused).toBe(0);
    const [{ locations }] = await query<{ locations: string[] }>(env.db, 'SELECT array_agg(DISTINCT storage_location) AS locations FROM app_files WHERE app_id = $1', [app]);
    expect(locations).toEqual(['database']);
  });
});
