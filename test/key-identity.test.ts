import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, ON_PGLITE, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { insertApp, insertFile, insertVersion, insertVersionFile, text } from './support/seed.ts';
import { PlanApp, RUBY_APP } from './support/plan-app.ts';
import { query } from '../src/db.ts';
import { sha256Hex } from '../src/hashing.ts';
import { readStoredContent } from '../src/ops/read-content.ts';
import { keysStillReferenced, rowsNamingKeys } from '../src/sql/references.ts';
import { ourMetadata } from '../src/store/ownership.ts';
import type { TableName } from '../src/tables.ts';

/**
 * R2 NFC-normalises key names ("Unicode interoperability" in R2's reference): `café` written with U+00E9 and
 * with `e` + U+0301 are one object there. The suite's store does the same (src/local/r2-emulation.ts), so
 * these runs meet what R2 would do: two rows whose paths are equivalent spellings must never share an object.
 */
const COMPOSED = 'src/caf\u00e9.tsx';
const DECOMPOSED = 'src/cafe\u0301.tsx';

/**
 * Also in a SQL_ASCII database, where PostgreSQL refuses to normalise: there the tool compares the spellings
 * itself (src/sql/unicode-siblings.ts, src/sql/references.ts), and every case below must come out the same.
 */
const ENCODINGS = ON_PGLITE ? ['UTF8'] : ['UTF8', 'SQL_ASCII'];

