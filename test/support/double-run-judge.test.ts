import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DoubleRunJudge, type QemuSample, type Sample } from './double-run-judge.ts';
import { dyingFromStatus, freezerPath, namesGuest, nodeOfFreezerPath, ringMaxCounters } from './double-run-sampler.ts';

const q = (pid: number, node: string, extra: Partial<QemuSample> = {}): QemuSample => ({ pid, node, frozen: false, dying: false, ...extra });
const disk = (counters: Record<string, number>): Sample['disk'] => ({ maxCounter: new Map(Object.entries(counters)) });

function judge(samples: readonly Omit<Sample, 'atMs'>[], killLatencyMs = 1000, stepMs = 50): ReturnType<DoubleRunJudge['report']> {
  const j = new DoubleRunJudge(killLatencyMs);
  samples.forEach((s, i) => j.add({ atMs: 1_000_000 + i * stepMs, ...s }));
  return j.report();
}

void describe('DoubleRunJudge: QEMU overlap', () => {
  void it('one QEMU at a time, handed over, is fine', () => {
    const r = judge([{ qemus: [q(1, 'a')], disk: undefined }, { qemus: [], disk: undefined }, { qemus: [q(2, 'b')], disk: undefined }]);
    assert.deepEqual(r.violations, []);
    assert.deepEqual(r.overlaps, []);
  });
  void it('a frozen or dying second QEMU is no double run', () => {
    const r = judge(Array.from({ length: 40 }, () => ({ qemus: [q(1, 'a', { frozen: true }), q(2, 'b'), q(3, 'c', { dying: true })], disk: undefined })));
    assert.deepEqual(r.violations, []);
  });
  void it('two runnable QEMUs for less than the kill latency are recorded, not failed', () => {
    const both = { qemus: [q(1, 'a'), q(2, 'b')], disk: undefined };
    const r = judge([both, both, both, { qemus: [q(2, 'b')], disk: undefined }]);
    assert.deepEqual(r.violations, []);
    assert.equal(r.overlaps.length, 1);
    assert.equal(r.overlaps[0]?.durationMs, 150);
    assert.deepEqual(r.overlaps[0]?.nodes, ['a', 'b']);
  });
  void it('two runnable QEMUs beyond the kill latency fail, with the window', () => {
    const both = { qemus: [q(1, 'a'), q(2, 'b')], disk: undefined };
    const r = judge([...Array.from({ length: 30 }, () => both), { qemus: [q(2, 'b')], disk: undefined }]);
    assert.equal(r.violations.length, 1);
    assert.match(r.violations[0] ?? '', /two runnable QEMUs \(pids 1, 2 on a, b\) for 1500 ms/);
  });
  void it('a window still open at the end counts', () => {
    const both = { qemus: [q(1, 'a'), q(2, 'b')], disk: undefined };
    const r = judge(Array.from({ length: 30 }, () => both));
    assert.match(r.violations[0] ?? '', /\(still\)/);
  });
});

void describe('DoubleRunJudge: record stream', () => {
  const none: readonly QemuSample[] = [];
  const cases: readonly { name: string; disks: readonly Record<string, number>[]; interleaved: boolean; bootIds: readonly string[] }[] = [
    { name: 'one boot writing on', disks: [{}, { a: 1 }, { a: 2 }, { a: 3 }], interleaved: false, bootIds: ['a'] },
    { name: 'a restart: the old boot stops, the new one writes over it', disks: [{ a: 5 }, { a: 6 }, { a: 6, b: 1 }, { a: 6, b: 2 }, { b: 9 }], interleaved: false, bootIds: ['a', 'b'] },
    { name: 'old and new in the same sample (order unknown), then only the new', disks: [{ a: 5 }, { a: 6, b: 1 }, { a: 6, b: 2 }], interleaved: false, bootIds: ['a', 'b'] },
    { name: 'the old boot writes again after the new one', disks: [{ a: 5 }, { a: 6 }, { a: 6, b: 1 }, { a: 7, b: 2 }], interleaved: true, bootIds: ['a', 'b'] },
    { name: 'records present before watching are nobody\'s writes', disks: [{ a: 5, b: 3 }, { a: 5, b: 4 }], interleaved: false, bootIds: ['b'] },
  ];
  for (const c of cases) {
    void it(c.name, () => {
      const r = judge(c.disks.map((d) => ({ qemus: none, disk: disk(d) })));
      assert.equal(r.interleavings.length > 0, c.interleaved, JSON.stringify(r.interleavings));
      assert.equal(r.violations.length > 0, c.interleaved);
      assert.deepEqual(r.bootIds, c.bootIds);
    });
  }
  void it('names the stale and the newer boot', () => {
    const disks: readonly Record<string, number>[] = [{ a: 1 }, { a: 2 }, { a: 2, b: 1 }, { a: 3, b: 2 }];
    const r = judge(disks.map((d) => ({ qemus: none, disk: disk(d) })));
    assert.match(r.violations[0] ?? '', /boot a wrote record n=3 .* after boot b had written/);
  });
  void it('counts unreadable disk samples', () => {
    assert.equal(judge([{ qemus: none, disk: undefined }, { qemus: none, disk: disk({}) }]).diskReadFailures, 1);
  });
});

void describe('double-run sampler parsing', () => {
  void it('matches the guest name exactly', () => {
    assert.equal(namesGuest(['qemu', '-name', 'guest=ns_vm,debug-threads=on'], 'ns_vm'), true);
    assert.equal(namesGuest(['qemu', '-name', 'guest=ns_vm'], 'ns_vm'), true);
    assert.equal(namesGuest(['qemu', '-name', 'guest=ns_vm2,debug-threads=on'], 'ns_vm'), false);
    assert.equal(namesGuest(['qemu', '-S'], 'ns_vm'), false);
  });
  void it('finds the freezer group and its node', () => {
    const text = '12:memory:/keyvirt/n1/uid/launcher\n7:freezer:/keyvirt/n1\n1:name=systemd:/\n';
    assert.equal(freezerPath(text), '/keyvirt/n1');
    assert.equal(nodeOfFreezerPath('/keyvirt/n1'), 'n1');
    assert.equal(nodeOfFreezerPath('/user.slice'), undefined);
  });
  void it('sees a pending SIGKILL or a zombie as dying', () => {
    assert.equal(dyingFromStatus('State:\tS (sleeping)\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000100\n'), true);
    assert.equal(dyingFromStatus('State:\tD (disk sleep)\nSigPnd:\t0000000000000100\nShdPnd:\t0000000000000000\n'), true);
    assert.equal(dyingFromStatus('State:\tZ (zombie)\nSigPnd:\t0\nShdPnd:\t0\n'), true);
    assert.equal(dyingFromStatus('State:\tS (sleeping)\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000004000\n'), false);
  });
  void it('reads the highest counter per boot id from a ring', () => {
    const ring = Buffer.alloc(512 * 4);
    ring.write('KV boot=aaaaaaaaaaaaaaaa n=1 t=10\n', 0, 'latin1');
    ring.write('KV boot=aaaaaaaaaaaaaaaa n=2 t=210\n', 512, 'latin1');
    ring.write('KV boot=bbbbbbbbbbbbbbbb n=7 t=10\n', 1024, 'latin1');
    ring.write('KV boot=cccc', 1536, 'latin1'); // torn: no newline
    assert.deepEqual([...ringMaxCounters(ring)], [['aaaaaaaaaaaaaaaa', 2], ['bbbbbbbbbbbbbbbb', 7]]);
  });
});
