// Post-copy readiness of a node. A post-copy migration's target QEMU registers the
// guest's memory with userfaultfd(2); QEMU 7.2 calls the syscall (it does not open
// /dev/userfaultfd), which the kernel refuses with EPERM to a process without
// CAP_SYS_PTRACE while the sysctl vm.unprivileged_userfaultfd is 0. Launcher pods drop
// every capability (docs/adr/0108), so a node can be a post-copy target only with the
// sysctl at 1. When allowed to (an explicit chart value), the agent sets it; either way it
// publishes what the node offers, which the migration controller reads (docs/adr/0057).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { POSTCOPY_LABEL, POSTCOPY_REASON_ANNOTATION } from './node-label-keys.ts';

/** The sysctl's file under a /proc/sys/vm directory. */
export const UNPRIVILEGED_USERFAULTFD = 'unprivileged_userfaultfd';

export interface PostCopyProbe {
  /** A launcher without capabilities can call userfaultfd(2) here. */
  readonly capable: boolean;
  readonly reason: string;
}

export interface PostCopyOptions {
  /** The host's /proc/sys/vm (writable when `enable` is to take effect). */
  readonly sysctlVmDir: string;
  /** Set vm.unprivileged_userfaultfd=1 when it is 0. */
  readonly enable: boolean;
}

async function readSysctl(file: string): Promise<string | Error> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch (err) {
    return err as Error;
  }
}

/** The verdict for a value of vm.unprivileged_userfaultfd (or the error reading it); pure. */
export function postCopyVerdict(value: string | Error, enable: boolean, writeError?: Error): PostCopyProbe {
  if (value instanceof Error) {
    return { capable: false, reason: `vm.unprivileged_userfaultfd cannot be read (${value.message}); post-copy migrations to this node run pre-copy` };
  }
  if (value === '1') {
    return { capable: true, reason: 'vm.unprivileged_userfaultfd=1: launchers without capabilities may use userfaultfd' };
  }
  if (value === '0') {
    const why = !enable
      ? 'the node agent is not allowed to set it (chart value nodeAgent.postCopy.enableUnprivilegedUserfaultfd)'
      : `setting it failed (${writeError?.message ?? 'the value did not change'})`;
    return { capable: false, reason: `vm.unprivileged_userfaultfd=0 and ${why}; post-copy migrations to this node run pre-copy` };
  }
  return { capable: false, reason: `vm.unprivileged_userfaultfd has the unexpected value ${JSON.stringify(value)}; post-copy migrations to this node run pre-copy` };
}

/** Reads the sysctl, sets it to 1 when allowed and needed, and says whether the node can be a post-copy target. */
export async function ensurePostCopy(options: PostCopyOptions): Promise<PostCopyProbe> {
  const file = join(options.sysctlVmDir, UNPRIVILEGED_USERFAULTFD);
  const value = await readSysctl(file);
  if (value !== '0' || !options.enable) return postCopyVerdict(value, options.enable);
  let writeError: Error | undefined;
  try {
    await writeFile(file, '1\n');
  } catch (err) {
    writeError = err as Error;
  }
  return postCopyVerdict(await readSysctl(file), options.enable, writeError);
}

/** The label and annotation that publish a probe. */
export function postCopyNodeMetadata(probe: PostCopyProbe): { labels: Record<string, string>; annotations: Record<string, string> } {
  return {
    labels: { [POSTCOPY_LABEL]: String(probe.capable) },
    annotations: { [POSTCOPY_REASON_ANNOTATION]: probe.reason },
  };
}
