import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { aheadOf, restartOrder, type RestartCandidate } from './restart-order.ts';

describe('restart order (priority)', () => {
  const cases: { name: string; candidates: RestartCandidate[]; order: string[] }[] = [
    { name: 'one', candidates: [{ key: 'a', priority: 0, detectedAt: 5 }], order: ['a'] },
    {
      name: 'highest priority first',
      candidates: [
        { key: 'low', priority: 1, detectedAt: 1 },
        { key: 'high', priority: 100, detectedAt: 9 },
        { key: 'mid', priority: 50, detectedAt: 5 },
      ],
      order: ['high', 'mid', 'low'],
    },
    {
      name: 'equal priority: earliest detection first',
      candidates: [
        { key: 'b', priority: 50, detectedAt: 7 },
        { key: 'a', priority: 50, detectedAt: 3 },
      ],
      order: ['a', 'b'],
    },
    {
      name: 'all equal: by key',
      candidates: [
        { key: 'ns/z', priority: 0, detectedAt: 1 },
        { key: 'ns/a', priority: 0, detectedAt: 1 },
      ],
      order: ['ns/a', 'ns/z'],
    },
  ];
  for (const c of cases) it(c.name, () => assert.deepEqual(restartOrder(c.candidates).map((x) => x.key), c.order));

  it('aheadOf lists the candidates that go first', () => {
    const all = [
      { key: 'low', priority: 1, detectedAt: 1 },
      { key: 'high', priority: 100, detectedAt: 9 },
    ];
    assert.deepEqual(aheadOf('low', all).map((x) => x.key), ['high']);
    assert.deepEqual(aheadOf('high', all), []);
    assert.deepEqual(aheadOf('absent', all), []);
  });
});
