// A node agent that adopts a running QEMU resumes the lease its predecessor held for the
// pod (ADR 0136), on a real file with short timings: it renews on under the pod's own
// identity and generation; it writes nothing, and kills QEMU, when the lease is another's,
// released or unreadable, when the pod holds no deadline, or when the predecessor's last
// renewal is F ago or more. An agent that stops writes a parting renewal (ADR 0138): a
// longer F and L in the record, the pod's deadline moved to it, nothing after; the next
// agent resumes from it past the ordinary F and renews under its own timing again.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { LeaseConfig } from '../api/config.ts';
import type { LeaseStatus } from '../api/status.ts';
import { claimRecord, partingTiming } from './decisions.ts';
import { LauncherLease, LeaseUnavailableError, podFenceAfterMs, type LeasedVm } from './launcher-lease.ts';
import { readLease, writeLease } from './lease-file.ts';
import type { LeaseRecord } from './record.ts';

const logger = pino({ level: 'silent' });
const timing = { renewIntervalMs: 100, fenceTimeoutMs: 600, acquireTimeoutMs: 900 };

interface Seen {
  kills: string[];
  leases: LeaseStatus[];
  deadlines: number[];
}

function lease(file: string, seen: Seen, agentRestartGraceMs = 0): LauncherLease {
  const config: LeaseConfig = { path: file, nodeFenced: false, ...timing, agentRestartGraceMs };
  const vm: LeasedVm = {
    phase: 'Starting',
    setPhase: () => undefined,
    setLease: (l) => seen.leases.push(l),
    killForLease: (reason) => seen.kills.push(reason),
  };
  return new LauncherLease({
    config, disksToFence: [], vm, logger,
    env: { KEYVIRT_POD_UID: 'pod-a', KEYVIRT_NODE_NAME: 'node-1' },
    podFenceDeadline: (ms) => {
      seen.deadlines.push(ms);
      return Promise.resolve();
    },
  });
}

