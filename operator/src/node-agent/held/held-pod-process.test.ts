import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { findHeldPodInit, findHeldPodInits, isNamespaceInit, runsPodScript } from './held-pod-process.ts';

const UID = '0f1e2d3c-4b5a-6978-8a9b-acbdcedf0011';
const SCRIPT = '/opt/keyvirt/launcher/pod/vm-pod.sh';
const cgroup = `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID.replaceAll('-', '_')}.slice/cri-containerd-1.scope\n`;

void describe('the PID 1 of a held launcher pod', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  async function proc(entries: { pid: number; cgroup: string; nspid: string; argv: string[] }[]): Promise<string> {
    const root = await mkdtemp(path.join(tmpdir(), 'held-proc-'));
    dirs.push(root);
    for (const e of entries) {
      const dir = path.join(root, String(e.pid));
      await mkdir(dir);
      await writeFile(path.join(dir, 'cgroup'), e.cgroup);
      await writeFile(path.join(dir, 'status'), `Name:\tx\nNSpid:\t${e.nspid}\n`);
      await writeFile(path.join(dir, 'cmdline'), e.argv.map((a) => `${a}\0`).join(''));
    }
    return root;
  }

  void it('is PID 1 of its own namespace running the script under bash', () => {
    assert.ok(isNamespaceInit('NSpid:\t4242\t1\n'));
    assert.ok(!isNamespaceInit('NSpid:\t1\n'), 'the node\'s own init is not a pod\'s');
    assert.ok(!isNamespaceInit('NSpid:\t4243\t7\n'));
    assert.ok(!isNamespaceInit('Name: x\n'));
    assert.ok(runsPodScript(`/bin/bash\0${SCRIPT}\0`));
    assert.ok(!runsPodScript(`/bin/bash\0${SCRIPT}\0extra\0`));
    assert.ok(!runsPodScript(`/usr/bin/qemu-system-x86_64\0${SCRIPT}\0`));
    assert.ok(!runsPodScript(`/bin/bash\0/tmp/vm-pod.sh\0`));
  });

  void it('is found among the pod\'s processes, not QEMU dressed as it, nor the sandbox, nor another pod\'s', async () => {
    const root = await proc([
      { pid: 10, cgroup, nspid: '10\t1', argv: ['/pause'] },
      { pid: 11, cgroup, nspid: '11\t1', argv: ['/bin/bash', SCRIPT] },
      { pid: 12, cgroup, nspid: '12\t7', argv: ['/bin/bash', SCRIPT] },
      { pid: 13, cgroup: '0::/kubepods.slice/other.slice\n', nspid: '13\t1', argv: ['/bin/bash', SCRIPT] },
    ]);
    assert.equal(await findHeldPodInit(root, UID), 11);
  });

  void it('is undefined before the container starts, when two processes claim it, or for a UID that is not one', async () => {
    assert.equal(await findHeldPodInit(await proc([{ pid: 10, cgroup, nspid: '10\t1', argv: ['/pause'] }]), UID), undefined);
    const twice = await proc([
      { pid: 11, cgroup, nspid: '11\t1', argv: ['/bin/bash', SCRIPT] },
      { pid: 21, cgroup, nspid: '21\t1', argv: ['/bin/bash', SCRIPT] },
    ]);
    assert.equal(await findHeldPodInit(twice, UID), undefined);
    assert.equal(await findHeldPodInit(twice, '../11'), undefined);
  });

  void it('one walk finds the PID 1 of several pods, and none for a pod two processes claim', async () => {
    const other = '1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809';
    const otherCgroup = `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${other.replaceAll('-', '_')}.slice/cri-containerd-2.scope\n`;
    const third = '99999999-5e6f-7081-92a3-b4c5d6e7f809';
    const thirdCgroup = otherCgroup.replace(other.replaceAll('-', '_'), third.replaceAll('-', '_'));
    const root = await proc([
      { pid: 11, cgroup, nspid: '11\t1', argv: ['/bin/bash', SCRIPT] },
      { pid: 31, cgroup: otherCgroup, nspid: '31\t1', argv: ['/bin/bash', SCRIPT] },
      { pid: 32, cgroup: otherCgroup, nspid: '32\t9', argv: ['/bin/bash', SCRIPT] },
      { pid: 41, cgroup: thirdCgroup, nspid: '41\t1', argv: ['/bin/bash', SCRIPT] },
      { pid: 42, cgroup: thirdCgroup, nspid: '42\t1', argv: ['/bin/bash', SCRIPT] },
    ]);
    assert.deepEqual(await findHeldPodInits(root, [UID, other, third, 'not-a-uid']), new Map([[UID, 11], [other, 31]]));
  });
});
