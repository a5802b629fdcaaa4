import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { insertApp } from './support/seed.ts';
import { query } from '../src/db.ts';
import { readContentChunks } from '../src/sql/content-chunks.ts';
import { TABLES } from '../src/tables.ts';

describe('reading a large content in byte slices', () => {
  let env: TestEnv;
  let id: string;
  // 4-byte and 2-byte characters, so slice boundaries fall inside characters.
  const content = '😀é'.repeat(70_000) + 'tail';
  const expected = Buffer.from(content, 'utf8');
  beforeAll(async () => {
    env = await createTestEnv();
    const app = await insertApp(env.db);
    [{ id }] = await query<{ id: string }>(env.db, 'INSERT INTO app_files (app_id, path, content) VALUES ($1, $2, $3) RETURNING id', [app, 'big.txt', content]);
  });
  afterAll(async () => env?.close());

  async function collect(chunks: AsyncIterable<Buffer>): Promise<{ bytes: Buffer; count: number }> {
    const parts: Buffer[] = [];
    for await (const chunk of chunks) parts.push(chunk);
    return { bytes: Buffer.concat(parts), count: parts.length };
  }

  it('joins back to the exact UTF-8 bytes, whatever the slice size', async () => {
    for (const [sliceBytes, perFetch] of [[1000, 3], [4096, 16], [7, 1000], [expected.length, 1], [expected.length + 5, 2]]) {
      const { bytes, count } = await collect(readContentChunks(env.db, TABLES.files, id, sliceBytes, perFetch));
      expect(bytes.equals(expected)).toBe(true);
      expect(count).toBe(Math.ceil(expected.length / sliceBytes));
    }
  });

  it('yields nothing for an empty or missing content', async () => {
    const app = await insertApp(env.db);
    const [{ id: empty }] = await query<{ id: string }>(env.db, "INSERT INTO app_files (app_id, path, content) VALUES ($1, 'empty', '') RETURNING id", [app]);
    const [{ id: nulled }] = await query<{ id: string }>(env.db, "INSERT INTO app_files (app_id, path, content) VALUES ($1, 'null', NULL) RETURNING id", [app]);
    expect((await collect(readContentChunks(env.db, TABLES.files, empty))).count).toBe(0);
    expect((await collect(readContentChunks(env.db, TABLES.files, nulled))).count).toBe(0);
    expect((await collect(readContentChunks(env.db, TABLES.files, '999999999'))).count).toBe(0);
  });

  it('an abandoned read closes its transaction and gives its connection back', async () => {
    for (let round = 0; round < 10; round++) {
      for await (const chunk of readContentChunks(env.db, TABLES.files, id, 1000, 2)) {
        expect(chunk.length).toBe(1000);
        break;
      }
    }
    // Ten abandoned reads on a pool of six: had any kept its connection, this would wait for the pool.
    const rows = await query<{ open: number }>(
      env.db,
      "SELECT count(*)::int AS open FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
    );
    expect(rows[0].open).toBe(0);
  });

  it('reads one consistent version while the row is rewritten mid-read', async () => {
    const app = await insertApp(env.db);
    const [{ id: moving }] = await query<{ id: string }>(env.db, "INSERT INTO app_files (app_id, path, content) VALUES ($1, 'moving', repeat('a', 300000)) RETURNING id", [app]);
    const hash = createHash('sha256');
    let first = true;
    for await (const chunk of readContentChunks(env.db, TABLES.files, moving, 10_000, 1)) {
      if (first) await query(env.db, "UPDATE app_files SET content = repeat('b', 300000) WHERE id = $1", [moving]);
      first = false;
      hash.update(chunk);
    }
    expect(hash.digest('hex')).toBe(createHash('sha256').update('a'.repeat(300000)).digest('hex'));
  });

  it('works inside a caller transaction without ending it', async () => {
    await env.db.transaction(async (trx) => {
      await query(trx, 'CREATE TEMP TABLE marker (x int) ON COMMIT DROP');
      const { bytes } = await collect(readContentChunks(trx, TABLES.files, id, 50_000, 2));
      expect(bytes.equals(expected)).toBe(true);
      // still in the caller's transaction: the temp table is there until it commits
      await query(trx, 'INSERT INTO marker VALUES (1)');
    });
  });
});
