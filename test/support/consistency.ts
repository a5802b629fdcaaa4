import { expect } from 'vitest';
import { query } from '../../src/db.ts';
import { TABLES, TABLE_NAMES } from '../../src/tables.ts';
import { readStoredContent } from '../../src/ops/read-content.ts';
import { sha256Hex } from '../../src/hashing.ts';
import type { TestEnv } from './env.ts';

/**
 * The full consistency check every resilience scenario ends with: in all three tables, every row's content
 * can be read (from the database, or from an object that exists and hashes to content_hash), flags agree
 * with columns, and no row points at a missing or different object. Returns each row's content hash.
 * With `leftoverKeys`, a 'database' row may keep a key (the plan's own model code leaves it).
 */
export async function checkConsistency(env: TestEnv, options: { leftoverKeys?: boolean } = {}): Promise<Map<string, string>> {
  const hashes = new Map<string, string>();
  for (const name of TABLE_NAMES) {
    const t = TABLES[name];
    const rows = await query<{ id: string; location: string; key: string | null; hash: string | null; content: string | null }>(
      env.db,
      `SELECT id, ${t.locationColumn} AS location, ${t.keyColumn} AS key, ${t.hashColumn} AS hash, ${t.contentColumn} AS content FROM ${t.table} ORDER BY id`,
    );
    for (const row of rows) {
      const label = `${t.table} #${row.id} (${row.location})`;
      expect(['database', 'hybrid', 'r2'], label).toContain(row.location);
      if (row.location === 'database') {
        // The plan's Phase 1 model moves a row back to 'database' without clearing its key; this tool always clears it.
        if (!options.leftoverKeys) expect(row.key, label).toBeNull();
        if (row.content !== null) hashes.set(`${name}:${row.id}`, sha256Hex(row.content));
        continue;
      }
      expect(row.key, label).not.toBeNull();
      expect(row.hash, label).not.toBeNull();
      if (row.location === 'r2') expect(row.content, label).toBeNull();
      // the object must exist and hash to content_hash, whatever the row's location
      const read = await env.store.readAndHash(row.key!);
      if (row.location === 'r2' || row.content === null) {
        expect(read.sha256, `${label}: object ${row.key}`).toBe(row.hash);
      }
      const content = await readStoredContent(env.context, { table: name, id: row.id, location: row.location, key: row.key, hash: row.hash, content: row.content, hasContent: row.content !== null, bytes: null });
      hashes.set(`${name}:${row.id}`, sha256Hex(content.content));
    }
  }
  return hashes;
}

/** Hybrid rows whose object no longer matches their own (unchanged) content: a row pointing at a different object. */
export async function hybridRowsWithStaleObjects(env: TestEnv): Promise<string[]> {
  const stale: string[] = [];
  for (const name of TABLE_NAMES) {
    const t = TABLES[name];
    const rows = await query<{ id: string; key: string; hash: string; db_hash: string }>(
      env.db,
      `SELECT id, ${t.keyColumn} AS key, ${t.hashColumn} AS hash, encode(sha256(convert_to(${t.contentColumn}, 'UTF8')), 'hex') AS db_hash
         FROM ${t.table} WHERE ${t.locationColumn} = 'hybrid' AND ${t.contentColumn} IS NOT NULL`,
    );
    for (const row of rows) {
      if (row.db_hash !== row.hash) continue; // the app rewrote it after the flip: its database content is the truth
      const read = await env.store.readAndHash(row.key);
      if (read.sha256 !== row.hash) stale.push(`${t.table} #${row.id}`);
    }
  }
  return stale;
}
