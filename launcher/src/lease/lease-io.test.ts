// The lease on real files with short timings: a holder renews and a second claimant
// waits; a holder that stops renewing is taken over after L; a holder whose reads show
// another holder or whose file vanished fences LeaseLost; one whose lease I/O fails or
// hangs fences LeaseExpired within F; release; the takeover disk fence moves a disk to a new inode under an old
// descriptor, and refuses a disk that is a link.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import type { LeaseStatus } from '../api/status.ts';
import { acquireLease } from './acquirer.ts';
import type { LeaseTiming } from './decisions.ts';
import { fenceDisk } from './disk-fence.ts';
import { LeaseHolder } from './holder.ts';
import type { FenceReason } from './holder.ts';
import { readLease, writeLease } from './lease-file.ts';

const run = promisify(execFile);
const logger = pino({ level: 'silent' });
const timing: LeaseTiming = { renewIntervalMs: 100, fenceTimeoutMs: 500, acquireTimeoutMs: 800 };

/** A monotonic clock that stands still: the lease's decisions no longer depend on how fast this machine runs the test. */
const frozen = (): number => 1_000;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-lease-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function hold(file: string, self: string, onFence: (reason: FenceReason) => void = () => undefined, now?: () => number): Promise<LeaseHolder> {
  const acquired = await acquireLease({ file, self, node: 'n', timing, nodeFenced: false, logger, onStatus: () => undefined, ...(now === undefined ? {} : { now }) });
  const holder = new LeaseHolder({ file, self, node: 'n', acquired: acquired.record, acquiredAtMs: acquired.claimedAtMs, timing, logger, onFence: (r) => onFence(r), ...(now === undefined ? {} : { now }) });
  holder.start();
  return holder;
}

/**
 * Breaks a renewing holder's lease I/O (atomically, see below) and checks it fences
 * LeaseExpired F after the start of its last renewal that succeeded — never sooner, and
 * no later than one fence check (100 ms) and 50 ms of timer lateness after. That start is
 * the holder's own (monotonic, the clock the test reads too), not one guessed from the
 * fault: renewals start R after the previous one ended, so on a busy machine the last
 * one may have started well over R before the fault.
 */
async function faultedHolder(dir: string, file: string, fault: 'fails' | 'hangs'): Promise<void> {
  const fences: { reason: FenceReason; at: number; lastRenewalStart: number }[] = [];
  const holder: LeaseHolder = await hold(file, 'first', (reason) => fences.push({ reason, at: performance.now(), lastRenewalStart: holder.lastRenewalStartMs }));
  await new Promise((r) => setTimeout(r, 300));
  const renewalsBefore = holder.renewals;
  // Replaced atomically: a missing file would read as an empty lease (LeaseLost).
  const replacement = path.join(dir, 'replacement');
  if (fault === 'fails') {
    await mkdir(path.join(dir, 'a-directory'));
    await symlink(path.join(dir, 'a-directory'), replacement);
  } else {
    await run('mkfifo', [replacement]);
  }
  await rename(replacement, file);
  const brokenAt = performance.now();
  while (fences.length === 0 && performance.now() - brokenAt < 3000) await new Promise((r) => setTimeout(r, 10));
  assert.ok(renewalsBefore >= 1);
  const fence = fences[0];
  assert.ok(fence !== undefined, 'no fence within 3 s of the fault');
  assert.equal(fence.reason, 'LeaseExpired');
  assert.ok(fence.lastRenewalStart <= brokenAt, 'no renewal that started after the fault succeeded');
  const sinceRenewal = fence.at - fence.lastRenewalStart;
  assert.ok(sinceRenewal >= timing.fenceTimeoutMs, `fenced ${Math.round(sinceRenewal)} ms after the last renewal's start: too early`);
  assert.ok(sinceRenewal <= timing.fenceTimeoutMs + 150, `fenced ${Math.round(sinceRenewal)} ms after the last renewal's start`);
}

