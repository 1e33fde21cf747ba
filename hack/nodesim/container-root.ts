// A container's own root filesystem and privileges, as a container runtime gives them.
// There are no images here, so the root is assembled from the node: a tmpfs with the
// node's system directories (/usr, /etc, …) and the image's own directories bound
// read-only, node state hidden behind empty tmpfs, node directories the image carries
// at a path of its own bound there (the launcher build at /opt/keyvirt), a fresh /proc
// (with /proc/sys and friends read-only), /sys read-only, a minimal /dev (null, zero, full, random, urandom,
// tty, a private devpts and shm: no disks, no /dev/kvm unless a volume brings it), then
// the volumes at their mount paths, and pivot_root into it, so nothing of the node is
// reachable but what the pod spec mounts. The container's argv then runs under setpriv
// with the capabilities, no_new_privs and user the securityContext asks for. Privileged
// containers see the node's /dev (through an overlay of their own), a writable /sys and
// every capability.
// What is not applied: seccomp profiles (no filter is loaded), AppArmor/SELinux, user
// namespaces; see docs/adr/0108.
/* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- client-node models are plain JSON data; literals are how the API is used */
import fs from 'node:fs';
import path from 'node:path';
import type { V1Container, V1Pod } from '@kubernetes/client-node';

/** containerd's default capability set for a container that asks for nothing else. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'chown', 'dac_override', 'fsetid', 'fowner', 'mknod', 'net_raw', 'setgid', 'setuid', 'setfcap', 'setpcap',
  'net_bind_service', 'sys_chroot', 'kill', 'audit_write',
];

/** The node's system directories every image gets (a symlink such as /bin → usr/bin is copied as a symlink). */
export const SYSTEM_PATHS: readonly string[] = ['/usr', '/etc', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/opt'];

const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'] as const;
/** runc's read-only /proc paths. */
const READ_ONLY_PROC = ['bus', 'fs', 'irq', 'sys', 'sysrq-trigger'] as const;

export class ContainerSecurityError extends Error {
  override readonly name = 'ContainerSecurityError';
}

export interface ContainerSecurity {
  readonly privileged: boolean;
  /** Capabilities the process keeps (lower case, without the cap_ prefix); undefined keeps every one. */
  readonly capabilities: readonly string[] | undefined;
  readonly noNewPrivs: boolean;
  readonly readOnlyRoot: boolean;
  readonly runAsUser: number | undefined;
  readonly runAsGroup: number | undefined;
}

function capabilityName(name: string): string {
  const lower = name.toLowerCase();
  const bare = lower.startsWith('cap_') ? lower.slice(4) : lower;
  if (!/^[a-z_]+$/.test(bare)) throw new ContainerSecurityError(`capability ${name} is not a capability name`);
  return bare;
}

/** The effective security settings of a container (container fields over pod fields, as the kubelet merges them). */
export function containerSecurity(pod: V1Pod, container: V1Container): ContainerSecurity {
  const podSc = pod.spec?.securityContext ?? {};
  const sc = container.securityContext ?? {};
  const privileged = sc.privileged === true;
  const runAsUser = sc.runAsUser ?? podSc.runAsUser;
  const runAsGroup = sc.runAsGroup ?? podSc.runAsGroup;
  if ((sc.runAsNonRoot ?? podSc.runAsNonRoot) === true && (runAsUser ?? 0) === 0) {
    throw new ContainerSecurityError(`container ${container.name} has runAsNonRoot and would run as root`);
  }
  let capabilities: string[] | undefined;
  if (!privileged) {
    const drop = (sc.capabilities?.drop ?? []).map(capabilityName);
    const add = (sc.capabilities?.add ?? []).map(capabilityName);
    const kept = drop.includes('all') ? [] : DEFAULT_CAPABILITIES.filter((c) => !drop.includes(c));
    capabilities = [...new Set([...kept, ...(add.includes('all') ? ['all'] : add)])];
  }
  return {
    privileged,
    capabilities: capabilities?.includes('all') === true ? undefined : capabilities,
    // Kubernetes: allowPrivilegeEscalation defaults to true; false sets no_new_privs.
    noNewPrivs: !privileged && sc.allowPrivilegeEscalation === false,
    readOnlyRoot: sc.readOnlyRootFilesystem === true,
    runAsUser,
    runAsGroup,
  };
}

/** The setpriv arguments that apply `security` to the exec'd process (empty for a privileged root container). */
export function setprivArgs(security: ContainerSecurity): string[] {
  const args: string[] = [];
  if (security.capabilities !== undefined) {
    const list = ['-all', ...security.capabilities.map((c) => `+${c}`)].join(',');
    args.push(`--bounding-set=${list}`, `--inh-caps=${list}`);
  }
  if (security.noNewPrivs) args.push('--no-new-privs');
  if (security.runAsGroup !== undefined) args.push(`--regid=${security.runAsGroup}`);
  if (security.runAsUser !== undefined) {
    args.push(`--reuid=${security.runAsUser}`);
    if (security.runAsGroup === undefined) args.push(`--regid=${security.runAsUser === 0 ? 0 : security.runAsUser}`);
    args.push('--clear-groups');
  }
  return args;
}

export interface ContainerRoot {
  /** An empty directory on the node; the root tmpfs is mounted there (inside the container only). */
  readonly dir: string;
  /** Node directories the image provides, bound read-only at the same path, in order. */
  readonly imagePaths: readonly string[];
  /** Paths inside those hidden behind an empty tmpfs (node state no image carries). */
  readonly hiddenPaths: readonly string[];
  /** Image paths bound again after hiding (image content kept inside a hidden path). */
  readonly revealedPaths: readonly string[];
  /** Node directories bound read-only at an image path of their own, after the revealed paths. */
  readonly imageBinds?: readonly ImageBind[] | undefined;
}

/** A node directory an image carries at another path (`source` bound read-only at `target`). */
export interface ImageBind {
  readonly source: string;
  /** An absolute path in the container. */
  readonly target: string;
}

export function shellQuote(text: string): string {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

/** `ls -l`-style existence on the node, injected for tests. */
export interface NodeFs {
  kind(p: string): 'dir' | 'file' | 'symlink' | 'missing';
  readlink(p: string): string;
  /** A directory's entry names, sorted. */
  entries(p: string): string[];
}

export const nodeFs: NodeFs = {
  kind: (p) => {
    try {
      const st = fs.lstatSync(p);
      return st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : 'file';
    } catch {
      return 'missing';
    }
  },
  readlink: (p) => fs.readlinkSync(p),
  entries: (p) => fs.readdirSync(p).sort(),
};

/**
 * A privileged container's /dev: the node's, as an overlay whose upper layer is a tmpfs of
 * its own, with the node's /dev submounts (pts, shm, mqueue …) bound in. Every device node
 * opens as on the node, but what the container or its mounts create there (the
 * /dev/termination-log mount point) stays in the container: with the node's /dev bound
 * directly, that file appeared in the node's own /dev.
 */
function privilegedDevLines(dev: string): string[] {
  return [
    `/usr/bin/mount -t tmpfs -o mode=0755,size=1m keyvirt-dev-upper ${dev}`,
    `/usr/bin/mkdir ${dev}/.upper ${dev}/.work`,
    `/usr/bin/mount -t overlay -o lowerdir=/dev,upperdir=${dev}/.upper,workdir=${dev}/.work keyvirt-dev ${dev}`,
    `d=${dev}; while read -r _ _ _ _ mp _; do case "$mp" in /dev/*/*) ;; /dev/*) /usr/bin/mount --rbind "$mp" "$d\${mp#/dev}" ;; esac; done < /proc/self/mountinfo`,
  ];
}

/**
 * Shell lines (host tools by absolute path, run before pivot_root) that assemble the
 * root under `root.dir`. `ro` is a shell function the init script defines (read-only
 * recursive bind).
 * An image bind's mount point inside a node directory bound whole (/opt/keyvirt in
 * /opt) where the node has no such directory could be made neither in the read-only
 * bind nor, without it, in the node's own directory: that directory is assembled entry
 * by entry instead (a directory of the root's tmpfs with each node entry bound in it),
 * and the mount point made on the tmpfs.
 */
export function rootAssemblyScript(root: ContainerRoot, privileged: boolean, node: NodeFs = nodeFs): string[] {
  const r = (p: string): string => shellQuote(path.posix.join(root.dir, p));
  const lines = [
    `/usr/bin/mount -t tmpfs -o mode=0755,size=256m keyvirt-root ${shellQuote(root.dir)}`,
  ];
  const imageBinds = (root.imageBinds ?? []).map((b) => {
    if (!path.posix.isAbsolute(b.target)) throw new Error(`image bind target ${b.target} is not an absolute path`);
    return { source: b.source, target: path.posix.normalize(b.target).replace(/(?<=.)\/$/, '') };
  });
  const targets = new Set(imageBinds.map((b) => b.target));
  const holdsNewMountPoint = (dir: string): boolean => imageBinds.some((b) => b.target.startsWith(`${dir}/`) && node.kind(b.target) !== 'dir');
  const bind = (p: string): void => {
    const kind = node.kind(p);
    if (kind === 'missing') return;
    if (kind === 'symlink') {
      lines.push(`/usr/bin/mkdir -p ${shellQuote(path.posix.dirname(path.posix.join(root.dir, p)))}`, `/usr/bin/ln -sfn ${shellQuote(node.readlink(p))} ${r(p)}`);
      return;
    }
    if (kind === 'dir' && holdsNewMountPoint(p)) {
      lines.push(`/usr/bin/mkdir -p ${r(p)}`);
      for (const entry of node.entries(p)) {
        const child = path.posix.join(p, entry);
        if (!targets.has(child)) bind(child);
      }
      return;
    }
    lines.push(kind === 'dir' ? `/usr/bin/mkdir -p ${r(p)}` : `/usr/bin/mkdir -p "$(/usr/bin/dirname ${r(p)})"; : > ${r(p)}`);
    lines.push(`ro ${shellQuote(p)} ${r(p)}`);
  };
  for (const p of [...SYSTEM_PATHS, ...root.imagePaths]) bind(p);
  for (const p of root.hiddenPaths) {
    if (node.kind(p) === 'dir') lines.push(`/usr/bin/mount -t tmpfs -o mode=0755,size=16m keyvirt-hidden ${r(p)}`);
  }
  for (const p of root.revealedPaths) {
    if (node.kind(p) === 'missing') continue;
    lines.push(`/usr/bin/mkdir -p ${r(p)}`, `ro ${shellQuote(p)} ${r(p)}`);
  }
  for (const b of imageBinds) lines.push(`/usr/bin/mkdir -p ${r(b.target)}`, `ro ${shellQuote(b.source)} ${r(b.target)}`);
  lines.push(`/usr/bin/mkdir -p ${['proc', 'sys', 'dev', 'tmp', 'run', 'root', 'var/tmp'].map(r).join(' ')}`);
  lines.push(`/usr/bin/chmod 1777 ${r('tmp')} ${r('var/tmp')}`);
  lines.push(`/usr/bin/mount -t proc -o nosuid,nodev,noexec proc ${r('proc')}`);
  if (privileged) {
    lines.push(`/usr/bin/mount --rbind /sys ${r('sys')}`, ...privilegedDevLines(r('dev')));
    return lines;
  }
  for (const p of READ_ONLY_PROC) lines.push(`if [ -e ${r(`proc/${p}`)} ]; then /usr/bin/mount --bind ${r(`proc/${p}`)} ${r(`proc/${p}`)}; /usr/bin/mount -o remount,bind,ro ${r(`proc/${p}`)}; fi`);
  lines.push(`ro /sys ${r('sys')}`);
  lines.push(`/usr/bin/mount -t tmpfs -o mode=0755,size=64k,nosuid keyvirt-dev ${r('dev')}`);
  for (const d of DEVICES) lines.push(`: > ${r(`dev/${d}`)}`, `/usr/bin/mount --bind /dev/${d} ${r(`dev/${d}`)}`);
  lines.push(
    `/usr/bin/mkdir ${r('dev/pts')} ${r('dev/shm')}`,
    `/usr/bin/mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts ${r('dev/pts')}`,
    `/usr/bin/ln -s pts/ptmx ${r('dev/ptmx')}`,
    `/usr/bin/mount -t tmpfs -o mode=1777,size=64m,nosuid,nodev shm ${r('dev/shm')}`,
    `/usr/bin/ln -s /proc/self/fd ${r('dev/fd')}`,
    `/usr/bin/ln -s /proc/self/fd/0 ${r('dev/stdin')}`,
    `/usr/bin/ln -s /proc/self/fd/1 ${r('dev/stdout')}`,
    `/usr/bin/ln -s /proc/self/fd/2 ${r('dev/stderr')}`,
  );
  return lines;
}

/** The shell function `ro SOURCE TARGET`: a recursive bind whose every mount is read-only. */
export const READ_ONLY_BIND_FUNCTION = [
  'ro() {',
  '  /usr/bin/mount --rbind "$1" "$2"',
  // Every mount at or below the target, deepest last (mountinfo field 5; escapes such as \\040 are kept as they are).
  '  for m in $(/usr/bin/awk -v p="$2" \'$5 == p || index($5, p "/") == 1 { print $5 }\' /proc/self/mountinfo); do',
  '    /usr/bin/mount -o remount,bind,ro "$m" || { echo "keyvirt-nodesim: cannot make $m read-only" >&2; exit 126; }',
  '  done',
  '}',
];

/** Shell lines that switch into the assembled root (after the volumes are mounted in it). */
export function pivotScript(root: ContainerRoot, readOnlyRoot: boolean): string[] {
  const lines = [
    `cd ${shellQuote(root.dir)}`,
    '/usr/bin/mkdir .keyvirt-old-root',
    '/usr/sbin/pivot_root . .keyvirt-old-root',
    'cd /',
    '/usr/bin/umount -l /.keyvirt-old-root',
    '/usr/bin/rmdir /.keyvirt-old-root',
  ];
  if (readOnlyRoot) lines.push('/usr/bin/mount -o remount,bind,ro /');
  return lines;
}
