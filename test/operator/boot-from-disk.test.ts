// VMs boot from their disks, through the operator on the local cluster (real launchers,
// real QEMU under TCG, the real guest agent): the test guest from a qcow2 overlay the
// operator creates over the posix domain's `keyvirt-test-guest` backing image, with no
// host path in its launcher pod even when the VM carries the old kernel-boot annotation
// aimed at `/`; the Debian 12 image from a `debian-12` overlay, taking its host name,
// user, SSH key and network from cloud-init (NoCloud), the guest agent reporting the
// host name cloud-init set. ADRs 0087 and 0088.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { StorageDomain, type VirtualMachineInput } from '@keyvirt/crds';
import { z } from 'zod';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { cloudConfig, debianGuest, dhcpNetworkConfig, type DebianGuest } from '../support/debian-guest.ts';
import { copyBootDisk, testGuest, type TestGuest } from '../support/guest.ts';
import { deleteDomainJobPods, OPERATOR_NAMESPACE, type OperatorProcess, startSuiteOperator, stopOperator } from './operator-process.ts';
import { apply, condition, launcherPods, scratch, type Scratch, TEST_RUN_LABEL, testVm, waitVm } from './vm-fixtures.ts';

const run = promisify(execFile);

const podVolumes = z.object({
  spec: z.object({
    volumes: z.array(z.object({ name: z.string(), hostPath: z.object({ path: z.string() }).optional() }).loose()),
    containers: z.array(z.object({ volumeMounts: z.array(z.object({ mountPath: z.string() }).loose()).default([]) }).loose()),
  }),
});

