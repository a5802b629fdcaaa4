/**
 * Plays the OverSkill app during a migration: for `seconds`, rewrites random files of the given apps the
 * way the app's write path does (new content into the database, the row back to 'database'), or, for a
 * third of the writes, the way old app code does (content only). Prints the last content hash it wrote
 * for each row as JSON when done.
 *   node --import tsx test/support/app-writer.ts DATABASE_URL APP_IDS SECONDS SEED
 */
import pg from 'pg';
import { createHash } from 'node:crypto';

const [url, appIds, seconds, seedArg] = process.argv.slice(2);
let seed = Number(seedArg ?? 1);
const random = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
};

const client = new pg.Client({ connectionString: url, application_name: 'app-writer' });
await client.connect();
const { rows } = await client.query('SELECT id FROM app_files WHERE app_id = ANY($1::bigint[]) ORDER BY id', [appIds.split(',')]);
const ids: string[] = rows.map((row: { id: string }) => row.id);
const last: Record<string, string> = {};
const deadline = Date.now() + Number(seconds) * 1000;
let n = 0;
while (Date.now() < deadline) {
  const id = ids[Math.floor(random() * ids.length)];
  const size = Math.floor(random() * 30_000);
  const content = `write ${n++} to ${id} `.repeat(Math.ceil(size / 20)).slice(0, size);
  const hash = createHash('sha256').update(content, 'utf8').digest('hex');
  if (random() < 0.33) {
    const result = await client.query("UPDATE app_files SET content = $2, updated_at = now() WHERE id = $1 AND storage_location = 'database'", [id, content]);
    if (result.rowCount) last[id] = hash;
  } else {
    await client.query("UPDATE app_files SET content = $2, content_hash = $3, storage_location = 'database', r2_object_key = NULL, updated_at = now() WHERE id = $1", [id, content, hash]);
    last[id] = hash;
  }
  await new Promise((resolve) => setTimeout(resolve, random() * 15));
}
await client.end();
process.stdout.write(JSON.stringify({ writes: n, last }) + '\n');
