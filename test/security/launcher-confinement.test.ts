// A running VM's launcher sees only its own disk: on a simulated node started from this
// tree (containers in a root of their own), under the shipped RBAC and admission
// policies, with real QEMU booting the test guest over a qcow2 overlay whose backing
// template lives on the same StorageDomain. From the launcher's and QEMU's own mount
// namespace (/proc/<pid>/root and mountinfo): another VM's image on the domain is not
// there, the template is read-only, the domain's directory on the node is not there;
// QEMU holds the template open through the pod's read-only mount, the guest writes its
// overlay, the template is unchanged. Both processes run without capabilities under
// no_new_privs (the launcher pod's securityContext, applied by the node).
// A Secret in the VM's namespace under the launcher Secret's name that the VM does not
// control is neither overwritten nor used: the VM is Failed with LauncherSecretConflict.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { StorageDomainInput } from '@keyvirt/crds';
import type { SimulatedNode } from '../../hack/cluster/nodes.ts';
import { ensureCluster, eventually, throwawayTaintKey, type TestCluster } from '../support/cluster.ts';
import { copyBootDisk, testGuest, type TestGuest } from '../support/guest.ts';
import { deleteDomainJobPods, OPERATOR_NAMESPACE, type OperatorProcess, startSuiteOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, condition, launcherPods, scratch, type Scratch, TEST_RUN_LABEL, testVm, waitVm } from '../operator/vm-fixtures.ts';

const DOMAINS_IN_POD = '/var/run/keyvirt/domains';

