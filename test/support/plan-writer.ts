/**
 * Plays the OverSkill app during a run of the tool, writing file contents the way the plan's Phase 1 model
 * does (`AppFile#content=` then `save!`, r2-hybrid-storage-plan.md section 1.3):
 *   < 1 KiB:    no upload; content, content_hash, size_bytes and storage_location 'database' (r2_object_key kept);
 *   1-10 KiB:   PutObject to apps/{app_id}/files/{path}, then content, 'hybrid', r2_object_key, hash, size;
 *   > 10 KiB:   PutObject to the same key, then content NULL, 'r2', r2_object_key, hash, size.
 * The upload is a plain PutObject with no metadata, as the plan's service sends it. With --legacy P, a share
 * P of the writes is app code from before the plan instead: content only, in the database.
 * Rows are split between --loops sequential writers, so no two of them ever write the same row.
 * Prints one JSON line when done: counts per branch and the last content hash written to each row.
 *   node --import tsx test/support/plan-writer.ts '{"databaseUrl":…,"endpoint":…,"bucket":…,…}'
 */
import pg from 'pg';
import { createHash } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '../../src/store/client.ts';

interface WriterConfig {
  databaseUrl: string;
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  appIds: string[];
  seconds: number;
  seed: number;
  /** Share of writes done the pre-plan way (content only). */
  legacy?: number;
  loops?: number;
  /** Longest pause between two writes of one loop. */
  pauseMs?: number;
}

const config = JSON.parse(process.argv[2]) as WriterConfig;
let seed = config.seed;
const random = () => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
};
const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

const pool = new pg.Pool({ connectionString: config.databaseUrl, max: (config.loops ?? 4) + 1, application_name: 'plan-writer' });
const { client: s3 } = createS3Client(
  { endpoint: config.endpoint, accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey, bucket: config.bucket, region: 'auto', allowInsecureEndpoint: false },
  // A generous timeout: an upload abandoned by its client but still on its way would land after the retry that
  // replaced it, and the app would have clobbered its own newer object (the plan's upload is unconditional).
  { maxAttempts: 8, requestTimeoutMs: 120_000 },
);
const { rows } = await pool.query('SELECT id, app_id, path FROM app_files WHERE app_id = ANY($1::bigint[]) ORDER BY id', [config.appIds]);
const counts = { writes: 0, database: 0, hybrid: 0, r2: 0, legacy: 0, failedUploads: 0 };
const last: Record<string, string> = {};
/** The last few writes to each row, for telling what happened to a row afterwards. */
const history: Record<string, string[]> = {};
const remember = (id: string, entry: string) => {
  const list = (history[id] ??= []);
  list.push(`${Date.now()} ${entry}`);
  if (list.length > 6) list.shift();
};
const deadline = Date.now() + config.seconds * 1000;
let n = 0;

async function write(row: { id: string; app_id: string; path: string }): Promise<void> {
  const band = random();
  const size = band < 0.2 ? 200 + Math.floor(random() * 800) : band < 0.6 ? 1100 + Math.floor(random() * 9000) : 10_300 + Math.floor(random() * 20_000);
  const content = `write ${n++} to ${row.id} `.repeat(Math.ceil(size / 16)).slice(0, size);
  const hash = sha256(content);
  if (random() < (config.legacy ?? 0)) {
    const result = await pool.query("UPDATE app_files SET content = $2, updated_at = now() WHERE id = $1 AND storage_location <> 'r2'", [row.id, content]);
    if (result.rowCount) {
      remember(row.id, `pre-plan ${hash.slice(0, 8)}`);
      last[row.id] = hash;
      counts.legacy++;
      counts.writes++;
    }
    return;
  }
  const bytes = Buffer.byteLength(content, 'utf8');
  if (bytes < 1024) {
    await pool.query("UPDATE app_files SET content = $2, storage_location = 'database', content_hash = $3, size_bytes = $4, updated_at = now() WHERE id = $1", [row.id, content, hash, bytes]);
    counts.database++;
  } else {
    const key = `apps/${row.app_id}/files/${row.path.replace(/^\//, '')}`;
    try {
      await s3.send(new PutObjectCommand({ Bucket: config.bucket, Key: key, Body: Buffer.from(content, 'utf8'), ContentLength: bytes, ContentType: 'text/plain' }));
    } catch (error) {
      counts.failedUploads++; // the app's save raised: the row keeps what it had
      remember(row.id, `upload failed ${hash.slice(0, 8)}: ${(error as Error).name}`);
      return;
    }
    if (bytes <= 10 * 1024) {
      await pool.query("UPDATE app_files SET content = $2, storage_location = 'hybrid', r2_object_key = $3, content_hash = $4, size_bytes = $5, updated_at = now() WHERE id = $1", [row.id, content, key, hash, bytes]);
      counts.hybrid++;
    } else {
      await pool.query("UPDATE app_files SET content = NULL, storage_location = 'r2', r2_object_key = $2, content_hash = $3, size_bytes = $4, updated_at = now() WHERE id = $1", [row.id, key, hash, bytes]);
      counts.r2++;
    }
  }
  remember(row.id, `${bytes < 1024 ? 'database' : bytes <= 10 * 1024 ? 'hybrid' : 'r2'} ${hash.slice(0, 8)}`);
  last[row.id] = hash;
  counts.writes++;
}

const loops = config.loops ?? 4;
await Promise.all(
  Array.from({ length: loops }, async (_, loop) => {
    const mine = rows.filter((_row, index) => index % loops === loop);
    while (Date.now() < deadline && mine.length) {
      await write(mine[Math.floor(random() * mine.length)]);
      await new Promise((resolve) => setTimeout(resolve, random() * (config.pauseMs ?? 10)));
    }
  }),
);
s3.destroy();
await pool.end();
process.stdout.write(JSON.stringify({ ...counts, last, history }) + '\n');
