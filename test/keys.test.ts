import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fileKey, MAX_KEY_BYTES, normalizePath, snapshotKey, versionFileKey, versionOrphanKey, versionRowKey, blobKey } from '../src/keys.ts';

describe('object keys', () => {
  it('follows the plan layout and strips one leading slash', () => {
    expect(fileKey('7', '/src/App.tsx')).toEqual({ ok: true, key: 'apps/7/files/src/App.tsx' });
    expect(fileKey('7', 'src/App.tsx')).toEqual({ ok: true, key: 'apps/7/files/src/App.tsx' });
    expect(versionFileKey('7', '12', 'a b/ü.js')).toEqual({ ok: true, key: 'apps/7/versions/12/a b/ü.js' });
    expect(snapshotKey('7', '12')).toEqual({ ok: true, key: 'apps/7/snapshots/12/snapshot.json' });
    expect(blobKey('7', 'a'.repeat(64))).toEqual({ ok: true, key: `apps/7/blobs/${'a'.repeat(64)}` });
  });

  it.each([
    ['..', 'a/../b'],
    ['..', '../etc/passwd'],
    ['.', './a'],
    ['empty segment', 'a//b'],
    ['empty segment', '//a'],
    ['empty segment', 'a/'],
    ['empty', '/'],
    ['empty', ''],
    ['control', 'a\u0000b'],
    ['control', 'a\nb'],
    ['control', 'a\u007fb'],
    ['control', 'a\u0085b'],
    ['unicode', 'a\ud800b'],
  ])('refuses a path with %s (%j) with a reason', (_label, path) => {
    const result = fileKey('1', path);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason.length).toBeGreaterThan(5);
  });

  it('refuses keys longer than S3 allows, counting UTF-8 bytes', () => {
    const prefix = 'apps/1/files/';
    expect(fileKey('1', 'a'.repeat(MAX_KEY_BYTES - prefix.length)).ok).toBe(true);
    expect(fileKey('1', 'a'.repeat(MAX_KEY_BYTES - prefix.length + 1)).ok).toBe(false);
    // 341 three-byte characters: 1023 bytes of path, over the limit with the prefix
    expect(fileKey('1', '日'.repeat(341)).ok).toBe(false);
  });

  it('refuses ids that are not positive integers (a hostile id never reaches a key)', () => {
    expect(fileKey('1; DROP TABLE apps', 'a').ok).toBe(false);
    expect(fileKey('-1', 'a').ok).toBe(false);
    expect(versionFileKey('1', '2/../3', 'a').ok).toBe(false);
  });

  const pathArbitrary = fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.array(fc.constantFrom('a', 'b', '.', '..', '', ' ', 'ü', '日本', '\u0000', '\\', '%2F'), { maxLength: 6 }).map((parts) => parts.join('/')),
    fc.constantFrom('/a', 'a', '//a', '/a/'),
  );

  it('property: every derived key is safe (no "." or ".." or empty segment, no control characters, <= 1024 bytes)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: 2n ** 62n }), pathArbitrary, (appId, path) => {
        const result = fileKey(String(appId), path);
        if (!result.ok) return true;
        const segments = result.key.split('/');
        expect(segments.every((segment) => segment !== '' && segment !== '.' && segment !== '..')).toBe(true);
        expect(/[\u0000-\u001f\u007f-\u009f]/.test(result.key)).toBe(false);
        expect(Buffer.byteLength(result.key, 'utf8')).toBeLessThanOrEqual(MAX_KEY_BYTES);
        expect(Buffer.from(result.key, 'utf8').toString('utf8')).toBe(result.key);
        return true;
      }),
      { numRuns: 2000 },
    );
  });

  it('property: derivation is injective, except the one alias the plan creates ("/a" and "a"), which the claim refuses', () => {
    fc.assert(
      fc.property(pathArbitrary, pathArbitrary, (first, second) => {
        const a = fileKey('1', first);
        const b = fileKey('1', second);
        if (!a.ok || !b.ok || first === second) return true;
        if (a.key === b.key) {
          // the only way two different accepted paths meet is the stripped leading slash
          expect(first.replace(/^\//, '')).toBe(second.replace(/^\//, ''));
        }
        return true;
      }),
      { numRuns: 3000 },
    );
  });

  it('property: different apps and versions never share a key', () => {
    fc.assert(
      fc.property(fc.nat(), fc.nat(), fc.string({ minLength: 1, maxLength: 10 }), (x, y, path) => {
        fc.pre(x !== y);
        const a = versionFileKey(String(x + 1), '5', path);
        const b = versionFileKey(String(y + 1), '5', path);
        if (a.ok && b.ok) expect(a.key).not.toBe(b.key);
        const c = versionFileKey('5', String(x + 1), path);
        const d = versionFileKey('5', String(y + 1), path);
        if (c.ok && d.ok) expect(c.key).not.toBe(d.key);
      }),
    );
  });

  it('property: the three version-file key forms (path, row-qualified path, row alone) never meet', () => {
    fc.assert(
      fc.property(fc.nat({ max: 50 }), fc.nat({ max: 50 }), pathArbitrary, fc.nat({ max: 50 }), fc.nat({ max: 50 }), pathArbitrary, (v1, r1, p1, v2, r2, p2) => {
        const keys = (v: number, r: number, p: string) =>
          [versionFileKey('7', String(v), p), versionRowKey('7', String(v), String(r), p), versionOrphanKey('7', String(v), String(r))].map((k) => (k.ok ? k.key : undefined));
        const [a, b] = [keys(v1, r1, p1), keys(v2, r2, p2)];
        // across forms: never equal; within a form: equal only for the same inputs (the leading-slash alias aside)
        for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) if (i !== j && a[i] && b[j]) expect(a[i]).not.toBe(b[j]);
        if (a[2] && b[2] && a[2] === b[2]) expect([v1, r1]).toEqual([v2, r2]);
      }),
      { numRuns: 2000 },
    );
  });

  it('normalizes without rewriting: what it keeps is the input minus one leading slash', () => {
    fc.assert(
      fc.property(pathArbitrary, (path) => {
        const result = normalizePath(path);
        if (result.ok) expect(result.path).toBe(path.startsWith('/') ? path.slice(1) : path);
      }),
    );
  });
});