/** Host PIDs of the processes in a pod's container (by its cgroup), with their command lines. */
function containerProcesses(podUid: string, container: string): { pid: number; cmdline: string }[] {
  const out: { pid: number; cmdline: string }[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    try {
      const cgroup = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      if (!cgroup.split('\n').some((l) => l.includes(':memory:') && l.endsWith(`/${podUid}/${container}`))) continue;
      out.push({ pid, cmdline: fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ') });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

interface MountEntry { root: string; point: string; options: string }

function mounts(pid: number): MountEntry[] {
  return fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').filter((l) => l !== '').map((l) => {
    const f = l.split(' ');
    return { root: f[3] ?? '', point: f[4] ?? '', options: f[5] ?? '' };
  });
}

function statusField(pid: number, field: string): string | undefined {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${field}:`));
  return line?.slice(field.length + 1).trim();
}

function errorCode(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
}

void describe('launcher confinement on a simulated node', { timeout: 20 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let operator: OperatorProcess;
  let node: SimulatedNode;
  let domainDir: string;
  let sd: string;
  let templateHash: string;
  const template = (): string => path.join(domainDir, 'templates', 'base');
  const imageOf = (vm: string): string => path.join(domainDir, 'images', s.namespace, vm, 'root.qcow2');
  const sha256 = async (file: string): Promise<string> => createHash('sha256').update(await readFile(file)).digest('hex');

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-conf');
    node = await cluster.createNode('kvt-conf');
    sd = `sd-conf-${s.runId}`;
    domainDir = path.join(s.dir, 'domain');
    await mkdir(path.join(domainDir, 'templates'), { recursive: true });
    await copyBootDisk(guest, template(), 'qcow2');
    templateHash = await sha256(template());
    operator = await startSuiteOperator(cluster, s, 'conf', ['--storage-domain-selector', `${TEST_RUN_LABEL}=${s.runId}`]);
    const domain: StorageDomainInput = {
      apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain',
      metadata: { name: sd, labels: { [TEST_RUN_LABEL]: s.runId } },
      spec: { type: 'local', local: { path: domainDir }, thresholds: { warningPercent: 99, criticalFreeGiB: 0 } },
    };
    apply(cluster, domain);
  });

  after(async () => {
    await stopOperator(operator);
    for (const args of [
      ['patch', 'storagedomain', sd, '--type=merge', '-p', '{"metadata":{"finalizers":null}}'],
      ['delete', 'storagedomain', sd, '--ignore-not-found', '--wait=false'],
      ['delete', 'pvc', `keyvirt-sd-${sd}`, '-n', OPERATOR_NAMESPACE, '--ignore-not-found', '--wait=false'],
      ['delete', 'pv', `keyvirt-sd-${sd}`, '--ignore-not-found', '--wait=false'],
    ]) {
      try {
        cluster.kubectl(args);
      } catch {
        // already gone
      }
    }
    deleteDomainJobPods(cluster, sd);
    await s.cleanup();
    await cluster.deleteNode(node.name);
  });

  const vmOn = (name: string, runStrategy: 'Always' | 'Halted'): ReturnType<typeof testVm> => {
    const manifest = testVm(s, guest, { name, runStrategy });
    manifest.spec.template.disks = [{ name: 'root', bootOrder: 1, storageDomain: { name: sd, size: '128Mi', format: 'qcow2', backingImage: 'base' } }];
    manifest.spec.nodeSelector = { 'kubernetes.io/hostname': node.name };
    manifest.spec.tolerations = [{ key: throwawayTaintKey, operator: 'Exists', effect: 'NoSchedule' }];
    return manifest;
  };

  void it('boots over a backing template with only its own image and the template (read-only) in the launcher\'s mount namespace', async () => {
    // vm-b never runs: its image exists on the domain, next to vm-a's.
    apply(cluster, vmOn('vm-b', 'Halted'));
    apply(cluster, vmOn('vm-a', 'Always'));
    await eventually('both images on the domain', () => (fs.existsSync(imageOf('vm-a')) && fs.existsSync(imageOf('vm-b')) ? true : undefined), 240_000);
    const vm = await waitVm(cluster, { namespace: s.namespace, name: 'vm-a' }, 'Running with its agent',
      (v) => v.status?.phase === 'Running' && condition(v, 'AgentConnected')?.status === 'True', 300_000);
    assert.equal(vm.status?.nodeName, node.name, 'on the node started from this tree');
    const pod = launcherPods(cluster, s.namespace, 'vm-a')[0];
    assert.ok(pod !== undefined);
    const procs = containerProcesses(pod.metadata.uid, 'launcher');
    // The launcher runs as its image carries it: built JavaScript (hack/launcher-build), launcher/src/main.js.
    const launcher = procs.find((p) => /launcher\/src\/main\.(ts|js)\b/.test(p.cmdline));
    const qemu = procs.find((p) => p.cmdline.includes('qemu-system'));
    assert.ok(launcher !== undefined && qemu !== undefined, `launcher and QEMU in the pod's cgroup: ${procs.map((p) => p.cmdline.slice(0, 80)).join(' | ')}`);

    const inPod = (pid: number, p: string): string => path.join(`/proc/${pid}/root`, p);
    const own = `${DOMAINS_IN_POD}/${sd}/images/${s.namespace}/vm-a/root.qcow2`;
    const templateInPod = `${DOMAINS_IN_POD}/${sd}/templates/base`;
    for (const { pid } of [launcher, qemu]) {
      assert.ok(fs.existsSync(inPod(pid, own)), 'its own image');
      assert.ok(fs.existsSync(inPod(pid, templateInPod)), 'its template');
      assert.equal(fs.existsSync(inPod(pid, `${DOMAINS_IN_POD}/${sd}/images/${s.namespace}/vm-b`)), false, 'no other VM\'s image');
      assert.deepEqual(fs.readdirSync(inPod(pid, `${DOMAINS_IN_POD}/${sd}/images/${s.namespace}`)), ['vm-a']);
      assert.equal(fs.existsSync(inPod(pid, domainDir)), false, 'the domain\'s directory on the node is not in the pod');
      assert.equal(fs.existsSync(inPod(pid, imageOf('vm-b'))), false);
      assert.equal(fs.existsSync(inPod(pid, path.join(cluster.layout.stateDir, 'kubeconfig'))), false, 'nor the cluster\'s state');
    }
    // The template cannot be written from the pod: its mount is read-only.
    assert.equal(errorCode(() => fs.closeSync(fs.openSync(inPod(qemu.pid, templateInPod), 'r+'))), 'EROFS');
    // What of the domain is mounted: the image (read-write) and the template (read-only), nothing else.
    const domainMounts = mounts(launcher.pid).filter((m) => m.point.startsWith(`${DOMAINS_IN_POD}/`));
    assert.deepEqual(domainMounts.map((m) => [m.point, m.options.split(',')[0]]).sort(), [[own, 'rw'], [templateInPod, 'ro']].sort());
    const domainSuffix = path.basename(domainDir);
    assert.ok(mounts(launcher.pid).every((m) => !m.root.endsWith(`/${domainSuffix}`) && !m.root.endsWith(`/${domainSuffix}/images`)), 'the whole domain is mounted nowhere');
    // QEMU opened the backing template through the pod's mount.
    const open = fs.readdirSync(`/proc/${qemu.pid}/fd`).map((fd) => {
      try {
        return fs.readlinkSync(`/proc/${qemu.pid}/fd/${fd}`);
      } catch {
        return '';
      }
    });
    assert.ok(open.includes(templateInPod), `QEMU holds ${templateInPod} open: ${open.filter((f) => f.startsWith('/var')).join(', ')}`);
    assert.ok(open.includes(own));
    // Hardened: no capabilities at all, no_new_privs (allowPrivilegeEscalation: false).
    for (const { pid } of [launcher, qemu]) {
      assert.equal(statusField(pid, 'CapEff'), '0000000000000000');
      assert.equal(statusField(pid, 'CapBnd'), '0000000000000000');
      assert.equal(statusField(pid, 'NoNewPrivs'), '1');
    }
    // The guest booted from its overlay (the template's boot loader, kernel and initramfs read through it); the template stays as it was.
    assert.equal(await sha256(template()), templateHash);
  });

  void it('neither overwrites nor uses a launcher-named Secret the VM does not control: the VM is Failed with LauncherSecretConflict', async () => {
    cluster.kubectl(['create', 'secret', 'generic', 'launcher-taken', '-n', s.namespace, '--from-literal=token=not-the-operators']);
    const manifest = testVm(s, guest, { name: 'taken' });
    apply(cluster, manifest);
    const vm = await waitVm(cluster, { namespace: s.namespace, name: 'taken' }, 'Failed with LauncherSecretConflict',
      (v) => v.status?.phase === 'Failed' && condition(v, 'Ready')?.reason === 'LauncherSecretConflict', 120_000);
    assert.match(condition(vm, 'Ready')?.message ?? '', /launcher-taken exists and is not controlled by this VirtualMachine/);
    assert.deepEqual(launcherPods(cluster, s.namespace, 'taken'), []);
    const secret = JSON.parse(cluster.kubectl(['get', 'secret', 'launcher-taken', '-n', s.namespace, '-o', 'json'])) as { data: Record<string, string>; metadata: { ownerReferences?: unknown } };
    assert.deepEqual(Object.keys(secret.data), ['token']);
    assert.equal(Buffer.from(secret.data.token ?? '', 'base64').toString(), 'not-the-operators');
    assert.equal(secret.metadata.ownerReferences, undefined);
  });
});
