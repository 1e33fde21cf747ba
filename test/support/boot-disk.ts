// Disk claims for VMs whose launcher pods may not mount host directories (a namespace at
// Pod Security `baseline` refuses hostPath volumes): a raw image — the test guest's
// bootable disk (hack/guest/build.sh) or a blank one — on a ReadWriteMany hostPath
// PersistentVolume, so the pod sees only its claim.
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { eventually, type TestCluster } from './cluster.ts';
import { copyBootDisk, type TestGuest } from './guest.ts';

const run = promisify(execFile);
/** Size of a blank disk and of the claim (the boot disk is 64 MiB). */
const DISK_MIB = 64;

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
  if (o.boot !== undefined) await copyBootDisk(o.boot, image, 'raw');
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
