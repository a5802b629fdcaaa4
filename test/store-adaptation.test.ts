import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { fileRow, insertApp, insertFile, objectText, text } from './support/seed.ts';
import { PlanApp, RUBY_APP } from './support/plan-app.ts';
import { query } from '../src/db.ts';

/**
 * What the tool does with what it finds in the store: an object the app wrote with exactly a row's bytes is
 * adopted (the row names it) but never becomes the tool's to replace or delete, one with other bytes is
 * refused; percent options as operators write them; and the storage class in every price.
 */
describe('adopting what is already right, percents, storage classes', () => {
  let env: TestEnv;
  const run = (args: string[]) => cli([...args, '--json'], env.cliEnv);
  /** The app's own upload, as the plan's `store_in_r2` does it: no metadata of ours. */
  const appUpload = (key: string, body: string) =>
    env.store.client.send(new PutObjectCommand({ Bucket: env.s3.bucket, Key: key, Body: Buffer.from(body), ContentLength: Buffer.byteLength(body) }));

  beforeAll(async () => {
    env = await createTestEnv();
  });
  afterAll(async () => env?.close());

  it("adopts an object of the app's holding exactly the row's bytes, refuses one holding others, and never deletes either", async () => {
    const appId = await insertApp(env.db, 'adopt');
    const same = text(5_000, 's');
    const other = text(6_000, 'o');
    const a = await insertFile(env.db, appId, 'src/same.ts', same);
    const b = await insertFile(env.db, appId, 'src/other.ts', other);
    await appUpload(`apps/${appId}/files/src/same.ts`, same);
    await appUpload(`apps/${appId}/files/src/other.ts`, 'the app wrote something else here');

    const migrated = await run(['migrate', '--app', appId, '--yes']);
    expect(migrated.code).toBe(1);
    expect(migrated.stdout + migrated.stderr).toMatch(/written by someone else/);
    expect((await fileRow(env.db, a)).storage_location).toBe('hybrid');
    expect((await fileRow(env.db, a)).r2_object_key).toBe(`apps/${appId}/files/src/same.ts`);
    expect((await fileRow(env.db, b)).storage_location).toBe('database');
    expect((await env.store.head(`apps/${appId}/files/src/same.ts`))?.ours).toBe(false);
    if (RUBY_APP.available) {
      const app = new PlanApp({ databaseUrl: env.databaseUrl, endpoint: env.s3.endpoint, bucket: env.s3.bucket, accessKeyId: env.s3.accessKeyId, secretAccessKey: env.s3.secretAccessKey });
      try {
        expect((await app.read(a)).content).toBe(same);
        expect((await app.read(b)).content).toBe(other);
      } finally {
        await app.close();
      }
    }

    // Finalize reads it back and proves it like any object; rollback --purge leaves the app's object in place.
    expect((await run(['finalize', '--app', appId, '--r2-threshold', '1KiB', '--yes'])).code).toBe(0);
    expect((await fileRow(env.db, a)).storage_location).toBe('r2');
    const back = await run(['rollback', '--app', appId, '--purge', '--yes']);
    expect(back.code).toBe(0);
    expect((await fileRow(env.db, a)).content).toBe(same);
    expect(await objectText(env.store, `apps/${appId}/files/src/same.ts`)).toBe(same);
    expect(await objectText(env.store, `apps/${appId}/files/src/other.ts`)).toBe('the app wrote something else here');

    // A later run adopts it again: the row is not refused "for ever".
    expect((await run(['migrate', '--app', appId, '--tables', 'files', '--limit', '1', '--yes'])).code).toBe(0);
    expect((await fileRow(env.db, a)).storage_location).toBe('hybrid');
  });

  it('takes percentages as operators write them: 10 or 10%', async () => {
    const appId = await insertApp(env.db, 'percent');
    await insertFile(env.db, appId, 'src/p.ts', text(3_000, 'p'));
    for (const args of [
      ['migrate', '--dry-run', '--rollout', '10%'],
      ['migrate', '--dry-run', '--rollout', '100'],
      ['verify', '--sample', '50%'],
      ['maintain', '--dry-run', '--deep-sample', '3%'],
    ]) {
      const result = await run(args);
      expect([0, 1], `${args.join(' ')}: ${result.stderr}`).toContain(result.code);
    }
    for (const bad of ['0%', '101%', 'ten%', '%']) {
      const refused = await run(['migrate', '--dry-run', '--rollout', bad]);
      expect(refused.code, bad).toBe(2);
      expect(refused.stderr).toMatch(/percentage/);
    }
  });

  it('prices plans by the storage class: Infrequent Access adds retrieval fees for every byte read back', async () => {
    const appId = await insertApp(env.db, 'classes');
    await insertFile(env.db, appId, 'src/big.ts', text(50_000, 'b'));
    expect((await run(['migrate', '--app', appId, '--yes'])).code).toBe(0);
    const standard = (await run(['finalize', '--app', appId, '--dry-run'])).json();
    const infrequent = (await run(['finalize', '--app', appId, '--dry-run', '--storage-class', 'infrequent-access'])).json();
    const planOf = (doc: any) => doc.plan ?? doc.result?.plan ?? doc;
    expect(planOf(standard).cost.retrieval).toBe(0);
    expect(planOf(infrequent).cost.retrieval).toBeCloseTo((50_000 / 1e9) * 0.01, 12);
    expect(planOf(infrequent).cost.requests).toBeGreaterThan(planOf(standard).cost.requests);
    expect(planOf(infrequent).notes.join(' ')).toMatch(/Infrequent Access/);
    const [{ n }] = await query<{ n: number }>(env.db, "SELECT count(*)::int AS n FROM app_files WHERE app_id = $1 AND storage_location = 'r2'", [appId]);
    expect(n).toBe(0);
  });
});
