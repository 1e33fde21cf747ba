// The lease's decisions as tables, on a manual monotonic clock: acquire (free, released,
// held, expiry, changes restarting the wait, nodeFenced), hold checks, claim
// verification and the self-fence deadline; a record's own longer L (a parting renewal,
// ADR 0138) and the timing such a renewal states.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LeaseSchema } from '../api/config.ts';
import { checkHandover, checkHold, claimRecord, claimVerified, decideAcquire, fenceDue, handoverRecord, MAX_RECORD_ACQUIRE_TIMEOUT_MS, partingTiming } from './decisions.ts';
import type { AcquireStep, LeaseTiming, LeaseWatch } from './decisions.ts';
import { decodeLeaseBlock, encodeLeaseRecord } from './record.ts';
import type { LeaseObservation, LeaseRecord } from './record.ts';

const timing: LeaseTiming = { renewIntervalMs: 1000, fenceTimeoutMs: 5000, acquireTimeoutMs: 8000 };
const held = (holder: string, generation: number, counter: number, extra: Partial<LeaseRecord> = {}): LeaseObservation =>
  decodeLeaseBlock(encodeLeaseRecord({ ...claimRecord(holder, 'node-a', generation, timing), counter, ...extra }));
const empty: LeaseObservation = decodeLeaseBlock(Buffer.alloc(0));
const garbage: LeaseObservation = decodeLeaseBlock(Buffer.from('{"version":1,"holder":"x"'));

function run(steps: readonly [LeaseObservation, number][], nodeFenced = false): AcquireStep[] {
  let watch: LeaseWatch | undefined;
  const out: AcquireStep[] = [];
  for (const [observation, nowMs] of steps) {
    const step = decideAcquire({ observation, self: 'me', nowMs, watch, timing, nodeFenced, highestGeneration: 0 });
    if (step.action === 'wait') watch = step.watch;
    out.push(step);
  }
  return out;
}

const summary = (s: AcquireStep): string => (s.action === 'claim' ? `claim g${s.generation} ${s.why}${s.takeover ? ' takeover' : ''}` : `wait ${s.silentMs}`);

const cases: readonly { name: string; steps: [LeaseObservation, number][]; nodeFenced?: boolean; expect: string[] }[] = [
  { name: 'no file: free', steps: [[empty, 0]], expect: ['claim g1 free'] },
  { name: 'released by its holder: free, next generation', steps: [[held('old', 4, 9, { state: 'released' }), 0]], expect: ['claim g5 released'] },
  { name: 'released to me (hand-over): free', steps: [[held('old', 4, 9, { state: 'released', successor: 'me' }), 0]], expect: ['claim g5 released'] },
  {
    name: 'released to another successor: watched',
    steps: [[held('old', 4, 9, { state: 'released', successor: 'other' }), 0]],
    expect: ['wait 0'],
  },
  {
    name: 'held and renewed: never expires',
    steps: [[held('old', 2, 1), 0], [held('old', 2, 2), 7000], [held('old', 2, 3), 14_000], [held('old', 2, 4), 21_000]],
    expect: ['wait 0', 'wait 0', 'wait 0', 'wait 0'],
  },
  {
    name: 'held, silent for L: takeover',
    steps: [[held('old', 2, 7), 0], [held('old', 2, 7), 4000], [held('old', 2, 7), 7999], [held('old', 2, 7), 8000]],
    expect: ['wait 0', 'wait 4000', 'wait 7999', 'claim g3 expired takeover'],
  },
  {
    name: 'a renewal restarts the wait',
    steps: [[held('old', 2, 7), 0], [held('old', 2, 8), 7000], [held('old', 2, 8), 14_999], [held('old', 2, 8), 15_000]],
    expect: ['wait 0', 'wait 0', 'wait 7999', 'claim g3 expired takeover'],
  },
  {
    name: 'a new holder restarts the wait',
    steps: [[held('old', 2, 7), 0], [held('other', 3, 0), 7500], [held('other', 3, 0), 15_000], [held('other', 3, 0), 15_500]],
    expect: ['wait 0', 'wait 0', 'wait 7500', 'claim g4 expired takeover'],
  },
  {
    name: 'held under my own identity (a restarted launcher of the same pod): waited out like any holder',
    steps: [[held('me', 2, 7), 0], [held('me', 2, 7), 8000]],
    expect: ['wait 0', 'claim g3 expired takeover'],
  },
  {
    name: 'unreadable block: watched, expires unchanged',
    steps: [[garbage, 0], [garbage, 8000]],
    expect: ['wait 0', 'claim g1 expired takeover'],
  },
  {
    name: "a parting renewal's longer L is waited out, then the next renewal's own L again",
    steps: [[held('old', 2, 7, { fenceTimeoutMs: 30_000, acquireTimeoutMs: 33_606 }), 0], [held('old', 2, 7, { fenceTimeoutMs: 30_000, acquireTimeoutMs: 33_606 }), 33_605], [held('old', 2, 8), 33_700], [held('old', 2, 8), 41_700]],
    expect: ['wait 0', 'wait 33605', 'wait 0', 'claim g3 expired takeover'],
  },
  {
    name: "a record's shorter L is not taken: this acquirer's own",
    steps: [[held('old', 2, 7, { fenceTimeoutMs: 100, acquireTimeoutMs: 200 }), 0], [held('old', 2, 7, { fenceTimeoutMs: 100, acquireTimeoutMs: 200 }), 7999]],
    expect: ['wait 0', 'wait 7999'],
  },
  {
    name: "a record's L beyond the largest one is bounded",
    steps: [[held('old', 2, 7, { acquireTimeoutMs: 10_000_000 }), 0], [held('old', 2, 7, { acquireTimeoutMs: 10_000_000 }), MAX_RECORD_ACQUIRE_TIMEOUT_MS]],
    expect: ['wait 0', 'claim g3 expired takeover'],
  },
  { name: 'nodeFenced: no wait, still a takeover', steps: [[held('old', 2, 7), 0]], nodeFenced: true, expect: ['claim g3 nodeFenced takeover'] },
];

