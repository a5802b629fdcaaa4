import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { placementFor, DEFAULT_POLICY } from '../src/placement.ts';

describe('placement policy (DESIGN.md table)', () => {
  it.each([
    [0, 'database', 'database'],
    [1023, 'database', 'database'],
    [1024, 'hybrid', 'hybrid'],
    [10240, 'hybrid', 'hybrid'],
    [10241, 'hybrid', 'r2'],
    [50 * 1024 * 1024, 'hybrid', 'r2'],
  ])('%i bytes: %s after migrate, %s after finalize', (size, afterMigrate, afterFinalize) => {
    expect(placementFor(size, 'migrate')).toBe(afterMigrate);
    expect(placementFor(size, 'finalize')).toBe(afterFinalize);
  });

  it('property: matches the table for any size and any thresholds', () => {
    fc.assert(
      fc.property(fc.nat({ max: 1e9 }), fc.nat({ max: 1e6 }), fc.nat({ max: 1e6 }), (size, hybridMin, extra) => {
        const policy = { hybridMin, r2Above: hybridMin + extra };
        const migrate = placementFor(size, 'migrate', policy);
        const finalize = placementFor(size, 'finalize', policy);
        if (size < hybridMin) {
          expect(migrate).toBe('database');
          expect(finalize).toBe('database');
        } else {
          expect(migrate).toBe('hybrid');
          expect(finalize).toBe(size > policy.r2Above ? 'r2' : 'hybrid');
        }
      }),
    );
    expect(DEFAULT_POLICY).toEqual({ hybridMin: 1024, r2Above: 10240 });
  });
});
