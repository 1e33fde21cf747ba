import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { freshestStatus, guardedStatusPatch, resourceVersionOf, sameStatus } from './status-patch.ts';

const same = (a: string | undefined, b: string | undefined): boolean => a === b;

void describe('status-patch', () => {
  void it('replaces the status and names the resourceVersion as a precondition', () => {
    assert.deepEqual(guardedStatusPatch({ phase: 'Running' }, '42'), [
      { op: 'add', path: '/status', value: { phase: 'Running' } },
      { op: 'replace', path: '/metadata/resourceVersion', value: '42' },
    ]);
    assert.deepEqual(guardedStatusPatch({}, undefined), [{ op: 'add', path: '/status', value: {} }]);
  });

  const cases: { name: string; cached: [string | undefined, string | undefined]; written?: [string, string | undefined]; want: [string | undefined, string | undefined, boolean] }[] = [
    { name: 'nothing written: the cache', cached: ['a', '5'], want: ['a', '5', false] },
    { name: 'written, cache behind: the write and its answer\'s version', cached: ['a', '5'], written: ['b', '6'], want: ['b', '6', true] },
    { name: 'written, cache shows it: the cache', cached: ['b', '7'], written: ['b', '6'], want: ['b', '7', false] },
    { name: 'written without an answered version: the cache\'s version', cached: ['a', '5'], written: ['b', undefined], want: ['b', '5', true] },
  ];
  for (const c of cases) {
    void it(`freshest: ${c.name}`, () => {
      const fresh = freshestStatus(
        { status: c.cached[0], resourceVersion: c.cached[1] },
        c.written === undefined ? undefined : { status: c.written[0], resourceVersion: c.written[1] },
        same,
      );
      assert.deepEqual([fresh.status, fresh.resourceVersion, fresh.written !== undefined], c.want);
    });
  }

  void it('reads the resourceVersion of an answer, or nothing', () => {
    assert.equal(resourceVersionOf({ metadata: { resourceVersion: '9' } }), '9');
    assert.equal(resourceVersionOf(undefined), undefined);
  });

  void it('compares statuses whatever the order of their keys, arrays in order', () => {
    assert.ok(sameStatus({ phase: 'Active', capacity: { used: 1, free: 2 } }, { capacity: { free: 2, used: 1 }, phase: 'Active' }));
    assert.ok(sameStatus(undefined, {}));
    assert.ok(!sameStatus({ phase: 'Active' }, { phase: 'Maintenance' }));
    assert.ok(!sameStatus({ conditions: [{ type: 'A' }, { type: 'B' }] }, { conditions: [{ type: 'B' }, { type: 'A' }] }), 'list order counts');
  });
});
