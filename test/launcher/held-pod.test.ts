// runHeldPod (ADR 0134) against the pod script as PID 1 of a PID namespace: the
// configuration and the token read from a Secret volume laid out as the kubelet writes
// it (`name -> ..data/name`, `..data -> ..<timestamp>`); a configuration for another VM,
// a link out of the volume, and a QEMU that ended while no agent followed it are refused
// before anything starts, and the pod is told to exit with the launcher's code for each.
// (A running QEMU an earlier agent started is adopted: test/operator/held-launcher-e2e.)
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { runHeldPod } from '../../launcher/src/pod/held-pod.ts';
import { EXIT_CODES } from '../../launcher/src/exit-codes.ts';
import { startHostingPod, type HostingPod } from '../support/hosting-pod.ts';

const UID = '5c0d1f3e-0000-4000-8000-00000000abcd';
const TOKEN = 'a'.repeat(64);
const log = pino({ level: 'silent' });

interface Pod {
  dir: string;
  pod: HostingPod;
  init: number;
}

/** A pod on a fresh directory: `secret/` holds config.json and token as the kubelet writes them. */
async function heldPod(config: (dir: string) => object, options: { linkOut?: boolean } = {}): Promise<Pod> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-held-'));
  const secret = path.join(dir, 'secret');
  const stamp = '..2026_12_01_18_00_00.000000001';
  await mkdir(path.join(secret, stamp), { recursive: true });
  await writeFile(path.join(secret, stamp, 'config.json'), JSON.stringify(config(dir)));
  await writeFile(path.join(secret, stamp, 'token'), TOKEN);
  await symlink(stamp, path.join(secret, '..data'));
  await symlink(options.linkOut === true ? '/etc/hostname' : '..data/config.json', path.join(secret, 'config.json'));
  await symlink('..data/token', path.join(secret, 'token'));
  const pod = await startHostingPod(path.join(dir, 'state'));
  return { dir, pod, init: await pod.initPid() };
}

function configFor(dir: string, vm: { namespace: string; name: string; uid: string }): object {
  return {
    apiVersion: 'launcher.keyvirt.io/v1',
    vm,
    template: { memory: { size: '64Mi' }, allowEmulation: true },
    mode: 'run',
    terminationGracePeriodSeconds: 5,
    disks: {},
    listen: { address: '127.0.0.1', port: 0 },
    tokenFile: path.join(dir, 'secret', 'token'),
    stateDir: path.join(dir, 'state'),
    allowEmulation: true,
    qemu: { host: 'pod' },
  };
}

async function refused(pod: Pod, expect: { namespace: string; vmName: string; vmUid: string }, message: RegExp): Promise<number | null> {
  await assert.rejects(
    runHeldPod({ procRoot: '/proc', pid: pod.init, configFile: path.join(pod.dir, 'secret', 'config.json'), stateDir: path.join(pod.dir, 'state'), expect, pod: { uid: 'pod-uid-1', node: 'node-1' }, logger: log }),
    message,
  );
  return (await pod.pod.exited).code;
}

void describe('a held pod refused before anything starts', { timeout: 60_000 }, () => {
  const vm = { namespace: 'team-a', name: 'web', uid: UID };
  const expect = { namespace: 'team-a', vmName: 'web', vmUid: UID };

  void it('a configuration naming another VM: the pod exits with the invalid-configuration code', async () => {
    const pod = await heldPod((dir) => configFor(dir, { ...vm, name: 'other' }));
    try {
      assert.equal(await refused(pod, expect, /names VM team-a\/other/), EXIT_CODES.invalidConfig);
    } finally {
      pod.pod.process.kill('SIGKILL');
      await rm(pod.dir, { recursive: true, force: true });
    }
  });

  void it('a key linked out of the volume is not followed', async () => {
    const pod = await heldPod(() => ({}), { linkOut: true });
    try {
      assert.equal(await refused(pod, expect, /symbolic link to "\/etc\/hostname"/), EXIT_CODES.invalidConfig);
    } finally {
      pod.pod.process.kill('SIGKILL');
      await rm(pod.dir, { recursive: true, force: true });
    }
  });

  void it('a QEMU that ended while no agent followed it is not started again: the pod exits Failed', async () => {
    const pod = await heldPod((dir) => configFor(dir, vm));
    try {
      await writeFile(path.join(pod.dir, 'state', 'qemu.pid'), '42\n');
      await writeFile(path.join(pod.dir, 'state', 'qemu.exit'), 'status 0\n');
      assert.equal(await refused(pod, expect, /while no node agent followed it/), EXIT_CODES.vmFailed);
    } finally {
      pod.pod.process.kill('SIGKILL');
      await rm(pod.dir, { recursive: true, force: true });
    }
  });
});
