// What the operator's end-to-end suites share: a namespace of their own with the test
// guest's bootable disk on a read-only claim, a data disk on a PersistentVolume, the VM
// manifest that boots the test guest from that disk through the firmware, and typed
// reads of VMs and launcher pods through kubectl.
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { VirtualMachine, type VirtualMachineInput } from '@keyvirt/crds';
import { z } from 'zod';
import { eventually, type TestCluster } from '../support/cluster.ts';
import { copyBootDisk, createBlankDisk, testGuest, type TestGuest } from '../support/guest.ts';

export const TEST_RUN_LABEL = 'keyvirt.io/test-run';
/** The claim every scratch namespace has: the test guest's bootable disk (raw), attached read-only by every test VM. */
export const GUEST_BOOT_CLAIM = 'guest-boot';

export interface Scratch {
  readonly runId: string;
  readonly namespace: string;
  readonly dir: string;
  cleanup(): Promise<void>;
}

/** A namespace and a temp dir owned by one suite; `cleanup` removes both (and whatever is in them). */
export async function scratch(cluster: TestCluster, prefix: string): Promise<Scratch> {
  const runId = randomBytes(4).toString('hex');
  const namespace = `${prefix}-${runId}`;
  const dir = await mkdtemp(path.join(tmpdir(), `${prefix}-`));
  cluster.kubectl(['create', 'namespace', namespace]);
  const s: Scratch = {
    runId,
    namespace,
    dir,
    cleanup: async () => {
      try {
        // VMs first: their finalizer needs a running operator, so force it off when none is left.
        const names = cluster.kubectl(['get', 'virtualmachines', '-n', namespace, '-o', 'name']).split('\n').filter((l) => l !== '');
        for (const name of names) {
          cluster.kubectl(['patch', '-n', namespace, name, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
        }
        cluster.kubectl(['delete', 'pods', '--all', '-n', namespace, '--force', '--grace-period=0', '--ignore-not-found']);
        cluster.kubectl(['delete', 'namespace', namespace, '--wait=false', '--ignore-not-found']);
        cluster.kubectl(['delete', 'persistentvolume', '-l', `${TEST_RUN_LABEL}=${runId}`, '--wait=false', '--ignore-not-found']);
        // The suite's operator lease (operators of a suite use keyvirt-e2e-<runId>).
        cluster.kubectl(['delete', 'lease', `keyvirt-e2e-${runId}`, '-n', 'keyvirt-system', '--ignore-not-found']);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
  const guest = await testGuest();
  await claimVolume(cluster, s, GUEST_BOOT_CLAIM, async (volumeDir) => {
    await copyBootDisk(guest, path.join(volumeDir, 'disk.img'), 'raw');
  });
  return s;
}

/** A hostPath PersistentVolume (ReadWriteMany) over a fresh directory that `fill` writes, bound to claim `claimName`. */
async function claimVolume(cluster: TestCluster, s: Scratch, claimName: string, fill: (volumeDir: string) => Promise<void>): Promise<string> {
  const volumeDir = path.join(s.dir, claimName);
  await mkdir(volumeDir, { recursive: true });
  await fill(volumeDir);
  const pvName = `${s.namespace}-${claimName}`;
  const manifests = [
    {
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name: pvName, labels: { [TEST_RUN_LABEL]: s.runId } },
      spec: {
        capacity: { storage: '64Mi' },
        accessModes: ['ReadWriteMany'],
        persistentVolumeReclaimPolicy: 'Retain',
        storageClassName: '',
        hostPath: { path: volumeDir, type: 'Directory' },
        claimRef: { namespace: s.namespace, name: claimName },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name: claimName, namespace: s.namespace },
      spec: { accessModes: ['ReadWriteMany'], storageClassName: '', volumeName: pvName, resources: { requests: { storage: '64Mi' } } },
    },
  ];
  cluster.kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: manifests }));
  await eventually(
    `claim ${claimName} bound`,
    () => (cluster.kubectl(['get', 'pvc', claimName, '-n', s.namespace, '-o', 'jsonpath={.status.phase}']) === 'Bound' ? true : undefined),
    60_000,
  );
  return volumeDir;
}

/** A blank raw disk image (64 MiB) on a hostPath PersistentVolume, bound to claim `claimName` in the namespace. */
export async function pvcDisk(cluster: TestCluster, s: Scratch, claimName: string): Promise<string> {
  let image = '';
  await claimVolume(cluster, s, claimName, async (volumeDir) => {
    image = await createBlankDisk(volumeDir, { format: 'raw', name: 'disk.img', sizeMiB: 64 });
  });
  return image;
}

export interface VmOptions {
  name: string;
  runStrategy?: 'Always' | 'RerunOnFailure' | 'Manual' | 'Halted' | 'Once';
  memory?: string;
  claimName?: string;
  storageDomain?: string;
}

/** The test guest's boot disk as a VM lists it: the scratch namespace's read-only claim, first in the boot order. */
export const GUEST_BOOT_DISK = { name: 'boot', bootOrder: 1, readOnly: true, persistentVolumeClaim: { claimName: GUEST_BOOT_CLAIM } } as const;

/**
 * A VM that boots the test guest from its disk (the firmware, then syslinux), with a masquerade NIC
 * and the guest agent. The guest's counter goes to the first writable blank disk (`claimName`'s).
 */
export function testVm(s: Scratch, _guest: TestGuest, o: VmOptions): VirtualMachineInput {
  const disks: NonNullable<VirtualMachineInput['spec']['template']['disks']> = [{ ...GUEST_BOOT_DISK }];
  if (o.claimName !== undefined) disks.push({ name: 'data', persistentVolumeClaim: { claimName: o.claimName } });
  if (o.storageDomain !== undefined) disks.push({ name: 'root', storageDomain: { name: o.storageDomain, size: '64Mi', format: 'raw' } });
  return {
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: {
      name: o.name,
      namespace: s.namespace,
      labels: { [TEST_RUN_LABEL]: s.runId },
    },
    spec: {
      runStrategy: o.runStrategy ?? 'Always',
      terminationGracePeriodSeconds: 30,
      template: {
        cpu: { model: 'host-model', sockets: 1, cores: 1, threads: 1 },
        memory: { size: o.memory ?? '256Mi' },
        disks,
        interfaces: [{ name: 'default', binding: 'masquerade' }],
        guestAgent: true,
        allowEmulation: true,
      },
    },
  };
}

export function apply(cluster: TestCluster, manifest: unknown): void {
  cluster.kubectl(['apply', '-f', '-'], JSON.stringify(manifest));
}

export function getVm(cluster: TestCluster, namespace: string, name: string): VirtualMachine | undefined {
  const out = cluster.kubectl(['get', 'virtualmachine', name, '-n', namespace, '-o', 'json', '--ignore-not-found']);
  return out.trim() === '' ? undefined : VirtualMachine.parse(JSON.parse(out));
}

const podList = z.object({
  items: z.array(
    z.object({
      metadata: z.object({ name: z.string(), uid: z.string(), deletionTimestamp: z.string().optional(), labels: z.record(z.string(), z.string()).optional() }),
      spec: z.object({ nodeName: z.string().optional() }),
      status: z.object({ phase: z.string().optional(), podIP: z.string().optional() }).optional(),
    }),
  ),
});
export type LauncherPod = z.infer<typeof podList>['items'][number];

export function launcherPods(cluster: TestCluster, namespace: string, vmName: string): LauncherPod[] {
  const out = cluster.kubectl(['get', 'pods', '-n', namespace, '-l', `keyvirt.io/vm=${vmName}`, '-o', 'json']);
  return podList.parse(JSON.parse(out)).items;
}

/** Waits until the VM satisfies `ok` (returns it); the message names the last phase seen. */
export async function waitVm(
  cluster: TestCluster,
  ref: { namespace: string; name: string },
  what: string,
  ok: (vm: VirtualMachine) => boolean,
  timeoutMs = 300_000,
): Promise<VirtualMachine> {
  const { namespace, name } = ref;
  let last: string | undefined;
  try {
    return await eventually(
      `VM ${name} ${what}`,
      () => {
        const vm = getVm(cluster, namespace, name);
        last = vm === undefined ? 'gone' : `${vm.status?.phase ?? 'no status'} (${vm.status?.conditions?.find((c) => c.type === 'Ready')?.message ?? ''})`;
        return vm !== undefined && ok(vm) ? vm : undefined;
      },
      timeoutMs,
      1000,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last seen: ${last ?? 'nothing'}`, { cause: err });
  }
}

export function condition(vm: VirtualMachine, type: string): { status: string; reason: string; message: string } | undefined {
  return vm.status?.conditions?.find((c) => c.type === type);
}

/** Events about an object, as `reason: note` lines. */
export function eventsFor(cluster: TestCluster, namespace: string, name: string): string[] {
  const out = cluster.kubectl(['get', 'events.events.k8s.io', '-n', namespace, '--field-selector', `regarding.name=${name}`, '-o', 'json']);
  const list = z.object({ items: z.array(z.object({ reason: z.string().optional(), note: z.string().optional() })) }).parse(JSON.parse(out));
  return list.items.map((e) => `${e.reason ?? ''}: ${e.note ?? ''}`);
}
