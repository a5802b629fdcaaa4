import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { cli } from './support/cli.ts';
import { randomBytes } from 'node:crypto';
import { insertApp, insertFile } from './support/seed.ts';

interface Metric {
  metric: string;
  measured: number | null;
  met: boolean | null;
  next?: string | null;
  steps?: { step: string; brings: number }[];
  shortfall?: string;
  measuredText: string;
  note: string;
}

/**
 * The plan's success metrics lead the way to the end of Phase 3: each says its figure now, what each step left
 * would bring it to, and which step is next; the availability of R2 access is measured from the tool's own reads.
 */
describe("the plan's success metrics, before and after each step", () => {
  let env: TestEnv;
  const run = (args: string[]) => cli([...args, '--json'], env.cliEnv);
  const metrics = async (): Promise<Record<string, Metric>> => {
    const report = await run(['report']);
    expect(report.code).toBe(0);
    return Object.fromEntries((report.json().metrics as Metric[]).map((m) => [m.metric, m]));
  };
  const size = 'app_files table size reduction';

  beforeAll(async () => {
    env = await createTestEnv({ schema: false });
    const app = await insertApp(env.db, 'metrics');
    // Contents that do not compress away (as real source files mostly do not, at these sizes), so the
    // contents, not the tables' pages and indexes, are what the steps move.
    const noise = (bytes: number) => randomBytes(Math.ceil(bytes * 0.75)).toString('base64').slice(0, bytes);
    for (let i = 0; i < 40; i++) await insertFile(env.db, app, `src/small${i}.ts`, noise(300 + i));
    for (let i = 0; i < 120; i++) await insertFile(env.db, app, `src/band${i}.ts`, noise(3_000 + i * 40));
    for (let i = 0; i < 40; i++) await insertFile(env.db, app, `src/large${i}.ts`, noise(30_000 + i));
    // The baseline is what the tables take when the schema is first applied, before anything moves.
    expect((await run(['schema', '--apply', '--yes'])).code).toBe(0);
  });
  afterAll(async () => env?.close());

  it('each step is named as next until the figure is met, and the figure grows as the steps are taken', async () => {
    const start = await metrics();
    expect(start[size].next).toBe('migrate');

    // Part of it moved: what is still to move could be stored compressed (the sample of it says by how much).
    expect((await run(['migrate', '--yes', '--limit', '60'])).code).toBe(0);
    const part = await metrics();
    expect(part[size].next).toBe('migrate');
    expect(part['monthly storage cost reduction'].steps!.map((step) => step.step)).toContain('stored compressed');

    expect((await run(['migrate', '--yes'])).code).toBe(0);
    const migrated = await metrics();
    expect(migrated[size].next).toBe('finalize');
    expect(migrated[size].steps!.map((s) => s.step)).toEqual(expect.arrayContaining(['finalize, then reclaim', 'finalize --hybrid-band, then reclaim']));

    expect((await run(['finalize', '--yes'])).code).toBe(0);
    const finalized = await metrics();
    expect(finalized[size].next).toBe('finalize --hybrid-band');
    const promised = finalized[size].steps!.find((s) => s.step === 'finalize --hybrid-band, then reclaim')!.brings;

    expect((await run(['finalize', '--hybrid-band', '--yes'])).code).toBe(0);
    const band = await metrics();
    expect(band[size].next).toBe('reclaim');

    expect((await run(['reclaim', '--offline', '--yes'])).code).toBe(0);
    const reclaimed = await metrics();
    expect(reclaimed[size].measured!).toBeGreaterThan(band[size].measured!);
    expect(reclaimed[size].measured!).toBeGreaterThan(migrated[size].measured!);
    // What the metric promised for the band and reclaim is what they gave, within the estimate's margin.
    expect(Math.abs(reclaimed[size].measured! - promised), `promised ${promised}%, measured ${reclaimed[size].measured}%`).toBeLessThan(15);
    if (reclaimed[size].met) expect(reclaimed[size].next).toBeNull();
    else expect(reclaimed[size].shortfall).toMatch(/points short: .* files below 1024 bytes/);
    expect(reclaimed['monthly storage cost reduction'].measured!).toBeGreaterThan(migrated['monthly storage cost reduction'].measured!);
  });

  it('measures the availability of R2 access from maintain\'s reads, over the period it names', async () => {
    const before = await metrics();
    expect(before['R2 access availability']).toMatchObject({ measured: null, met: null });
    expect((await run(['maintain', '--yes', '--deep-sample', '100%'])).code).toBe(0);
    const after = (await metrics())['R2 access availability'];
    expect(after.measured).toBe(100);
    expect(after.measuredText).toMatch(/^100% of \d+ reads \(0 failed\) over 1 maintain run from \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d/);
    // Fewer than 1,000 reads cannot tell 99.9% apart: not called met.
    expect(after.met).toBeNull();
    expect(after.note).toMatch(/cannot tell 99.9%/);
  });
});
