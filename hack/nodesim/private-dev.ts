// A container's private /dev. Containers here see the node's root filesystem (with
// private mounts), so creating a mount point under /dev — the termination-message
// file at /dev/termination-log, say — would write into the node's real /dev. Instead
// the container gets what a container runtime gives it: its own writable /dev, here
// an overlay whose lower layer is the node's /dev (so every device node stays) and
// whose upper layer is a tmpfs private to the container, with the node's /dev
// submounts (pts, shm, mqueue, ...) bound back in. Everything happens inside the
// container's mount namespace and disappears with it.
import fs from 'node:fs';
import path from 'node:path';

export interface PrivateDev {
  /** An empty directory on the node; a tmpfs staging area is mounted there (inside the container only). */
  readonly stageDir: string;
  /** Mount points directly under /dev to bind back into the overlay, e.g. /dev/pts. */
  readonly submounts: readonly string[];
}

function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** The outermost mount points below /dev in a /proc/<pid>/mountinfo text, sorted. */
export function devSubmounts(mountinfo: string): string[] {
  const points = new Set<string>();
  for (const line of mountinfo.split('\n')) {
    const field = line.split(' ')[4];
    if (field === undefined) continue;
    const point = unescapeMountinfo(field);
    if (point.startsWith('/dev/')) points.add(point);
  }
  const out: string[] = [];
  for (const point of [...points].sort()) {
    if (!out.some((p) => point.startsWith(`${p}/`))) out.push(point);
  }
  return out;
}

/** Whether any of `targets` is a mount point that would have to be created under /dev. */
export function needsPrivateDev(targets: readonly string[], exists: (p: string) => boolean = fs.existsSync): boolean {
  return targets.some((t) => {
    const normal = path.posix.normalize(t);
    return normal.startsWith('/dev/') && !exists(normal);
  });
}

/** The node's /dev submounts as this process sees them. */
export function nodeDevSubmounts(): string[] {
  return devSubmounts(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

/** Shell lines (host tools by absolute path) that give the container its private /dev. */
export function privateDevScript(dev: PrivateDev): string[] {
  const stage = shellQuote(dev.stageDir);
  const at = (sub: string): string => shellQuote(path.posix.join(dev.stageDir, sub));
  const lines = [
    `/usr/bin/mount -t tmpfs -o mode=0700,size=16m keyvirt-dev ${stage}`,
    `/usr/bin/mkdir ${at('node')} ${at('upper')} ${at('work')}`,
    `/usr/bin/mount --rbind /dev ${at('node')}`,
    `/usr/bin/mount -t overlay -o ${shellQuote(`lowerdir=${path.posix.join(dev.stageDir, 'node')},upperdir=${path.posix.join(dev.stageDir, 'upper')},workdir=${path.posix.join(dev.stageDir, 'work')}`)} keyvirt-dev /dev`,
    '/usr/bin/chmod 0755 /dev',
  ];
  for (const sub of dev.submounts) {
    lines.push(`/usr/bin/mount --rbind ${at(path.posix.join('node', path.posix.relative('/dev', sub)))} ${shellQuote(sub)}`);
  }
  // The staging area leaves the container's view; the overlay keeps what it uses.
  lines.push(`/usr/bin/umount -l ${stage}`);
  return lines;
}