void describe('decideAcquire', () => {
  for (const c of cases) {
    void it(c.name, () => {
      assert.deepEqual(run(c.steps, c.nodeFenced).map(summary), c.expect);
    });
  }
  void it('never goes back in generation after an unreadable block', () => {
    const step = decideAcquire({ observation: garbage, self: 'me', nowMs: 9000, watch: { key: garbage.key, sinceMs: 0 }, timing, nodeFenced: false, highestGeneration: 41 });
    assert.equal(step.action === 'claim' ? step.generation : -1, 42);
  });
});

void describe('checkHold', () => {
  const table: readonly [string, LeaseObservation, boolean][] = [
    ['mine', held('me', 3, 5), true],
    ['another holder', held('other', 4, 0), false],
    ['my identity, another generation', held('me', 4, 0), false],
    ['released', held('me', 3, 6, { state: 'released' }), false],
    ['empty', empty, false],
    ['unreadable', garbage, false],
  ];
  for (const [name, obs, holds] of table) void it(name, () => assert.equal(checkHold(obs, 'me', 3).holds, holds));
});

void describe('claimVerified', () => {
  const table: readonly [string, LeaseObservation, number, boolean][] = [
    ['read back mine, quick write', held('me', 3, 0), 20, true],
    ['read back mine, write slower than R', held('me', 3, 0), 1000, false],
    ['another claimant won', held('other', 3, 0), 20, false],
    ['the old holder renewed over the claim', held('old', 2, 8), 20, false],
  ];
  for (const [name, obs, took, ok] of table) void it(name, () => assert.equal(claimVerified(obs, 'me', 3, took, timing), ok));
});

void describe('fenceDue', () => {
  const table: readonly [nowMs: number, lastStartMs: number, due: boolean][] = [
    [4999, 0, false],
    [5000, 0, true],
    [105_000, 100_000, true],
    [104_999.9, 100_000, false],
  ];
  for (const [now, last, due] of table) void it(`now ${now}, last renewal started ${last}: ${due ? 'fence' : 'hold'}`, () => assert.equal(fenceDue(now, last, timing.fenceTimeoutMs), due));
});

void describe('hand-over', () => {
  const source = claimRecord('src', 'node-a', 5, timing);
  const next = handoverRecord({ ...source, counter: 17 }, 'dst', 'node-b');
  void it('names the target, next generation, counter 0, successor', () => {
    assert.deepEqual([next.holder, next.generation, next.counter, next.state, next.successor, next.node], ['dst', 6, 0, 'held', 'dst', 'node-b']);
  });
  const table: readonly [string, LeaseObservation, string][] = [
    ['still the source', held('src', 5, 30), 'wait'],
    ['handed to me', decodeLeaseBlock(encodeLeaseRecord(next)), 'mine'],
    ['taken over by a replacement', held('other', 6, 0), 'lost'],
    ['released by the source', held('src', 5, 31, { state: 'released' }), 'lost'],
    ['emptied', empty, 'lost'],
  ];
  for (const [name, obs, outcome] of table) void it(name, () => assert.equal(checkHandover(obs, 'dst', 'src', 5).outcome, outcome));
});

void describe('partingTiming', () => {
  for (const [name, base, fenceMs] of [
    ['default lease, 30 s grace', timing, 30_000],
    ['default lease, the largest grace', timing, 300_000],
    ['short lease, grace equal to F', { renewIntervalMs: 100, fenceTimeoutMs: 600, acquireTimeoutMs: 1700 }, 600],
  ] as const) {
    void it(`${name}: keeps the rule every lease obeys (L/(1+ρ) > F/(1−ρ) + K), R unchanged`, () => {
      const parted = partingTiming(base, fenceMs);
      assert.equal(parted.fenceTimeoutMs, fenceMs);
      assert.equal(parted.renewIntervalMs, base.renewIntervalMs);
      assert.equal(LeaseSchema.safeParse({ path: '/l', ...parted }).success, true, JSON.stringify(parted));
      assert.ok(parted.acquireTimeoutMs - fenceMs >= base.acquireTimeoutMs - base.fenceTimeoutMs, 'the margin of the holder\'s own timing at least');
    });
  }
});
