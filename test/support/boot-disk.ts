// A bootable raw disk of the test guest, for VMs whose launcher pods may not mount
// host directories: a namespace at Pod Security `baseline` refuses the hostPath
// volumes of a direct kernel boot (the `keyvirt.io/kernel-boot` annotation). The disk
// is a FAT file system holding the Debian kernel's bzImage (`vmlinuz`, the same kernel
// as the guest's ELF `vmlinux`), the guest's initramfs and a SYSLINUX configuration
// with the guest's command line, behind SYSLINUX's boot sector; SeaBIOS boots it from
// the VM's first disk. Built once per guest build (hack/.cache/boot-disk/<guest hash>),
// copied for each VM, and handed to the VM as a PersistentVolumeClaim.
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { eventually, type TestCluster } from './cluster.ts';
import type { TestGuest } from './guest.ts';

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '..', '..');
const cacheRoot = path.join(repoRoot, 'hack/.cache/boot-disk');
/** The disk's size: kernel and initramfs take ~15 MiB. */
const DISK_MIB = 64;

export class BootDiskError extends Error {
  override readonly name = 'BootDiskError';
}

/** The bzImage of the guest's kernel, from the Debian package hack/guest unpacked. */
async function guestVmlinuz(guest: TestGuest): Promise<string> {
  const packages = path.join(repoRoot, 'hack/.cache/guest/kernel');
  const want = `vmlinuz-${guest.kernelRelease}`;
  for (const dir of await readdir(packages)) {
    const candidate = path.join(packages, dir, 'pkg/boot', want);
    if ((await stat(candidate).catch(() => undefined))?.isFile() === true) return candidate;
  }
  throw new BootDiskError(`no ${want} under ${packages} (hack/guest/build.sh unpacks the kernel package there)`);
}

function syslinuxConfig(cmdline: string): string {
  return ['DEFAULT guest', 'PROMPT 0', 'TIMEOUT 0', 'LABEL guest', '  KERNEL vmlinuz', '  INITRD initrd.gz', `  APPEND ${cmdline}`, ''].join('\n');
}

let cached: Promise<string> | undefined;

async function build(guest: TestGuest): Promise<string> {
  const dir = path.join(cacheRoot, guest.hash);
  const disk = path.join(dir, 'boot.raw');
  if ((await stat(disk).catch(() => undefined))?.isFile() === true) return disk;
  await mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `boot.raw.tmp-${process.pid}`);
  const config = path.join(dir, `syslinux.cfg.tmp-${process.pid}`);
  try {
    await rm(tmp, { force: true });
    await run('mkfs.vfat', ['-C', '-n', 'KVBOOT', tmp, String(DISK_MIB * 1024)]);
    await writeFile(config, syslinuxConfig(guest.cmdline));
    await run('mcopy', ['-i', tmp, await guestVmlinuz(guest), '::vmlinuz']);
    await run('mcopy', ['-i', tmp, guest.initrd, '::initrd.gz']);
    await run('mcopy', ['-i', tmp, config, '::syslinux.cfg']);
    await run('syslinux', ['--install', tmp]);
    await rename(tmp, disk);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new BootDiskError(`building the boot disk in ${dir} failed (mkfs.vfat, mtools, syslinux): ${(err as Error).message}`, { cause: err });
  } finally {
    await rm(config, { force: true });
  }
  return disk;
}

/** The cached bootable disk of the test guest (built on first use, well under a second after). */
export function guestBootDisk(guest: TestGuest): Promise<string> {
  cached ??= build(guest).catch((err: unknown) => {
    cached = undefined;
    throw err;
  });
  return cached;
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
  if (o.boot !== undefined) await copyFile(await guestBootDisk(o.boot), image);
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