async function withLease(record: LeaseRecord | undefined, fn: (file: string, seen: Seen) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-resume-'));
  try {
    const file = path.join(dir, 'lease');
    if (record !== undefined) await writeLease(file, record);
    await fn(file, { kills: [], leases: [], deadlines: [] });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const held = (holder: string, generation = 3): LeaseRecord => ({ ...claimRecord(holder, 'node-1', generation, timing), counter: 7 });
/** The pod's deadline as a predecessor that last renewed `agoMs` ago would have left it. */
const deadlineAfterRenewal = (agoMs: number): number => podFenceAfterMs(timing.fenceTimeoutMs) - agoMs;

void describe('lease resumed by a launcher that adopts a running QEMU', () => {
  void it("renews the pod's lease on, same holder and generation, and moves the pod's deadline", async () => {
    await withLease(held('pod-a'), async (file, seen) => {
      const l = lease(file, seen);
      await l.resume(deadlineAfterRenewal(150));
      await new Promise((r) => setTimeout(r, 450));
      const now = await readLease(file);
      assert.equal(now.kind, 'record');
      assert.equal(now.kind === 'record' && now.record.holder, 'pod-a');
      assert.equal(now.kind === 'record' && now.record.generation, 3);
      assert.ok(now.kind === 'record' && now.record.counter > 7, 'renewed');
      assert.deepEqual(seen.kills, []);
      assert.ok(seen.deadlines.length >= 2, 'the deadline moved on with the renewals');
      assert.equal(seen.leases.at(-1)?.state, 'Held');
      await l.holder?.stop();
    });
  });

  void it('writes nothing once F has passed since the last renewal', async () => {
    await withLease(held('pod-a'), async (file, seen) => {
      const l = lease(file, seen);
      // The pod's deadline (F − 1 s) passed before the holder's own (F): refused at once.
      await assert.rejects(l.resume(deadlineAfterRenewal(timing.fenceTimeoutMs + 50)), (err: Error) => err instanceof LeaseUnavailableError && /deadline passed/.test(err.message));
      await new Promise((r) => setTimeout(r, 250));
      const now = await readLease(file);
      assert.equal(now.kind === 'record' && now.record.counter, 7, 'no write after F');
    });
  });

  for (const [what, record] of [
    ['held by another pod', held('pod-b')],
    ['released', { ...held('pod-a'), state: 'released' as const }],
    ['absent', undefined],
  ] as const) {
    void it(`refuses a lease ${what}: nothing written`, async () => {
      await withLease(record, async (file, seen) => {
        const l = lease(file, seen);
        await assert.rejects(l.resume(deadlineAfterRenewal(100)), /no longer this pod's/);
        const now = await readLease(file);
        assert.deepEqual(now.kind === 'record' ? now.record : undefined, record);
        assert.deepEqual(seen.deadlines, [], "the pod's deadline is left as it was");
      });
    });
  }

  void it("refuses once the pod's own deadline has passed (its script is killing QEMU), and renews at once otherwise", async () => {
    await withLease(held('pod-a'), async (file, seen) => {
      const late = lease(file, seen);
      await assert.rejects(late.resume(-50), /deadline passed/);
      assert.equal(late.holder, undefined, 'nothing held, nothing written');
      const l = lease(file, seen);
      await l.resume(30);
      await new Promise((r) => setTimeout(r, timing.renewIntervalMs / 2));
      const now = await readLease(file);
      assert.ok(now.kind === 'record' && now.record.counter > 7, 'renewed before R: the pod\'s deadline was 30 ms away');
      await l.holder?.stop();
    });
  });

  void it('refuses when the pod holds no fence deadline', async () => {
    await withLease(held('pod-a'), async (file, seen) => {
      await assert.rejects(lease(file, seen).resume(undefined), /no fence deadline/);
      const now = await readLease(file);
      assert.equal(now.kind === 'record' && now.record.counter, 7);
    });
  });
});

const GRACE_MS = 3000;
const record = async (file: string): Promise<LeaseRecord> => {
  const obs = await readLease(file);
  assert.equal(obs.kind, 'record');
  return (obs as { record: LeaseRecord }).record;
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

void describe('the parting renewal of a node agent that stops (ADR 0138)', () => {
  void it("states the grace as F (and its L) in the record, moves the pod's deadline to it, and renews no more", async () => {
    await withLease(held('pod-a'), async (file, seen) => {
      const l = lease(file, seen, GRACE_MS);
      await l.resume(deadlineAfterRenewal(50));
      await sleep(150);
      assert.equal(await l.part(), true);
      const parted = await record(file);
      const { fenceTimeoutMs, acquireTimeoutMs } = partingTiming(timing, GRACE_MS);
      assert.deepEqual([parted.fenceTimeoutMs, parted.acquireTimeoutMs, parted.renewIntervalMs], [fenceTimeoutMs, acquireTimeoutMs, timing.renewIntervalMs]);
      assert.equal(parted.holder, 'pod-a');
      assert.equal(parted.generation, 3);
      const deadline = seen.deadlines.at(-1) ?? 0;
      assert.ok(deadline > podFenceAfterMs(GRACE_MS) - 200 && deadline <= podFenceAfterMs(GRACE_MS), `the pod's deadline ${Math.round(deadline)} ms away: F − 1 s of the grace`);
      await sleep(timing.fenceTimeoutMs + 200);
      assert.equal((await record(file)).counter, parted.counter, 'no renewal after the parting one');
      assert.deepEqual(seen.kills, [], 'not fenced at the ordinary F');
      await l.holder?.stop();
    });
  });

  void it('is resumed by the next agent past the ordinary F, which then renews under its own timing', async () => {
    await withLease(held('pod-a'), async (file, seen) => {
      const first = lease(file, seen, GRACE_MS);
      await first.resume(deadlineAfterRenewal(50));
      assert.equal(await first.part(), true);
      await first.holder?.stop();
      const left = seen.deadlines.at(-1) ?? 0;
      const partedAt = performance.now();
      await sleep(timing.fenceTimeoutMs + 300);
      const next: Seen = { kills: [], leases: [], deadlines: [] };
      const l = lease(file, next, GRACE_MS);
      await l.resume(left - (performance.now() - partedAt));
      await sleep(3 * timing.renewIntervalMs);
      const now = await record(file);
      assert.equal(now.fenceTimeoutMs, timing.fenceTimeoutMs, 'the ordinary F again');
      assert.equal(now.acquireTimeoutMs, timing.acquireTimeoutMs);
      assert.equal(now.generation, 3, 'the same lease: no takeover');
      assert.deepEqual([...seen.kills, ...next.kills], []);
      assert.ok((next.deadlines.at(-1) ?? Infinity) <= podFenceAfterMs(timing.fenceTimeoutMs), "the pod's deadline back to the ordinary F − 1 s");
      await l.holder?.stop();
    });
  });

  void it('writes nothing without a grace, or once the lease is no longer this pod\'s (QEMU then killed)', async () => {
    await withLease(held('pod-a'), async (file, seen) => {
      const none = lease(file, seen);
      await none.resume(deadlineAfterRenewal(50));
      await none.holder?.stop();
      const before = await record(file);
      assert.equal(await none.part(), false);
      assert.deepEqual(await record(file), before);
      const l = lease(file, seen, GRACE_MS);
      await l.resume(deadlineAfterRenewal(50));
      await l.holder?.stop();
      await writeLease(file, held('pod-b', 4));
      assert.equal(await l.part(), false);
      assert.equal((await record(file)).holder, 'pod-b', 'the other holder left as it is');
      assert.deepEqual(seen.kills, ['LeaseLost']);
    });
  });
});