void describe('VMs boot from their disks (operator, local cluster)', { timeout: 40 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let operator: OperatorProcess;
  let domainDir: string;
  let domainName: string;

  const domainDisk = (backingImage: string, size: string): NonNullable<VirtualMachineInput['spec']['template']['disks']>[number] => ({
    name: 'root',
    bootOrder: 1,
    storageDomain: { name: domainName, size, format: 'qcow2', backingImage },
  });

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-boot');
    domainName = `sd-${s.runId}-boot`;
    domainDir = path.join(s.dir, 'domain');
    await mkdir(path.join(domainDir, 'templates'), { recursive: true });
    await copyBootDisk(guest, path.join(domainDir, 'templates', 'keyvirt-test-guest'), 'qcow2');
    operator = await startSuiteOperator(cluster, s, 'boot', ['--storage-domain-selector', `${TEST_RUN_LABEL}=${s.runId}`]);
    apply(cluster, {
      apiVersion: 'keyvirt.io/v1alpha1',
      kind: 'StorageDomain',
      metadata: { name: domainName, labels: { [TEST_RUN_LABEL]: s.runId } },
      spec: { type: 'posix', posix: { path: domainDir }, role: 'data', thresholds: { warningPercent: 99, criticalFreeGiB: 0 } },
    });
    await eventually(`StorageDomain ${domainName} Active`, () => {
      const out = cluster.kubectl(['get', 'storagedomain', domainName, '-o', 'json']);
      return StorageDomain.parse(JSON.parse(out)).status?.phase === 'Active' ? true : undefined;
    }, 240_000, 1000);
  });

  after(async () => {
    await stopOperator(operator);
    cluster.kubectl(['delete', 'storagedomain', domainName, '--ignore-not-found', '--wait=false']);
    try {
      cluster.kubectl(['patch', 'storagedomain', domainName, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
    } catch {
      // never created, or already gone
    }
    cluster.kubectl(['delete', 'pvc', `keyvirt-sd-${domainName}`, '-n', OPERATOR_NAMESPACE, '--ignore-not-found', '--wait=false']);
    cluster.kubectl(['delete', 'pv', `keyvirt-sd-${domainName}`, '--ignore-not-found', '--wait=false']);
    deleteDomainJobPods(cluster, domainName);
    await s.cleanup();
  });

  void it('the test guest boots from an overlay over keyvirt-test-guest; the kernel-boot annotation mounts nothing', async () => {
    const vm = testVm(s, guest, { name: 'from-disk' });
    // The old development annotation, aimed at the host's root: it must change nothing.
    vm.metadata = { ...vm.metadata, annotations: { 'keyvirt.io/kernel-boot': JSON.stringify({ kernel: '/vmlinux', initrd: '/initrd' }) } };
    vm.spec.template.disks = [domainDisk('keyvirt-test-guest', '64Mi')];
    apply(cluster, vm);
    const running = await waitVm(cluster, { namespace: s.namespace, name: 'from-disk' }, 'Running with the guest agent', (v) => v.status?.phase === 'Running' && v.status.guestOSInfo?.kernelRelease !== undefined, 600_000);
    assert.equal(running.status?.guestOSInfo?.kernelRelease, guest.kernelRelease, 'the kernel on the disk, the one the test guest was built with');
    assert.equal(running.status?.accelerator, 'tcg');
    const pod = launcherPods(cluster, s.namespace, 'from-disk')[0];
    assert.ok(pod);
    const spec = podVolumes.parse(JSON.parse(cluster.kubectl(['get', 'pod', pod.metadata.name, '-n', s.namespace, '-o', 'json']))).spec;
    // Host paths: the posix domain's directory (its disk and template are subPaths of it), at most /dev/kvm; nothing for a kernel.
    const hostPaths = spec.volumes.flatMap((v) => (v.hostPath === undefined ? [] : [v.hostPath.path])).filter((p) => p !== '/dev/kvm');
    assert.deepEqual(hostPaths, [domainDir], `hostPath volumes: ${hostPaths.join(', ')}`);
    assert.ok(!spec.volumes.some((v) => v.name.startsWith('kernel-boot')), 'no kernel-boot volume');
    assert.ok(!spec.containers.some((c) => c.volumeMounts.some((m) => m.mountPath === '/' || m.mountPath === '/vmlinux')), 'nothing mounted for a kernel');
    const overlay = path.join(domainDir, 'images', s.namespace, 'from-disk', 'root.qcow2');
    const { stdout } = await run('qemu-img', ['info', '--output=json', '-U', overlay]);
    assert.match(stdout, /"backing-filename": "\.\.\/\.\.\/\.\.\/templates\/keyvirt-test-guest"/);
    cluster.kubectl(['delete', 'virtualmachine', 'from-disk', '-n', s.namespace, '--wait=false']);
  });

  let debian: DebianGuest;
  void it('the Debian 12 image boots from its disk and takes host name, user, SSH key and network from cloud-init', async () => {
    debian = await debianGuest();
    await run('cp', ['--reflink=auto', debian.image, path.join(domainDir, 'templates', 'debian-12')]);
    const hostname = `deb-${s.runId}`;
    const { stdout: pub } = await run('bash', ['-c', `ssh-keygen -q -t ed25519 -N '' -C e2e -f '${path.join(s.dir, 'id_ed25519')}' <<<y >/dev/null && cat '${path.join(s.dir, 'id_ed25519.pub')}'`]);
    const vm = testVm(s, guest, { name: 'debian', memory: '1Gi' });
    vm.spec.template.disks = [domainDisk('debian-12', '3Gi')];
    vm.spec.template.cloudInit = {
      userData: cloudConfig({ hostname, user: 'keyvirt', sshAuthorizedKeys: [pub.trim()] }),
      networkData: dhcpNetworkConfig(),
    };
    apply(cluster, vm);
    const running = await waitVm(
      cluster,
      { namespace: s.namespace, name: 'debian' },
      `Running, the guest agent reporting host name ${hostname}`,
      (v) => v.status?.phase === 'Running' && v.status.guestOSInfo?.hostname === hostname,
      25 * 60_000,
    );
    assert.equal(running.status?.guestOSInfo?.id, 'debian');
    assert.equal(running.status?.guestOSInfo?.versionId, '12');
    assert.equal(running.status?.guestOSInfo?.kernelRelease, debian.kernelRelease);
    assert.equal(condition(running, 'AgentConnected')?.status, 'True');
    assert.ok((running.status?.interfaces ?? []).length > 0, `interfaces in status: ${JSON.stringify(running.status?.interfaces)}`);
  });
});
