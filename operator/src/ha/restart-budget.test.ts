import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { budgetState, MAX_RECORDED_RESTARTS, parseRestarts, recordRestart } from './restart-budget.ts';

const budget = { maxRestarts: 3, windowMs: 600_000 };
const now = 10_000_000;

describe('restart budget', () => {
  const cases: { name: string; raw: string | undefined; exhausted: boolean; recent: number; retryAt?: number; unreadable?: boolean }[] = [
    { name: 'no annotation', raw: undefined, exhausted: false, recent: 0 },
    { name: 'empty list', raw: '[]', exhausted: false, recent: 0 },
    { name: 'two recent', raw: JSON.stringify([now - 1000, now - 2000]), exhausted: false, recent: 2 },
    { name: 'three recent: exhausted', raw: JSON.stringify([now - 3000, now - 1000, now - 2000]), exhausted: true, recent: 3, retryAt: now - 3000 + 600_000 },
    { name: 'three, one outside the window', raw: JSON.stringify([now - 700_000, now - 1000, now - 2000]), exhausted: false, recent: 2 },
    { name: 'exactly at the window edge is outside', raw: JSON.stringify([now - 600_000, now - 1, now - 2]), exhausted: false, recent: 2 },
    { name: 'four recent: retry when the second oldest leaves', raw: JSON.stringify([now - 4000, now - 3000, now - 2000, now - 1000]), exhausted: true, recent: 4, retryAt: now - 3000 + 600_000 },
    { name: 'future times still count', raw: JSON.stringify([now + 5000, now + 6000, now + 7000]), exhausted: true, recent: 3, retryAt: now + 5000 + 600_000 },
    { name: 'not JSON: counts as none, flagged', raw: 'garbage', exhausted: false, recent: 0, unreadable: true },
    { name: 'wrong shape: counts as none, flagged', raw: '{"a":1}', exhausted: false, recent: 0, unreadable: true },
    { name: 'negative numbers refused', raw: '[-1]', exhausted: false, recent: 0, unreadable: true },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const s = budgetState(c.raw, now, budget);
      assert.equal(s.exhausted, c.exhausted);
      assert.equal(s.recent.length, c.recent);
      assert.equal(s.retryAt, c.retryAt);
      assert.equal(s.unreadable, c.unreadable ?? false);
    });
  }

  it('a budget of 0 allows no restart', () => {
    assert.equal(budgetState(undefined, now, { maxRestarts: 0, windowMs: 1000 }).exhausted, true);
  });

  it('recording drops times outside the window and stays bounded', () => {
    const old = JSON.stringify([now - 900_000, now - 100]);
    assert.deepEqual(JSON.parse(recordRestart(old, now, budget)), [now - 100, now]);
    let raw: string | undefined;
    for (let i = 0; i < 100; i++) raw = recordRestart(raw, now + i, { maxRestarts: 1000, windowMs: 10_000_000 });
    const times = parseRestarts(raw).times;
    assert.equal(times.length, MAX_RECORDED_RESTARTS);
    assert.equal(times.at(-1), now + 99);
  });
});
