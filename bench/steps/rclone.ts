/**
 * rclone copying the same contents from a directory to the same S3 server, against the CLI's migrate, at the
 * same concurrency: client CPU per object for both (rclone's from bash's `times`, the CLI's from its own
 * resource usage). Needs `rclone` on PATH (Debian's package); configured through RCLONE_CONFIG_* only.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { query, type Db } from '../../src/db.ts';
import { resetMigration, type BenchStore } from '../fixture.ts';
import { UNCONDITIONAL } from '../options.ts';
import { cliEnvFor, timeNode } from '../processes.ts';

export interface RcloneComparison {
  objects: number;
  rclone: { seconds: number; cpuSeconds: number; cpuMsPerObject: number; objectsPerSecond: number };
  migrate: { seconds: number; cpuSeconds: number; cpuMsPerObject: number; objectsPerSecond: number; maxRssMb: number };
}

export async function compareWithRclone(db: Db, databaseUrl: string, s3: BenchStore, concurrency: number): Promise<RcloneComparison | undefined> {
  if (spawnSync('rclone', ['version']).status !== 0) {
    console.log('rclone is not installed (apt-get install rclone): no side-by-side CPU figure');
    return undefined;
  }
  const dir = mkdtempSync(join(tmpdir(), 'overskill-rclone-'));
  try {
    await resetMigration(db);
    const rows = await query<{ app_id: string; path: string; content: string }>(db, 'SELECT app_id, path, content FROM app_files WHERE octet_length(content) >= 1024');
    for (const row of rows) {
      const file = join(dir, 'apps', row.app_id, 'files', row.path);
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, row.content);
    }
    const env: NodeJS.ProcessEnv = { ...process.env, RCLONE_CONFIG_BENCH_TYPE: 's3', RCLONE_CONFIG_BENCH_PROVIDER: 'Other', RCLONE_CONFIG_BENCH_ENDPOINT: s3.endpoint, RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: s3.accessKeyId, RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: s3.secretAccessKey, RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true' };
    delete env.AWS_CA_BUNDLE;
    const started = Date.now();
    const rclone = spawnSync('bash', ['-c', `rclone copy "$0" "bench:${s3.bucket}/rclone-${Date.now()}" --transfers ${concurrency} --checkers ${concurrency} 2>/dev/null && times`, dir], { env, encoding: 'utf8' });
    const rcloneSeconds = (Date.now() - started) / 1000;
    // `times` prints the shell's own times, then its children's: "0m8.250s 0m4.900s"
    const children = rclone.stdout.trim().split('\n').pop()!.split(/\s+/).map((t) => { const m = /([0-9]+)m([0-9.]+)s/.exec(t)!; return Number(m[1]) * 60 + Number(m[2]); });
    const rcloneCpu = children[0] + children[1];
    const migrate = await timeNode(['bin/overskill-storage.js', 'migrate', '--yes', ...UNCONDITIONAL, '--json', '--concurrency', String(concurrency), '--tables', 'files'], cliEnvFor(databaseUrl, s3));
    const objects = rows.length;
    const r: RcloneComparison = {
      objects,
      rclone: { seconds: rcloneSeconds, cpuSeconds: rcloneCpu, cpuMsPerObject: (rcloneCpu / objects) * 1000, objectsPerSecond: objects / rcloneSeconds },
      migrate: { seconds: migrate.seconds, cpuSeconds: migrate.cpuSeconds, cpuMsPerObject: (migrate.cpuSeconds / objects) * 1000, objectsPerSecond: objects / migrate.seconds, maxRssMb: migrate.maxRssMb },
    };
    console.log(
      `rclone copy vs CLI migrate, c=${concurrency}, ${r.objects} objects: rclone ${r.rclone.objectsPerSecond.toFixed(0)} obj/s at ${r.rclone.cpuMsPerObject.toFixed(2)} ms CPU/object; migrate ${r.migrate.objectsPerSecond.toFixed(0)} obj/s at ${r.migrate.cpuMsPerObject.toFixed(2)} ms CPU/object → ${(r.migrate.cpuMsPerObject / r.rclone.cpuMsPerObject).toFixed(2)} of rclone (target <= 0.6)`,
    );
    return r;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
