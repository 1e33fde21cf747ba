// The launcher config's lease block: defaults, the safety inequality of ADR 0063 and
// the identity from the downward API, each refusal naming its field.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LeaseSchema } from '../api/config.ts';
import { leaseIdentity, LeaseConfigError } from './launcher-lease.ts';

void describe('lease config', () => {
  void it('defaults to R=1000, F=5000, L=8000, not fenced', () => {
    const lease = LeaseSchema.parse({ path: '/var/lib/keyvirt/lease/lease' });
    assert.deepEqual([lease.renewIntervalMs, lease.fenceTimeoutMs, lease.acquireTimeoutMs, lease.nodeFenced], [1000, 5000, 8000, false]);
  });
  const refused: readonly [string, Record<string, unknown>, string][] = [
    ['L too short for F, ρ and K', { acquireTimeoutMs: 6000 }, 'acquireTimeoutMs'],
    ['F shorter than 3·R', { renewIntervalMs: 2000 }, 'fenceTimeoutMs'],
    ['a relative path', { path: 'lease' }, 'path'],
    ['a holder id with a slash', { holderId: '../x' }, 'holderId'],
  ];
  for (const [name, change, field] of refused) {
    void it(`refuses ${name}, naming ${field}`, () => {
      const result = LeaseSchema.safeParse({ path: '/l/lease', ...change });
      assert.equal(result.success, false);
      assert.ok(result.error?.issues.some((i) => i.path.join('.') === field), JSON.stringify(result.error?.issues));
    });
  }
  void it('accepts the shortest constants the inequality allows for R=250', () => {
    assert.equal(LeaseSchema.safeParse({ path: '/l/lease', renewIntervalMs: 250, fenceTimeoutMs: 1500, acquireTimeoutMs: 2600 }).success, true);
  });
});

void describe('lease identity', () => {
  const config = LeaseSchema.parse({ path: '/l/lease' });
  void it('comes from KEYVIRT_POD_UID', () => {
    assert.equal(leaseIdentity(config, { KEYVIRT_POD_UID: '6f1c2b3a-0000-4000-8000-000000000001' }), '6f1c2b3a-0000-4000-8000-000000000001');
  });
  void it('holderId wins over the environment', () => {
    assert.equal(leaseIdentity({ ...config, holderId: 'pod-a' }, { KEYVIRT_POD_UID: 'other' }), 'pod-a');
  });
  void it('refuses to run without one', () => {
    assert.throws(() => leaseIdentity(config, {}), LeaseConfigError);
    assert.throws(() => leaseIdentity(config, { KEYVIRT_POD_UID: 'a b' }), /KEYVIRT_POD_UID/);
  });
});
