import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';

const APP_DIR = join(import.meta.dirname, '..', 'app');

/**
 * Whether this machine runs the plan's Ruby models (Debian: ruby ruby-activerecord ruby-pg ruby-aws-sdk-s3).
 * CI installs them and sets REQUIRE_RUBY=1, so there a missing Ruby fails instead of skipping.
 */
export const RUBY_APP = (() => {
  const probe = spawnSync('ruby', ['-e', 'require "active_record"; require "pg"; require "aws-sdk-s3"; print ActiveRecord::VERSION::STRING'], { encoding: 'utf8' });
  const available = probe.status === 0;
  if (!available) {
    if (process.env.REQUIRE_RUBY === '1') throw new Error(`REQUIRE_RUBY=1 but the plan's Ruby models cannot run here: ${probe.error?.message ?? probe.stderr}`);
    process.stderr.write("\nThe plan's Ruby models need ruby, ruby-activerecord, ruby-pg and ruby-aws-sdk-s3 (Debian); their tests do not run here.\n\n");
  }
  return { available, version: available ? probe.stdout : undefined };
})();

export interface PlanAppEnv {
  databaseUrl: string;
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export interface ReadAnswer {
  content: string | null;
  sha256: string | null;
}

/**
 * The OverSkill app as the plan writes it (test/app/plan_models.rb on ActiveRecord), one Ruby process that
 * takes one command at a time: a test decides exactly when the app loads a row, assigns its content (the
 * upload happens there) and saves it.
 */
export class PlanApp {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly answers: ((line: string) => void)[] = [];
  private stderr = '';

  constructor(env: PlanAppEnv) {
    this.child = spawn('ruby', [join(APP_DIR, 'plan_app.rb')], {
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: env.databaseUrl,
        R2_ENDPOINT: env.endpoint,
        R2_ACCESS_KEY_ID: env.accessKeyId,
        R2_SECRET_ACCESS_KEY: env.secretAccessKey,
        CLOUDFLARE_R2_BUCKET_DB_FILES: env.bucket,
      },
    });
    this.child.stderr.on('data', (chunk) => (this.stderr += chunk));
    createInterface({ input: this.child.stdout }).on('line', (line) => this.answers.shift()?.(line));
    this.child.on('exit', (code) => {
      for (const answer of this.answers.splice(0)) answer(JSON.stringify({ error: 'Exited', message: `ruby exited with ${code}: ${this.stderr}` }));
    });
  }

  private async send<T>(command: Record<string, unknown>): Promise<T> {
    const line = await new Promise<string>((resolve) => {
      this.answers.push(resolve);
      this.child.stdin.write(JSON.stringify(command) + '\n');
    });
    return JSON.parse(line) as T;
  }

  /** Like send, but a Ruby exception fails the call. */
  private async must<T>(command: Record<string, unknown>): Promise<T> {
    const answer = await this.send<T & { error?: string; message?: string }>(command);
    if (answer.error) throw new Error(`the app's ${String(command.op)} raised ${answer.error}: ${answer.message}`);
    return answer;
  }

  load(slot: string, id: string): Promise<{ storage_location: string; r2_object_key: string | null; content_hash: string | null }> {
    return this.must({ op: 'load', slot, id });
  }

  assign(slot: string, content: string): Promise<unknown> {
    return this.must({ op: 'assign', slot, content });
  }

  /** save! of a loaded row: what it wrote, or the exception ActiveRecord raised (StaleObjectError, ...). */
  save(slot: string): Promise<{ saved?: true; changed?: string[]; error?: string; message?: string }> {
    return this.send({ op: 'save', slot });
  }

  write(id: string, content: string): Promise<unknown> {
    return this.must({ op: 'write', id, content });
  }

  read(id: string): Promise<ReadAnswer> {
    return this.must({ op: 'read', id });
  }

  readSnapshot(id: string): Promise<ReadAnswer> {
    return this.must({ op: 'read_snapshot', id });
  }

  /**
   * The app writing for `seconds`, and on until it has saved `minRows` rows (a loaded machine saves fewer in
   * the time; see plan_app.rb `race`): what it last saved to each row.
   */
  race(ids: string[], seconds: number, seed: number, options: { gapMs?: number; minRows?: number } = {}): Promise<{ counts: Record<string, number>; last: Record<string, string>; writes: number }> {
    return this.must({ op: 'race', ids, seconds, seed, gap_ms: options.gapMs ?? 40, min_rows: options.minRows ?? 0 });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.stdin.end();
    await exited;
  }
}
