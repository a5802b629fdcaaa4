import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeSnapshot, encodeSnapshot } from '../src/snapshot.ts';
import { DataError } from '../src/errors.ts';

describe('snapshot encoding', () => {
  it('property: decode(encode(map)) round-trips any file map', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'grapheme' })), (object) => {
        const map = new Map(Object.entries(object));
        const decoded = decodeSnapshot(encodeSnapshot(map));
        expect(decoded).toEqual(map);
      }),
    );
  });

  it('round-trips paths that are Object prototype names', () => {
    const map = new Map([['__proto__', 'x'], ['constructor', 'y'], ['toString', 'z']]);
    expect(decodeSnapshot(encodeSnapshot(map))).toEqual(map);
  });

  it('accepts entries that carry their content in an object', () => {
    expect(decodeSnapshot('{"a.js": {"content": "x", "file_type": "js"}}')).toEqual(new Map([['a.js', 'x']]));
  });

  it('accepts the array form', () => {
    expect(decodeSnapshot('[{"path":"a.js","content":"x"}]')).toEqual(new Map([['a.js', 'x']]));
  });

  it.each([
    ['truncated', '{"a.js": "hel'],
    ['not JSON', 'hello'],
    ['a number', '42'],
    ['null', 'null'],
    ['non-string content', '{"a.js": 1}'],
    ['bad array entry', '[{"path": 1}]'],
    ['duplicate array path', '[{"path":"a","content":"x"},{"path":"a","content":"y"}]'],
  ])('refuses %s with a DataError', (_label, json) => {
    expect(() => decodeSnapshot(json)).toThrow(DataError);
  });
});
