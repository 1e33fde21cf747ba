import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_METRIC_VALUE, VM_METRICS_LIMITS, VmMetricsSchema } from '../api/vm-metrics.ts';
import { balloonGuestMemory, clampCount, clampName, diskMetrics, filesystemMetrics, interfaceMetrics, migrationMetrics } from './qmp-readings.ts';
import { smapsGuestRamRss, statCpuSeconds, statusRssBytes } from './proc-readings.ts';

void describe('metrics readings', () => {
  void it('clamps counts: NaN, negatives, infinities and absent become 0; huge values the cap', () => {
    const cases: [number | undefined, number][] = [
      [undefined, 0],
      [Number.NaN, 0],
      [-5, 0],
      [Number.POSITIVE_INFINITY, 0],
      [12.7, 12],
      [2 ** 60, MAX_METRIC_VALUE],
    ];
    for (const [input, want] of cases) assert.equal(clampCount(input), want, String(input));
    assert.equal(clampCount(900, 512), 512);
  });

  void it('cuts names and drops control characters', () => {
    assert.equal(clampName('eth0\n{x="1"}'), 'eth0{x="1"}');
    assert.equal(clampName('a'.repeat(500)).length, VM_METRICS_LIMITS.nameLength);
  });

  void it('names block counters by template disk and skips other nodes', () => {
    const stats = { rd_bytes: 4096, wr_bytes: 8192, rd_operations: 2, wr_operations: 3, flush_operations: 1, rd_total_time_ns: 2e9, wr_total_time_ns: 5e8 };
    const got = diskMetrics([
      { 'node-name': 'disk-root', qdev: '/machine/peripheral/ua-root/virtio-backend', stats },
      { 'node-name': 'cloudinit', stats },
      { qdev: '/machine/peripheral/ua-data/virtio-backend', stats: { ...stats, rd_bytes: -1 } },
      { 'node-name': '#block123', stats },
    ]);
    assert.deepEqual(got.map((d) => d.name), ['root', 'cloudinit', 'data']);
    assert.deepEqual(got[0], { name: 'root', readBytes: 4096, writeBytes: 8192, readOps: 2, writeOps: 3, flushOps: 1, readTimeSeconds: 2, writeTimeSeconds: 0.5 });
    assert.equal(got[2]?.readBytes, 0);
  });

  void it('names the guest interfaces by MAC and ignores unknown MACs, duplicates and floods', () => {
    const s = { 'rx-bytes': 100, 'rx-packets': 2, 'rx-errs': 0, 'rx-dropped': 0, 'tx-bytes': 50, 'tx-packets': 1, 'tx-errs': 0, 'tx-dropped': -3 };
    const flood = Array.from({ length: 1000 }, (_, i) => ({ name: `x${i}`, 'hardware-address': '52:54:00:00:00:01', statistics: s }));
    const got = interfaceMetrics(
      [
        { name: 'lo', 'hardware-address': '00:00:00:00:00:00', statistics: s },
        { name: 'eth0', 'hardware-address': '52:54:00:4B:56:01', statistics: { ...s, 'rx-bytes': 1e300 } },
        ...flood,
      ],
      [{ name: 'default', macAddress: '52:54:00:4b:56:01' }, { name: 'second', macAddress: '52:54:00:00:00:01' }],
    );
    assert.deepEqual(got.map((i) => i.name), ['default', 'second']);
    assert.equal(got[0]?.receiveBytes, MAX_METRIC_VALUE);
    assert.equal(got[0]?.transmitDropped, 0);
  });

  void it('bounds guest file systems: used ≤ total ≤ the cap, at most the limit', () => {
    const many = Array.from({ length: 100 }, (_, i) => ({ mountpoint: `/m${i}`, type: 'ext4', 'used-bytes': 10, 'total-bytes': 100 }));
    const got = filesystemMetrics([{ mountpoint: '/', type: 'ext4', 'used-bytes': 5e18, 'total-bytes': 4e18 }, { mountpoint: '/nosize', type: 'proc' }, ...many], 2 ** 50);
    assert.equal(got.length, VM_METRICS_LIMITS.filesystems);
    assert.deepEqual(got[0], { mountpoint: '/', type: 'ext4', totalBytes: 2 ** 50, usedBytes: 2 ** 50 });
  });

  void it('takes balloon statistics only where reported, clamped to the guest RAM', () => {
    assert.deepEqual(balloonGuestMemory({ stats: { 'stat-available-memory': 1e15, 'stat-free-memory': -1 } }, 1024), { guestAvailableBytes: 1024 });
  });

  void it('reads migration progress and omits it before any migration', () => {
    assert.equal(migrationMetrics({ status: 'none' }), undefined);
    assert.equal(migrationMetrics({}), undefined);
    assert.deepEqual(migrationMetrics({ status: 'active', ram: { transferred: 10, remaining: 20, total: 30, 'dirty-pages-rate': 5, 'page-size': 4096, 'dirty-sync-count': 2 } }), {
      status: 'active',
      transferredBytes: 10,
      remainingBytes: 20,
      totalBytes: 30,
      dirtyRateBytesPerSecond: 20480,
      iterations: 2,
    });
  });

  void it('parses /proc stat, status and smaps', () => {
    assert.equal(statCpuSeconds('123 (qemu (x) y) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0'), 4);
    assert.equal(statusRssBytes('Name:\tqemu\nVmRSS:\t  2048 kB\n'), 2 * 1024 * 1024);
    const smaps = [
      '7f0000000000-7f0010000000 rw-p 00000000 00:00 0',
      'Size:             262144 kB',
      'Rss:               51200 kB',
      '7f0010000000-7f0010001000 rw-p 00000000 00:00 0',
      'Rss:                   4 kB',
    ].join('\n');
    assert.equal(smapsGuestRamRss(smaps, 256 * 1024 * 1024), 50 * 1024 * 1024);
    assert.equal(smapsGuestRamRss(smaps, 512 * 1024 * 1024), undefined);
  });

  void it('accepts what it produces and refuses out-of-bounds answers at the schema', () => {
    const base = { vm: { namespace: 'ns', name: 'vm', uid: 'u' }, phase: 'Running', collectedAt: new Date(0).toISOString(), vcpus: [], memory: { guestBytes: 1, launcherResidentBytes: 1 }, disks: [], interfaces: [], filesystems: [] };
    assert.equal(VmMetricsSchema.safeParse(base).success, true);
    assert.equal(VmMetricsSchema.safeParse({ ...base, vcpus: [{ index: 0, seconds: -1 }] }).success, false);
    assert.equal(VmMetricsSchema.safeParse({ ...base, filesystems: Array.from({ length: 17 }, () => ({ mountpoint: '/', type: 'x', usedBytes: 0, totalBytes: 0 })) }).success, false);
  });
});
