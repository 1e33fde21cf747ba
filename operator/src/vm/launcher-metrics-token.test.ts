import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { MetricsKeyError, metricsTokenData, readMetricsKey } from './launcher-metrics-token.ts';

void describe('launcher metrics token', () => {
  void it('is the HMAC of the VM uid under the key, one per VM, and absent without a key', () => {
    const key = randomBytes(32);
    const data = metricsTokenData(key, 'uid-1');
    const token = Buffer.from(data['metrics-token'] ?? '', 'base64').toString('utf8');
    assert.equal(token, createHmac('sha256', key).update('keyvirt.io/launcher-metrics/v1\nuid-1').digest('hex'));
    assert.notEqual(metricsTokenData(key, 'uid-2')['metrics-token'], data['metrics-token']);
    assert.deepEqual(metricsTokenData(undefined, 'uid-1'), {});
    assert.deepEqual(metricsTokenData(key, undefined), {});
  });

  void it('refuses a missing or short key file', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kv-metrics-key-'));
    try {
      await writeFile(path.join(dir, 'short'), 'abc\n');
      await writeFile(path.join(dir, 'good'), `${'k'.repeat(48)}\n`);
      assert.throws(() => readMetricsKey(path.join(dir, 'short')), MetricsKeyError);
      assert.throws(() => readMetricsKey(path.join(dir, 'absent')), MetricsKeyError);
      assert.equal(readMetricsKey(path.join(dir, 'good')).length, 48);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
