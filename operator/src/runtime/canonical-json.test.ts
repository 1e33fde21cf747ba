import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalJson, sameJson } from './canonical-json.ts';

void describe('sameJson', () => {
  const table: [string, unknown, unknown, boolean][] = [
    ['reordered keys', { b: 1, a: 2 }, { a: 2, b: 1 }, true],
    ['reordered nested keys', { x: { d: [{ q: 1, p: 2 }], c: 'v' } }, { x: { c: 'v', d: [{ p: 2, q: 1 }] } }, true],
    ['a different value', { a: '1' }, { a: '2' }, false],
    ['a key more', { a: '1' }, { a: '1', b: '2' }, false],
    ['a key less', { a: '1', b: '2' }, { a: '1' }, false],
    ['list order counts', [1, 2], [2, 1], false],
    ['an undefined property is absent', { a: 1, b: undefined }, { a: 1 }, true],
    ['both absent', undefined, undefined, true],
    ['absent against empty', undefined, {}, false],
    ['null against empty', null, {}, false],
    ['a string against a number', '1', 1, false],
  ];
  for (const [name, a, b, want] of table) {
    void it(name, () => {
      assert.equal(sameJson(a, b), want);
      assert.equal(sameJson(b, a), want, 'symmetric');
    });
  }

  void it('writes sorted keys', () => {
    assert.equal(canonicalJson({ b: { z: 1, y: 2 }, a: [{ d: 1, c: 2 }] }), '{"a":[{"c":2,"d":1}],"b":{"y":2,"z":1}}');
  });
});
