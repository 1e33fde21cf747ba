import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { MigrationTuning } from '@keyvirt/crds';
import { MigrationPolicySchema } from './migration.ts';
import { migrationPolicyFromTuning, resolveMigrationTuning } from './migration-tuning.ts';

const MiB = 1024 ** 2;

void describe('migrationPolicyFromTuning', () => {
  void it('gives the defaults the CRDs document for an empty tuning', () => {
    assert.deepEqual(migrationPolicyFromTuning({}), {
      bandwidthBytesPerSecond: 0,
      downtimeScheduleMs: [100, 150, 200, 300, 400, 500],
      stalledIterationsPerStep: 2,
      autoConverge: false,
      postCopy: false,
      completionTimeoutPerGiBSeconds: 150,
      progressTimeoutSeconds: 150,
    });
  });

  void it('defaults the stalled iterations per step exactly as the CRD defaults stallIterations', () => {
    const crd = MigrationTuning.parse({ downtime: { stepsMs: [100] } });
    assert.equal(MigrationPolicySchema.parse({}).stalledIterationsPerStep, crd.downtime?.stallIterations);
    assert.equal(migrationPolicyFromTuning(crd).stalledIterationsPerStep, crd.downtime?.stallIterations);
  });

  void it('maps every field of a tuning', () => {
    assert.deepEqual(
      migrationPolicyFromTuning({
        bandwidthPerMigration: '64Mi',
        completionTimeoutPerGiB: 300,
        progressTimeoutSeconds: 60,
        allowAutoConverge: true,
        allowPostCopy: true,
        downtime: { stepsMs: [200, 400, 800], stallIterations: 3 },
      }),
      {
        bandwidthBytesPerSecond: 64 * MiB,
        downtimeScheduleMs: [200, 400, 800],
        stalledIterationsPerStep: 3,
        autoConverge: true,
        postCopy: true,
        completionTimeoutPerGiBSeconds: 300,
        progressTimeoutSeconds: 60,
      },
    );
  });

  void it('reads bandwidths in every quantity form the CRD accepts', () => {
    assert.equal(migrationPolicyFromTuning({ bandwidthPerMigration: '0' }).bandwidthBytesPerSecond, 0);
    assert.equal(migrationPolicyFromTuning({ bandwidthPerMigration: '1.5Mi' }).bandwidthBytesPerSecond, 1.5 * MiB);
    assert.equal(migrationPolicyFromTuning({ bandwidthPerMigration: '100M' }).bandwidthBytesPerSecond, 100_000_000);
  });

  void it('accepts the limits of what the CRD accepts', () => {
    const limits = {
      bandwidthPerMigration: '100Gi',
      completionTimeoutPerGiB: 86_400,
      progressTimeoutSeconds: 86_400,
      downtime: { stepsMs: Array.from({ length: 16 }, (_, i) => 60_000 - 15 + i), stallIterations: 100 },
    };
    assert.equal(MigrationTuning.safeParse(limits).success, true);
    const policy = migrationPolicyFromTuning(limits);
    assert.equal(policy.bandwidthBytesPerSecond, 100 * 1024 ** 3);
    assert.equal(policy.downtimeScheduleMs.length, 16);
    assert.equal(policy.stalledIterationsPerStep, 100);
  });

  void it('refuses what the CRD refuses, with the same rule', () => {
    for (const tuning of [
      { downtime: { stepsMs: [100, 100] } },
      { downtime: { stepsMs: [300, 200] } },
      { downtime: { stepsMs: [60_001] } },
      { downtime: { stepsMs: [100], stallIterations: 0 } },
      { progressTimeoutSeconds: 0 },
    ]) {
      assert.equal(MigrationTuning.safeParse(tuning).success, false, JSON.stringify(tuning));
      assert.throws(() => migrationPolicyFromTuning(tuning), JSON.stringify(tuning));
    }
    const increasing = MigrationPolicySchema.safeParse({ downtimeScheduleMs: [100, 100] });
    assert.equal(increasing.error?.issues[0]?.message, 'downtime.stepsMs must be strictly increasing');
    assert.deepEqual(increasing.error?.issues[0]?.path, ['downtimeScheduleMs']);
  });
});

void describe('resolveMigrationTuning', () => {
  void it('lets each override win over the policy field by field', () => {
    const policy = { bandwidthPerMigration: '64Mi', allowPostCopy: true, downtime: { stepsMs: [100, 200], stallIterations: 4 } };
    const overrides = { allowPostCopy: false, downtime: { stepsMs: [300] } };
    assert.deepEqual(resolveMigrationTuning(policy, overrides), { bandwidthPerMigration: '64Mi', allowPostCopy: false, downtime: { stepsMs: [300] } });
    assert.deepEqual(resolveMigrationTuning(undefined, undefined), {});
    assert.deepEqual(migrationPolicyFromTuning(resolveMigrationTuning(policy, overrides)).stalledIterationsPerStep, 2);
  });
});
