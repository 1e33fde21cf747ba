// Disk claims for VMs whose launcher pods may not mount host directories: a namespace
// at Pod Security `baseline` refuses the hostPath volumes of a direct kernel boot (the
// `keyvirt.io/kernel-boot` annotation) and of posix domains. The test guest's bootable
// disk (hack/guest/build.sh: syslinux, the compressed kernel and the same initramfs and
// command line) is copied as a raw image onto a ReadWriteMany hostPath
// PersistentVolume — the pod sees only its claim — and SeaBIOS boots it.
import { execFile } from 'node:child_process';
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { eventually, type TestCluster } from './cluster.ts';
import type { TestGuest } from './guest.ts';

const run = promisify(execFile);
/** Size of a blank disk (the boot disk keeps its own, 64 MiB). */
const DISK_MIB = 64;

export class BootDiskError extends Error {
  override readonly name = 'BootDiskError';
}

/** The test guest's bootable disk (qcow2) from its build directory. */
export async function guestBootDisk(guest: TestGuest): Promise<string> {
  const disk = path.join(guest.dir, 'disk.qcow2');
  if ((await stat(disk).catch(() => undefined))?.isFile() !== true) throw new BootDiskError(`the test guest build ${guest.dir} has no disk.qcow2 (hack/guest/build.sh makes it)`);
  return disk;
}

export interface ClaimOptions {
  /** The claim's namespace. */
  readonly namespace: string;
  readonly claimName: string;
  /** The directory the PersistentVolume's hostPath points at (created). */
  readonly volumeDir: string;
  /** Labels of the PersistentVolume (how the suite finds it to clean up). */
  readonly labels: Readonly<Record<string, string>>;
  /** Copy the test guest's boot disk in (`disk.img`); otherwise a blank raw disk. */
  readonly boot?: TestGuest;
  readonly sizeMiB?: number;
}

/**
 * A ReadWriteMany hostPath PersistentVolume with `disk.img` in it (bootable or blank),
 * bound to a claim of that name; resolves with the image's host path once Bound.
 */
export async function diskClaim(cluster: TestCluster, o: ClaimOptions): Promise<string> {
  await mkdir(o.volumeDir, { recursive: true });
  const image = path.join(o.volumeDir, 'disk.img');
  if (o.boot !== undefined) await run('qemu-img', ['convert', '-q', '-f', 'qcow2', '-O', 'raw', await guestBootDisk(o.boot), image]);
  else await run('qemu-img', ['create', '-q', '-f', 'raw', image, `${o.sizeMiB ?? DISK_MIB}M`]);
  const size = `${o.sizeMiB ?? DISK_MIB}Mi`;
  const pvName = `${o.namespace}-${o.claimName}`;
  const list = {
    apiVersion: 'v1',
    kind: 'List',
    items: [
      {
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: { name: pvName, labels: o.labels },
        spec: {
          capacity: { storage: size },
          accessModes: ['ReadWriteMany'],
          persistentVolumeReclaimPolicy: 'Retain',
          storageClassName: '',
          hostPath: { path: o.volumeDir, type: 'Directory' },
          claimRef: { namespace: o.namespace, name: o.claimName },
        },
      },
      {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: o.claimName, namespace: o.namespace },
        spec: { accessModes: ['ReadWriteMany'], storageClassName: '', volumeName: pvName, resources: { requests: { storage: size } } },
      },
    ],
  };
  cluster.kubectl(['apply', '-f', '-'], JSON.stringify(list));
  await eventually(
    `claim ${o.claimName} bound`,
    () => (cluster.kubectl(['get', 'pvc', o.claimName, '-n', o.namespace, '-o', 'jsonpath={.status.phase}']) === 'Bound' ? true : undefined),
    60_000,
  );
  return image;
}