describe.each(ENCODINGS)('key identity: Unicode-equivalent paths on a store that normalises keys (%s database)', (encoding) => {
  let env: TestEnv;
  let app: PlanApp | undefined;
  const run = (args: string[]) => cli([...args, '--json'], env.cliEnv);
  const tableOf: Record<TableName, string> = { files: 'app_files', snapshots: 'app_versions', 'version-files': 'app_version_files' };

  /** Every row reads its own bytes: files through the plan's Ruby model when Ruby is here, every row through the tool's reader. */
  async function expectEachReadsItsOwn(rows: { table: TableName; id: string; content: string }[]): Promise<void> {
    for (const row of rows) {
      const table = tableOf[row.table];
      const locationColumn = row.table === 'snapshots' ? 'storage_strategy' : 'storage_location';
      const keyColumn = row.table === 'files' ? 'r2_object_key' : row.table === 'snapshots' ? 'r2_snapshot_key' : 'r2_content_key';
      const hashColumn = row.table === 'snapshots' ? 'snapshot_hash' : 'content_hash';
      const contentColumn = row.table === 'snapshots' ? 'files_snapshot' : 'content';
      const [ref] = await query<{ location: string; key: string | null; hash: string | null; has_content: boolean; bytes: number | null }>(
        env.db,
        `SELECT ${locationColumn} AS location, ${keyColumn} AS key, ${hashColumn} AS hash, ${contentColumn} IS NOT NULL AS has_content, octet_length(${contentColumn})::float8 AS bytes FROM ${table} WHERE id = $1`,
        [row.id],
      );
      const read = await readStoredContent(env.context, { table: row.table, id: row.id, location: ref.location, key: ref.key, hash: ref.hash, hasContent: ref.has_content, bytes: ref.bytes });
      expect(read.content, `${table} #${row.id} through the tool`).toBe(row.content);
      if (row.table === 'files' && app) expect((await app.read(row.id)).content, `${table} #${row.id} through the plan's model`).toBe(row.content);
    }
  }

  beforeAll(async () => {
    env = await createTestEnv({ encoding });
    const [{ actual }] = await query<{ actual: string }>(env.db, 'SELECT getdatabaseencoding() AS actual');
    expect(actual).toBe(encoding);
    // The plan's Ruby model is run against the UTF8 database: ActiveRecord reads SQL_ASCII text as binary.
    if (RUBY_APP.available && encoding === 'UTF8') {
      app = new PlanApp({ databaseUrl: env.databaseUrl, endpoint: env.s3.endpoint, bucket: env.s3.bucket, accessKeyId: env.s3.accessKeyId, secretAccessKey: env.s3.secretAccessKey });
    }
  });
  afterAll(async () => {
    await app?.close();
    await env?.close();
  });

  it('the suite store keeps one object per spelling of a key, and lists the spelling written last', async () => {
    const decomposed = `apps/990/files/${DECOMPOSED}`;
    const composed = `apps/990/files/${COMPOSED}`;
    await env.store.objects.put(decomposed, Buffer.from('first'), { metadata: ourMetadata(sha256Hex('first')) });
    const head = await env.store.head(composed);
    expect(head?.size).toBe(5);
    await new Promise((resolve) => setTimeout(resolve, 1100)); // R2's one write per key per second
    await env.store.objects.put(composed, Buffer.from('second!'), { metadata: ourMetadata(sha256Hex('second!')) });
    const listed = [];
    for await (const object of env.store.list('apps/990/')) listed.push(object);
    expect(listed.map((object) => object.key)).toEqual([composed]);
    expect(listed[0].size).toBe(7);
    expect((await env.store.getVerified(decomposed, sha256Hex('second!'))).toString()).toBe('second!');
  });

  it('two files of one app with equivalent paths both stay in the database, each refusal naming both rows', async () => {
    const appId = await insertApp(env.db, 'twins');
    const a = await insertFile(env.db, appId, COMPOSED, text(20_000, 'A'));
    const b = await insertFile(env.db, appId, DECOMPOSED, text(21_000, 'B'));
    const migrated = await run(['migrate', '--app', appId, '--yes']);
    expect(migrated.code).toBe(1);
    const refusals = migrated.stderr + migrated.stdout;
    expect(refusals).toContain(`app_files #${a}`);
    expect(refusals).toContain(`app_files #${b}`);
    expect(refusals).toMatch(/Unicode-equivalent/);
    const rows = await query<{ storage_location: string; r2_object_key: string | null }>(env.db, 'SELECT storage_location, r2_object_key FROM app_files WHERE id = ANY($1::bigint[])', [[a, b]]);
    expect(rows.every((row) => row.storage_location === 'database' && row.r2_object_key === null)).toBe(true);
    await expectEachReadsItsOwn([
      { table: 'files', id: a, content: text(20_000, 'A') },
      { table: 'files', id: b, content: text(21_000, 'B') },
    ]);
  });

  it('a file created after its equivalent twin was finalized never touches the twin, through migrate, finalize, cleanup, rollback --purge', async () => {
    const appId = await insertApp(env.db, 'later twin');
    const first = text(20_000, 'F');
    const second = text(21_000, 'S');
    const a = await insertFile(env.db, appId, COMPOSED, first);
    expect((await run(['migrate', '--app', appId, '--yes'])).code).toBe(0);
    expect((await run(['finalize', '--app', appId, '--yes'])).code).toBe(0);
    const b = await insertFile(env.db, appId, DECOMPOSED, second);

    const again = await run(['migrate', '--app', appId, '--yes']);
    expect(again.code).toBe(1);
    expect(again.stderr + again.stdout).toContain(`app_files #${a}`);
    expect((await run(['finalize', '--app', appId, '--yes'])).code).toBe(0);
    const cleaned = await run(['cleanup', '--app', appId, '--grace', '0s', '--yes']);
    expect(cleaned.code).toBe(0);
    expect(cleaned.json().listing.orphans).toBe(0);
    const verified = await run(['verify', '--app', appId, '--deep']);
    expect(verified.code).toBe(0);
    await expectEachReadsItsOwn([
      { table: 'files', id: a, content: first },
      { table: 'files', id: b, content: second },
    ]);

    const back = await run(['rollback', '--app', appId, '--purge', '--yes']);
    expect(back.code).toBe(0);
    await expectEachReadsItsOwn([
      { table: 'files', id: a, content: first },
      { table: 'files', id: b, content: second },
    ]);
    const [{ left }] = await query<{ left: number }>(env.db, "SELECT count(*)::int AS left FROM app_files WHERE app_id = $1 AND storage_location <> 'database'", [appId]);
    expect(left).toBe(0);
  });

  it('equivalent paths in one version get keys of their own, through migrate, finalize and prune-versions', async () => {
    const appId = await insertApp(env.db, 'version twins');
    const fa = await insertFile(env.db, appId, COMPOSED, 'small a');
    const fb = await insertFile(env.db, appId, DECOMPOSED, 'small b');
    const old = await insertVersion(env.db, appId, '1.0.0', null);
    const va = await insertVersionFile(env.db, old, fa, 'created', text(15_000, 'a'));
    const vb = await insertVersionFile(env.db, old, fb, 'created', text(16_000, 'b'));
    expect((await run(['migrate', '--app', appId, '--yes'])).code).toBe(0);
    expect((await run(['finalize', '--app', appId, '--yes'])).code).toBe(0);
    const keys = await query<{ id: string; r2_content_key: string; storage_location: string }>(env.db, 'SELECT id, r2_content_key, storage_location FROM app_version_files WHERE id = ANY($1::bigint[]) ORDER BY id', [[va, vb]]);
    expect(keys.map((row) => row.storage_location)).toEqual(['r2', 'r2']);
    expect(keys[0].r2_content_key.normalize('NFC')).not.toBe(keys[1].r2_content_key.normalize('NFC'));
    await expectEachReadsItsOwn([
      { table: 'version-files', id: va, content: text(15_000, 'a') },
      { table: 'version-files', id: vb, content: text(16_000, 'b') },
    ]);
    expect((await run(['verify', '--app', appId, '--deep'])).code).toBe(0);

    // A newer version lets prune-versions remove the old one and its two objects, and nothing else.
    // A snapshot, so the newer version is not rebuilt from the old one (which would keep it).
    const newer = await insertVersion(env.db, appId, '1.0.1', JSON.stringify({ [COMPOSED]: 'small a', [DECOMPOSED]: 'small b' }));
    const vc = await insertVersionFile(env.db, newer, fa, 'updated', text(17_000, 'c'));
    expect((await run(['migrate', '--app', appId, '--yes'])).code).toBe(0);
    const pruned = await run(['prune-versions', '--app', appId, '--keep-last', '1', '--keep-within', '0s', '--yes']);
    expect(pruned.code, pruned.stderr).toBe(0);
    for (const row of keys) expect(await env.store.head(row.r2_content_key)).toBeUndefined();
    await expectEachReadsItsOwn([{ table: 'version-files', id: vc, content: text(17_000, 'c') }]);
  });

  it('a row is found by any spelling of the key it names, and only by those (the guard before every delete)', async () => {
    const appId = await insertApp(env.db, 'spellings');
    const other = await insertApp(env.db, 'elsewhere');
    const named = async (id: string, key: string) =>
      query(env.db, "UPDATE app_files SET storage_location = 'hybrid', r2_object_key = $2 WHERE id = $1", [id, key]);
    const cafe = await insertFile(env.db, appId, DECOMPOSED, 'cafe');
    await named(cafe, `apps/${appId}/files/${DECOMPOSED}`);
    // U+212A KELVIN SIGN is K under NFC: an ASCII key and a key outside ASCII can be one object.
    const kelvin = await insertFile(env.db, appId, 'src/\u212A.ts', 'kelvin');
    await named(kelvin, `apps/${appId}/files/src/\u212A.ts`);
    const plain = await insertFile(env.db, other, 'src/K.ts', 'plain');
    await named(plain, `apps/${other}/files/src/K.ts`);

    const asked = [
      `apps/${appId}/files/${COMPOSED}`,
      `apps/${appId}/files/src/K.ts`,
      `apps/${other}/files/src/\u212A.ts`,
      `apps/${other}/files/${COMPOSED}`,
      `apps/${appId}/files/src/cafe.tsx`,
    ];
    expect([...(await keysStillReferenced(env.db, asked))].sort()).toEqual(asked.slice(0, 3).sort());
    const rows = await rowsNamingKeys(env.db, asked);
    expect(rows.map((row) => row.id).sort()).toEqual([cafe, kelvin, plain].sort());
    expect(rows.find((row) => row.id === cafe)?.key).toBe(`apps/${appId}/files/${DECOMPOSED}`);
    expect(await keysStillReferenced(env.db, [`apps/${other}/files/${DECOMPOSED}`])).toEqual(new Set());
  });

  it('verify names rows whose keys are spellings of one object, and which row the bytes belong to', async () => {
    const appId = await insertApp(env.db, 'shared already');
    const a = await insertFile(env.db, appId, COMPOSED, text(3_000, 'x'));
    expect((await run(['migrate', '--app', appId, '--yes'])).code).toBe(0);
    // What an older tool (or the plan's own model) left: a second row naming another spelling of the same key.
    const b = await insertFile(env.db, appId, DECOMPOSED, text(3_000, 'y'));
    await query(env.db, "UPDATE app_files SET storage_location = 'hybrid', r2_object_key = $2, content_hash = $3 WHERE id = $1", [b, `apps/${appId}/files/${DECOMPOSED}`, sha256Hex(text(3_000, 'y'))]);
    const verified = await run(['verify', '--app', appId]);
    expect(verified.code).toBe(1);
    const problems = verified.json().problems as { id: string; problem: string }[];
    const forA = problems.find((p) => p.id === a && /shares one object/.test(p.problem));
    const forB = problems.find((p) => p.id === b && /shares one object/.test(p.problem));
    expect(forA?.problem).toContain(`app_files #${b}`);
    expect(forA?.problem).toMatch(/holds the bytes of this row/);
    expect(forB?.problem).toContain(`holds the bytes of app_files #${a}`);
    expect(forB?.problem).toMatch(/reads bytes that are not its own/);
  });

  it('a listing that shows another spelling of a row key is that row\'s object: verify finds it, --orphans and cleanup leave it', async () => {
    const appId = await insertApp(env.db, 'respelled');
    const content = text(4_000, 'r');
    const id = await insertFile(env.db, appId, COMPOSED, content);
    expect((await run(['migrate', '--app', appId, '--yes'])).code).toBe(0);
    // The same bytes written again under the other spelling (as the app's own upload would): R2 lists that one now.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await env.store.objects.put(`apps/${appId}/files/${DECOMPOSED}`, Buffer.from(content), { metadata: ourMetadata(sha256Hex(content)) });
    const listed = [];
    for await (const object of env.store.list(`apps/${appId}/`)) listed.push(object.key);
    expect(listed).toEqual([`apps/${appId}/files/${DECOMPOSED}`]);
    const verified = await run(['verify', '--app', appId, '--orphans']);
    expect(verified.json().problems).toEqual([]);
    expect(verified.json().orphanCount).toBe(0);
    expect(verified.code).toBe(0);
    const cleaned = await run(['cleanup', '--app', appId, '--grace', '0s', '--yes']);
    expect(cleaned.json().listing.orphans).toBe(0);
    await expectEachReadsItsOwn([{ table: 'files', id, content }]);
  });
});
