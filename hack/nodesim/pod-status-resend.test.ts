import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { V1Container, V1ObjectMeta, V1Pod, V1PodSpec, type V1PodStatus } from '@kubernetes/client-node';
import { pino } from 'pino';
import { PodRunner } from './pod-runner.ts';

function jobPod(): V1Pod {
  const container = Object.assign(new V1Container(), { name: 'main', image: 'x' });
  const metadata = Object.assign(new V1ObjectMeta(), { name: 'job', namespace: 'ns', uid: 'uid-resend' });
  return Object.assign(new V1Pod(), { metadata, spec: Object.assign(new V1PodSpec(), { containers: [container] }) });
}

describe('pod status writes', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvt-resend-'));
  after(() => { fs.rmSync(dir, { recursive: true, force: true }); });

  it('a status write the API server did not answer is sent again', async () => {
    const sent: V1PodStatus[] = [];
    let failures = 1;
    const unused = (): Promise<never> => Promise.reject(new Error('not used here'));
    const runner = new PodRunner(
      {
        log: pino({ level: 'silent' }),
        api: {
          patchPodStatus: (_ns, _name, _uid, status) => {
            sent.push(status);
            if (failures-- > 0) return Promise.reject(new TypeError('fetch failed: Connect Timeout Error'));
            return Promise.resolve();
          },
          deletePod: () => Promise.resolve(),
          readSecret: unused,
          readConfigMap: unused,
          readPersistentVolumeClaim: unused,
          readPersistentVolume: unused,
          requestServiceAccountToken: unused,
        },
        nodeName: `kvt-resend-${process.pid}`,
        nodeIndex: 99,
        nodeIp: '10.77.0.99',
        images: { repoRoot: dir, stateDir: dir, nodeBinary: process.execPath },
        podsDir: dir,
        allocateIp: () => '10.77.0.100',
        releaseIp: () => undefined,
      },
      jobPod(),
    );
    await runner.terminate(0, false);
    assert.equal(sent.length, 2, 'the failed write was sent again');
    assert.deepEqual(
      sent.map((s) => s.containerStatuses?.[0]?.state?.terminated !== undefined),
      [true, true],
    );
  });
});
