// How launch() reaches a VM's files and sockets: as the pod's own process (the paths of
// its configuration, as they are) or from outside the pod (ADRs 0130-0132), where the
// configuration's paths are the pod's and QEMU, in the pod, still opens them:
//   - the state directory is walked from the pod's root and held (pod-root.ts); the
//     launcher names its files through the held descriptor, QEMU by the pod's path;
//   - a disk's cache mode is probed through its held directory, the disk opened without
//     following a link;
//   - QEMU's sockets are connected through the held directory after lstat shows a
//     socket there, not a link (connect() itself would follow one: ADR 0132);
//   - the API listens in the pod's network namespace (netns-listen.ts);
//   - an HA VM's lease file and the disks a takeover fences are named through their
//     directories, held for the VM's life (ADR 0136); the lease is opened with
//     O_NOFOLLOW and the disk fence refuses anything but a regular file;
//   - an outgoing migration's TLS files go to a private directory of the held state
//     directory, never through a link (ADR 0137).
import { constants, lstatSync } from 'node:fs';
import { mkdir, rm, rmdir } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import type { LauncherConfig } from '../api/config.ts';
import type { ApiServer } from '../http/server.ts';
import type { DiskCacheMode } from '../qemu/command-line.ts';
import type { TlsStaging } from '../migration/tls.ts';
import { probeDiskCacheMode } from '../qemu/disk-cache.ts';
import { listenInNetns } from './netns-listen.ts';
import type { PodDirectory, PodRoot } from './pod-root.ts';

export class OutsidePodError extends Error {
  override name = 'OutsidePodError';
}

/** A pod whose launcher work runs outside it: its root and its network namespace. */
export interface OutsidePod {
  /** The pod's root, held (`/proc/<pid>/root` of a process in the pod). */
  readonly root: PodRoot;
  /** `/proc/<pid>/ns/net` of a process in the pod. */
  readonly netns: string;
}

export interface LaunchView {
  /** The state directory as this process names it. */
  readonly stateDir: string;
  /** `stateDir`'s file `name` as QEMU names it. */
  readonly qemuPath: (seenPath: string) => string;
  probeDisk(podPath: string): Promise<DiskCacheMode>;
  /**
   * A file of the pod as this process names it: through its directory, held until
   * `close` (the file itself must be opened without following a link).
   */
  seenPath(podPath: string): Promise<string>;
  /** Where a migration's TLS files are written for QEMU (outside the pod: in its state directory). */
  readonly tlsStaging: TlsStaging | undefined;
  /** Opens one of QEMU's sockets in the state directory. */
  readonly connect: ((seenPath: string) => net.Socket) | undefined;
  listen(server: ApiServer, host: string, port: number): Promise<AddressInfo>;
  close(): Promise<void>;
}

/** The launcher in the pod: every path is its own. */
export function insideView(config: LauncherConfig): LaunchView {
  return {
    stateDir: config.stateDir,
    qemuPath: (p) => p,
    probeDisk: probeDiskCacheMode,
    seenPath: (p) => Promise.resolve(p),
    tlsStaging: undefined,
    connect: undefined,
    listen: (server, host, port) => server.listen(port, host),
    close: () => Promise.resolve(),
  };
}

/** What a launcher outside the pod cannot do yet; refused before anything starts. */
export function outsideRefusal(config: LauncherConfig): string | undefined {
  if (config.qemu.host !== 'pod') return 'qemu.host must be "pod" for a launcher outside the pod';
  if (config.mode === 'migration-target') return 'a migration target needs its launcher in the pod';
  const iface = config.template.interfaces.find((i) => i.binding === 'bridge' || config.interfaces[i.name]?.podNetwork === true);
  if (iface !== undefined) return `interface ${iface.name} (tap device, pod network) needs its launcher in the pod`;
  return undefined;
}

/**
 * A migration's TLS files in the pod's held state directory (ADR 0137): a new directory
 * of a random name (mkdir never follows a link in its last component), held without
 * following one, its files created O_EXCL | O_NOFOLLOW, then all removed once QEMU has
 * loaded them. QEMU, in the pod, names the directory by the pod's path.
 */
export function podTlsStaging(state: PodDirectory): TlsStaging {
  return {
    stage: async (endpoint, files) => {
      const name = `migration-tls-${endpoint}-${process.getBuiltinModule('node:crypto').randomBytes(8).toString('hex')}`;
      await mkdir(state.entry(name), { mode: 0o700 });
      let dir: PodDirectory | undefined;
      const remove = async (): Promise<void> => {
        if (dir !== undefined) {
          for (const file of files.keys()) await rm(dir.entry(file), { force: true });
          await dir.close();
        }
        await rmdir(state.entry(name)).catch(() => undefined);
      };
      try {
        dir = await state.directory(name);
        for (const [file, pem] of files) {
          const handle = await dir.openFile(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
          try {
            await handle.writeFile(pem);
          } finally {
            await handle.close();
          }
        }
      } catch (err) {
        await remove();
        throw err;
      }
      return { dir: state.inPod(name), remove };
    },
  };
}

/** Connects to a socket of the held state directory once lstat shows a socket there, not a link. */
function checkedConnect(seenPath: string): net.Socket {
  const stat = lstatSync(seenPath, { throwIfNoEntry: false });
  if (stat !== undefined && !stat.isSocket()) throw new OutsidePodError(`${path.basename(seenPath)} in the pod's state directory is not a socket`);
  return net.createConnection(seenPath);
}

export async function outsideView(config: LauncherConfig, pod: OutsidePod): Promise<LaunchView> {
  const refusal = outsideRefusal(config);
  if (refusal !== undefined) throw new OutsidePodError(refusal);
  const state: PodDirectory = await pod.root.directory(config.stateDir);
  const seen = state.descriptorPath;
  const held: PodDirectory[] = [];
  return {
    stateDir: seen,
    qemuPath: (p) => {
      const rel = path.relative(seen, p);
      if (rel.startsWith('..') || path.isAbsolute(rel)) throw new OutsidePodError(`${p} is outside the pod's state directory`);
      return path.posix.join(config.stateDir, rel);
    },
    probeDisk: async (podPath) => {
      const dir = await pod.root.directory(path.posix.dirname(podPath));
      try {
        return await probeDiskCacheMode(dir.entry(path.posix.basename(podPath)), constants.O_NOFOLLOW);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new OutsidePodError(`the pod's disk ${podPath} ${code === 'ELOOP' ? 'is a symbolic link' : `cannot be opened (${code ?? String(err)})`}`, { cause: err });
      } finally {
        await dir.close();
      }
    },
    seenPath: async (podPath) => {
      const dir = await pod.root.directory(path.posix.dirname(podPath));
      held.push(dir);
      return dir.entry(path.posix.basename(podPath));
    },
    tlsStaging: podTlsStaging(state),
    connect: checkedConnect,
    listen: async (server, host, port) => server.listenOn(await listenInNetns({ netns: pod.netns, host, port })),
    close: async () => {
      for (const dir of held.splice(0)) await dir.close();
      await state.close();
    },
  };
}
