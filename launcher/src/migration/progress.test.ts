import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { eventTimeMicros, listeningPort, QueryMigrateSchema, toProgress } from './progress.ts';
import { sampleClientTls } from './tls-sample-credentials.ts';
import {
  guestPauseMs,
  MigrationPolicySchema,
  StartMigrationRequestSchema,
} from '../api/migration.ts';

// An answer QEMU 7.2 gave during the second pass of a 256 MiB guest.
const active = {
  'expected-downtime': 300,
  status: 'active',
  'setup-time': 2,
  'total-time': 412,
  'cpu-throttle-percentage': 20,
  ram: {
    total: 268_763_136,
    'postcopy-requests': 0,
    'dirty-sync-count': 2,
    'multifd-bytes': 0,
    'pages-per-second': 31_000,
    'downtime-bytes': 0,
    'page-size': 4096,
    remaining: 12_582_912,
    'postcopy-bytes': 0,
    mbps: 953.2,
    transferred: 95_000_000,
    'dirty-pages-rate': 2560,
    'precopy-bytes': 95_000_000,
    duplicate: 40_000,
    normal: 23_000,
    'normal-bytes': 94_208_000,
  },
};

void describe('toProgress', () => {
  void it('maps query-migrate into progress with byte rates', () => {
    const info = QueryMigrateSchema.parse(active);
    const p = toProgress(info, {
      migrationId: 'm1',
      phase: 'Running',
      elapsedMs: 412.4,
      downtimeLimitMs: 150,
      postCopy: false,
    });
    assert.deepEqual(p, {
      migrationId: 'm1',
      phase: 'Running',
      qemuStatus: 'active',
      elapsedMs: 412,
      iteration: 2,
      transferredBytes: 95_000_000,
      remainingBytes: 12_582_912,
      totalBytes: 268_763_136,
      dirtyRateBytesPerSecond: 2560 * 4096,
      throughputBytesPerSecond: 119_150_000,
      downtimeLimitMs: 150,
      cpuThrottlePercent: 20,
      postCopy: false,
    });
  });

  void it('reports post-copy from the QEMU state and zeros before RAM stats exist', () => {
    const p = toProgress(QueryMigrateSchema.parse({ status: 'postcopy-active' }), {
      migrationId: 'm2',
      phase: 'Running',
      elapsedMs: 0,
      downtimeLimitMs: 100,
      postCopy: false,
    });
    assert.equal(p.postCopy, true);
    assert.equal(p.totalBytes, 0);
    assert.equal(p.iteration, 0);
  });

  void it('rejects malformed answers', () => {
    assert.equal(QueryMigrateSchema.safeParse({ status: 'active', ram: { total: 'x' } }).success, false);
  });
});

void describe('listeningPort', () => {
  void it('takes the port from the destination socket address', () => {
    const info = QueryMigrateSchema.parse({
      status: 'setup',
      'socket-address': [{ type: 'inet', host: '10.78.0.2', port: '40123' }],
    });
    assert.equal(listeningPort(info), 40123);
    assert.equal(listeningPort(QueryMigrateSchema.parse({})), null);
  });
});

void describe('timestamps and pause', () => {
  void it('converts QMP event timestamps to epoch microseconds', () => {
    assert.equal(eventTimeMicros({ seconds: 1_700_000_000, microseconds: 123_456 }), 1_700_000_000_123_456);
  });

  void it('computes the guest-visible pause from STOP and RESUME', () => {
    assert.equal(guestPauseMs(1_000_000, 1_042_500), 42.5);
    assert.equal(guestPauseMs(null, 1_042_500), null);
    assert.equal(guestPauseMs(2_000_000, 1_000_000), null);
  });
});

void describe('migration request schema', () => {
  void it('fills the policy defaults', () => {
    const req = StartMigrationRequestSchema.parse({ target: { host: '10.78.0.2', port: 49152 }, tls: sampleClientTls });
    // The default values themselves are checked against the CRDs in api/migration-tuning.test.ts.
    assert.deepEqual(req.policy, MigrationPolicySchema.parse({}));
  });

  void it('rejects bad input with the field path', () => {
    const bad = StartMigrationRequestSchema.safeParse({ target: { host: 'a b', port: 70_000 }, extra: 1 });
    assert.equal(bad.success, false);
    const paths = bad.error?.issues.map((i) => i.path.join('.')) ?? [];
    assert.ok(paths.includes('target.host'));
    assert.ok(paths.includes('target.port'));
    assert.equal(MigrationPolicySchema.safeParse({ downtimeScheduleMs: [300, 100] }).success, false);
    assert.equal(MigrationPolicySchema.safeParse({ downtimeScheduleMs: [] }).success, false);
    // As in the CRD: strictly increasing steps of at most 60 s, at most 16 of them, bandwidth up to 100Gi.
    assert.equal(MigrationPolicySchema.safeParse({ downtimeScheduleMs: [100, 100] }).success, false);
    assert.equal(MigrationPolicySchema.safeParse({ downtimeScheduleMs: [100, 60_001] }).success, false);
    assert.equal(MigrationPolicySchema.safeParse({ downtimeScheduleMs: Array.from({ length: 17 }, (_, i) => i + 1) }).success, false);
    assert.equal(MigrationPolicySchema.safeParse({ bandwidthBytesPerSecond: 100 * 1024 ** 3 + 1 }).success, false);
    assert.equal(MigrationPolicySchema.safeParse({ downtimeScheduleMs: [100, 60_000], bandwidthBytesPerSecond: 100 * 1024 ** 3 }).success, true);
  });
});
