import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { insertApp, insertFile, insertVersion, insertVersionFile, text } from './support/seed.ts';

/** Every command's --json document against the JSON Schema kept in the repo (schemas/cli-output.schema.json). */
describe('--json output follows its versioned schema', () => {
  let env: TestEnv;
  let app: string;
  let out: string;
  const schema = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'schemas', 'cli-output.schema.json'), 'utf8'));
  const validate = new Ajv2020({ allErrors: true, strict: false }).compile(schema);
  const check = async (args: string[], codes = [0]) => {
    const run = await cli([...args, '--json'], env.cliEnv);
    expect(codes, `${args.join(' ')}: ${run.stderr}`).toContain(run.code);
    const document = run.json();
    const ok = validate(document);
    expect(ok ? [] : validate.errors, `${args.join(' ')} against the schema`).toEqual([]);
    expect(document.schemaVersion).toBe(1);
    expect(document.command).toBe(args[0]);
    return document;
  };

  beforeAll(async () => {
    env = await createTestEnv();
    app = await insertApp(env.db);
    const file = await insertFile(env.db, app, 'src/App.tsx', text(20_000, 'app '));
    await insertFile(env.db, app, 'index.html', text(3000, '<p>'));
    const version = await insertVersion(env.db, app, '1.0.0', JSON.stringify({ 'src/App.tsx': text(20_000, 'app '), 'index.html': text(3000, '<p>') }));
    await insertVersionFile(env.db, version, file, 'created', text(20_000, 'app '));
    out = mkdtempSync(join(tmpdir(), 'oss-json-'));
  });
  afterAll(async () => {
    rmSync(out, { recursive: true, force: true });
    await env?.close();
  });

  it('every command, dry-run and real', async () => {
    await check(['schema']);
    expect((await check(['migrate', '--dry-run'])).dryRun).toBe(true);
    expect((await check(['migrate', '--yes'])).result.uploaded).toBe(4);
    await check(['verify']);
    await check(['finalize', '--dry-run']);
    await check(['finalize', '--yes']);
    await check(['report']);
    await check(['restore-version', app, '1.0.0', '--dry-run']);
    await check(['export', app, '--out', out]);
    // zero needs no unit
    await check(['cleanup', '--grace', '0']);
    await check(['rollback', '--dry-run']);
    const rolledBack = await check(['rollback', '--yes', '--purge']);
    expect(rolledBack.result.deleteWindow.count).toBe(rolledBack.result.purged);
    // the runs those commands recorded
    const status = await check(['status']);
    expect(status.recent.map((s: { run: { command: string } }) => s.run.command)).toEqual(['rollback', 'finalize', 'migrate']); // cleanup without --yes only listed
    const history = await check(['report', '--runs']);
    expect(history.runs).toHaveLength(3);
    await check(['report', '--items', history.runs[0].id]);
    await check(['status', history.runs[0].id]);
    // controls on a finished run: refused, exit 2, an error on stderr and no document
    const refused = await cli(['pause', history.runs[0].id, '--json'], env.cliEnv);
    expect(refused.code).toBe(2);
  });

  it('in a GitHub Actions job, dry-runs and report append themselves to the step summary as markdown', async () => {
    const summary = join(out, 'step-summary.md');
    const ciEnv = { ...env.cliEnv, GITHUB_STEP_SUMMARY: summary };
    expect((await cli(['migrate', '--dry-run', '--json'], ciEnv)).code).toBe(0);
    expect((await cli(['restore-version', app, '1.0.0', '--dry-run'], ciEnv)).code).toBe(0);
    expect((await cli(['report'], ciEnv)).code).toBe(0);
    const text = readFileSync(summary, 'utf8');
    expect(text).toMatch(/### overskill-storage: Migration plan \(dry run\)/);
    expect(text).toMatch(/\| measure \| value \|/);
    expect(text).toMatch(/restore app [0-9]+ to 1\.0\.0 \(dry run\)/);
    expect(text).toMatch(/## R2 storage report/);
    // without the variable nothing is written anywhere
    expect((await cli(['report'], env.cliEnv)).code).toBe(0);
    expect(readFileSync(summary, 'utf8')).toBe(text);
  });

  it('the schema is strict enough to fail: a document without its version or with a wrong shape is refused', () => {
    expect(validate({ command: 'verify', checked: {}, problemCount: 0, problems: [], orphanCount: 0, deep: false, interrupted: false })).toBe(false);
    expect(validate({ schemaVersion: 1, command: 'migrate', dryRun: true })).toBe(false);
    expect(validate({ schemaVersion: 1, command: 'report', tables: [] })).toBe(false);
  });
});