void describe('lease on a real file', () => {
  void it('a free lease is acquired without takeover; a second claimant waits while it is renewed, then takes over after L once renewals stop', async (t) => {
    await withDir(async (dir) => {
      const file = path.join(dir, 'lease');
      const first = await hold(file, 'first');
      const statuses: LeaseStatus[] = [];
      const abort = new AbortController();
      const second = acquireLease({ file, self: 'second', node: 'n', timing, nodeFenced: false, logger, onStatus: (s) => statuses.push(s), signal: abort.signal });
      const outcome = await Promise.race([second.then(() => 'acquired'), new Promise((r) => setTimeout(r, 2000, 'waiting'))]);
      if (outcome === 'acquired') {
        // Both sides run in this process: a machine that froze it for more than L (800 ms)
        // stopped the renewals too, and the second rightly took a lease silent for L. The
        // contract then is that the holder had given it up first, F after its last renewal.
        t.diagnostic(`this process stalled past L: the holder fenced (${first.fenced?.message ?? 'not fenced'}), the second took over`);
        assert.equal(first.fenced?.reason, 'LeaseExpired', 'the lease was taken from a holder that had not fenced itself');
        return;
      }
      assert.equal(outcome, 'waiting', 'a renewed lease is never taken');
      // The holder kept renewing: it never fenced itself. (How many renewals fit in 2 s
      // depends on how busy the machine is, not on the lease.)
      assert.equal(first.fenced, undefined, `the holder fenced after ${first.renewals} renewals`);
      assert.ok(first.renewals >= 1);
      const stoppedAt = performance.now();
      await first.stop();
      const got = await second;
      const waited = performance.now() - stoppedAt;
      assert.equal(got.takeover, true);
      // Above the holder's: 2 unless a claim of the second was dropped as too slow (a loaded machine), which raises it.
      assert.ok(got.record.generation >= 2, `generation ${got.record.generation}`);
      assert.ok(waited >= timing.acquireTimeoutMs, `took over after ${Math.round(waited)} ms`);
      // It took over at its first read that found the holder silent for L: no wait ever
      // reported a silence of L or more (wall time after that point is the machine's).
      assert.ok(
        statuses.every((s) => s.state !== 'WaitingForExpiry' || (s.holderSilentMs ?? 0) < timing.acquireTimeoutMs),
        `waited on a holder silent for ${Math.max(...statuses.map((s) => (s.state === 'WaitingForExpiry' ? (s.holderSilentMs ?? 0) : 0)))} ms`,
      );
      const obs = await readLease(file);
      assert.equal(obs.kind === 'record' ? obs.record.holder : '', 'second');
    });
  });

  // Here and in the next test the monotonic clock stands still (`frozen`): what is checked
  // is what a read shows the holder, and a machine that stalls this process for F would
  // otherwise have the holder fence LeaseExpired first, rightly.
  void it('a holder that reads another holder fences LeaseLost at its next renewal', async () => {
    await withDir(async (dir) => {
      const file = path.join(dir, 'lease');
      const fences: FenceReason[] = [];
      const holder = await hold(file, 'first', (r) => fences.push(r), frozen);
      const renewalsBefore = holder.renewals;
      await writeLease(file, { version: 1, holder: 'intruder', node: 'x', generation: 9, counter: 0, state: 'held', ...timing });
      const t0 = performance.now();
      while (fences.length === 0 && performance.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(fences, ['LeaseLost']);
      assert.ok(holder.renewals <= renewalsBefore + 1, 'fenced at the first renewal that read the intruder (one in flight may have completed)');
      await new Promise((r) => setTimeout(r, 300));
      const obs = await readLease(file);
      assert.equal(obs.kind === 'record' ? obs.record.holder : '', 'intruder', 'a fenced holder never writes again');
      assert.equal(holder.fenced?.reason, 'LeaseLost');
    });
  });

  void it('a vanished lease file is LeaseLost', async () => {
    await withDir(async (dir) => {
      const file = path.join(dir, 'lease');
      const fences: FenceReason[] = [];
      await hold(file, 'first', (r) => fences.push(r), frozen);
      await rm(file);
      const t0 = performance.now();
      while (fences.length === 0 && performance.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(fences, ['LeaseLost']);
    });
  });

  // Lease I/O that fails (the path now leads to a directory: EISDIR) or hangs (a FIFO: open
  // blocks on the threadpool until a writer shows up) must end in LeaseExpired within F
  // of the start of the last renewal that succeeded: the fence timer does not wait for I/O.
  for (const fault of ['fails', 'hangs'] as const) {
    void it(`a holder whose lease I/O ${fault} fences LeaseExpired within F`, async () => {
      await withDir(async (dir) => {
        const file = path.join(dir, 'lease');
        try {
          await faultedHolder(dir, file, fault);
        } finally {
          // Unblock a threadpool thread stuck in open() on the FIFO (a renewal's read waits
          // for a writer, its write for a reader), whatever the outcome: the test process
          // could not exit otherwise.
          const reader = await open(file, constants.O_RDONLY | constants.O_NONBLOCK).catch(() => undefined);
          const writer = await open(file, constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined);
          await new Promise((r) => setTimeout(r, 50));
          await writer?.close();
          await reader?.close();
        }
      });
    });
  }

  // The monotonic clock stands still here: the protocol drops a claim decided on a read
  // older than R and a holder cannot release F after its last renewal, and a loaded
  // machine that stalls this process for R (100 ms) would rightly take those paths. What
  // is checked is what a release leads to, on the real file.
  void it('release lets the next claimant in at once, without a takeover', async () => {
    await withDir(async (dir) => {
      const file = path.join(dir, 'lease');
      const now = frozen;
      const first = await hold(file, 'first', () => undefined, now);
      assert.equal(await first.release(), true);
      const statuses: LeaseStatus[] = [];
      const next = await acquireLease({ file, self: 'next', node: 'n', timing, nodeFenced: false, logger, onStatus: (st) => statuses.push(st), now });
      assert.equal(next.takeover, false);
      assert.equal(next.record.generation, 2);
      assert.deepEqual(statuses.filter((st) => st.state !== 'Acquiring'), [], 'it never waited for the released lease to expire');
    });
  });

  void it('a hand-over names the target; the old holder cannot renew or release after it', async () => {
    await withDir(async (dir) => {
      const file = path.join(dir, 'lease');
      const fences: FenceReason[] = [];
      const source = await hold(file, 'src', (r) => fences.push(r));
      const next = await source.handOver('dst', 'node-b');
      const obs = await readLease(file);
      assert.deepEqual(obs.kind === 'record' ? [obs.record.holder, obs.record.generation, obs.record.successor] : [], ['dst', next.generation, 'dst']);
      await new Promise((r) => setTimeout(r, timing.fenceTimeoutMs + 200));
      assert.deepEqual(fences, [], 'no fence after a hand-over (QEMU already stopped)');
      assert.equal(await source.release(), false);
    });
  });
});

void describe('holder on a manual monotonic clock', () => {
  void it('fences LeaseExpired once its clock passes F after the last renewal start, though the file is healthy', async () => {
    await withDir(async (dir) => {
      const file = path.join(dir, 'lease');
      let clock = 1000;
      const acquired = await acquireLease({ file, self: 'me', node: 'n', timing, nodeFenced: false, logger, onStatus: () => undefined, now: () => clock });
      const fences: FenceReason[] = [];
      const holder = new LeaseHolder({
        file,
        self: 'me',
        node: 'n',
        acquired: acquired.record,
        acquiredAtMs: acquired.claimedAtMs,
        timing,
        logger,
        onFence: (r) => fences.push(r),
        now: () => clock,
      });
      holder.start();
      await new Promise((r) => setTimeout(r, 350));
      assert.deepEqual(fences, []);
      assert.ok(holder.renewals >= 2);
      // Every renewal so far started at the reading 1000: F later on this clock, the holder fences.
      clock += timing.fenceTimeoutMs;
      const t0 = performance.now();
      while (fences.length === 0 && performance.now() - t0 < 1000) await new Promise((r) => setTimeout(r, 5));
      assert.deepEqual(fences, ['LeaseExpired']);
      assert.ok(performance.now() - t0 < 150, 'the 100 ms fence timer acts without waiting for I/O');
    });
  });
});

void describe('takeover disk fence', () => {
  void it('moves the disk to a new inode: an old descriptor writes only to the orphan', async () => {
    await withDir(async (dir) => {
      const disk = path.join(dir, 'disk.raw');
      await writeFile(disk, Buffer.alloc(1 << 20, 0x61));
      const old = await open(disk, 'r+');
      const before = await stat(disk);
      await fenceDisk(disk, logger);
      const after = await stat(disk);
      assert.notEqual(after.ino, before.ino);
      assert.equal(after.size, before.size);
      await old.write(Buffer.from('OLD QEMU WROTE THIS'), 0, 19, 0);
      await old.close();
      const content = await readFile(disk);
      assert.equal(content.subarray(0, 19).toString(), 'a'.repeat(19));
      assert.deepEqual((await readdir(dir)).sort(), ['disk.raw']);
    });
  });

  void it('refuses a disk that is a link (a directory a node agent reaches through the pod, ADR 0136): nothing is copied', async () => {
    await withDir(async (dir) => {
      const secret = path.join(dir, 'not-the-disk');
      await writeFile(secret, 'the node\'s file');
      await symlink(secret, path.join(dir, 'disk.raw'));
      await assert.rejects(fenceDisk(path.join(dir, 'disk.raw'), logger), /could not fence disk .*not a regular file/);
      assert.deepEqual((await readdir(dir)).sort(), ['disk.raw', 'not-the-disk']);
      assert.equal(await readFile(secret, 'utf8'), 'the node\'s file');
    });
  });
});
