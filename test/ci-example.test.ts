import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { BIN } from './support/cli.ts';
import { insertApp, insertFile, text } from './support/seed.ts';

/**
 * The documented CI example (examples/ci-dry-run.yml): its dry-run step's script, run by bash with the built
 * CLI on PATH, passes on a healthy database and fails the job when the tool exits 2.
 */
describe('examples/ci-dry-run.yml', () => {
  let env: TestEnv;
  let dir: string;
  const workflow = readFileSync(join(import.meta.dirname, '..', 'examples', 'ci-dry-run.yml'), 'utf8');
  // the `run: |` block of the dry-run step, de-indented
  const block = /name: migrate --dry-run against staging[\s\S]*?run: \|\n([\s\S]*?)\n\s*- name:/.exec(workflow)![1];
  const script = block.split('\n').map((line) => line.replace(/^ {10}/, '')).join('\n');
  const runStep = (extra: NodeJS.ProcessEnv) =>
    spawnSync('bash', ['-e', '-c', script], { cwd: dir, env: { ...env.cliEnv, PATH: `${dir}:${process.env.PATH}`, ...extra }, encoding: 'utf8' });

  beforeAll(async () => {
    env = await createTestEnv();
    const app = await insertApp(env.db);
    await insertFile(env.db, app, 'src/App.tsx', text(5000, 'x'));
    dir = mkdtempSync(join(tmpdir(), 'oss-ci-'));
    symlinkSync(BIN, join(dir, 'overskill-storage'));
  });
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await env?.close();
  });

  it('passes with a plan, and fails the job when the tool refuses (exit 2)', () => {
    const ok = runStep({});
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/schema v1: 1 rows, 5000 bytes would move/);
    const broken = runStep({ DATABASE_URL: 'not a url' });
    expect(broken.status).not.toBe(0);
    expect(broken.stdout).toMatch(/::error::overskill-storage refused to plan \(exit 2\)/);
  });
});
