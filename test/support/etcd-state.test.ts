import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { clusterLayout } from '../../hack/cluster/layout.ts';
import { etcdFields, etcdState, etcdStateOrWhy } from './etcd-state.ts';
import { freeLoopbackPort } from './loopback-port.ts';

// A real etcd of the pinned build (hack/prepare.d builds it), on ports of its own: not the local cluster's.
void describe('etcd state through its JSON gateway', () => {
  let dir = '';
  let url = '';
  let stop = (): void => undefined;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'keyvirt-etcd-state-'));
    const [client, peer] = [await freeLoopbackPort(), await freeLoopbackPort()];
    url = `http://127.0.0.1:${client}`;
    const etcd = spawn(path.join(clusterLayout().binDir, 'etcd'), [
      '--name=etcd-state-test', `--data-dir=${path.join(dir, 'data')}`, `--listen-client-urls=${url}`, `--advertise-client-urls=${url}`,
      `--listen-peer-urls=http://127.0.0.1:${peer}`, `--initial-advertise-peer-urls=http://127.0.0.1:${peer}`, `--initial-cluster=etcd-state-test=http://127.0.0.1:${peer}`,
    ], { stdio: 'ignore' });
    stop = () => void etcd.kill('SIGKILL');
    for (let i = 0; ; i += 1) {
      if (typeof (await etcdStateOrWhy(url)) !== 'string') break;
      if (i > 200) throw new Error('etcd did not answer within 20 s');
      await sleep(100);
    }
  });
  after(async () => {
    stop();
    await rm(dir, { recursive: true, force: true });
  });

  void it('reads the revision and the database size, and the revision moves with a write', async () => {
    const first = await etcdState(url);
    assert.ok(first.revision >= 1 && first.dbSizeMiB > 0 && first.dbInUseMiB <= first.dbSizeMiB, JSON.stringify(first));
    const put = await fetch(`${url}/v3/kv/put`, { method: 'POST', body: JSON.stringify({ key: Buffer.from('k').toString('base64'), value: Buffer.from('v').toString('base64') }) });
    assert.equal(put.status, 200);
    const second = await etcdState(url);
    assert.equal(second.revision, first.revision + 1);
    assert.match(etcdFields('start_', second), new RegExp(`^ etcd_start_revision=${second.revision} etcd_start_db_mib=\\d+\\.\\d etcd_start_db_in_use_mib=\\d+\\.\\d$`));
  });

  void it('an etcd that does not answer gives the reason, and the fields say n/a', async () => {
    const why = await etcdStateOrWhy(`http://127.0.0.1:${await freeLoopbackPort()}`);
    assert.equal(typeof why, 'string');
    assert.equal(etcdFields('start_', why), ' etcd_start_revision=n/a etcd_start_db_mib=n/a etcd_start_db_in_use_mib=n/a');
  });
});
