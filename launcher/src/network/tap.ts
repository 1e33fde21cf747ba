// Tap devices for the bridge binding: with NET_ADMIN in the pod the launcher creates the
// tap QEMU attaches to, enslaves it to the pod's bridge and brings it up; without it the
// tap must already exist (prepared by a CNI plugin or the node). Done with iproute2.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export class TapSetupError extends Error {
  override name = 'TapSetupError';
}

/** Runs `ip <args>`; injected so tests can run it inside a network namespace. */
export type IpRunner = (args: readonly string[]) => Promise<string>;

export const hostIp: IpRunner = async (args) => (await execFileAsync('ip', [...args])).stdout;

export interface TapSpec {
  name: string;
  /** Bridge to attach the tap to. */
  bridge: string;
  /** The user QEMU runs as, when not root. */
  owner?: number;
}

async function linkExists(ip: IpRunner, name: string): Promise<boolean> {
  try {
    await ip(['link', 'show', 'dev', name]);
    return true;
  } catch {
    return false;
  }
}

/** Creates (if missing) the tap, attaches it to the bridge and brings it up; resolves whether it was created here. */
export async function prepareTap(spec: TapSpec, ip: IpRunner = hostIp): Promise<boolean> {
  try {
    if (!(await linkExists(ip, spec.bridge))) throw new TapSetupError(`bridge ${spec.bridge} does not exist`);
    const created = !(await linkExists(ip, spec.name));
    if (created) {
      await ip(['tuntap', 'add', 'dev', spec.name, 'mode', 'tap', ...(spec.owner === undefined ? [] : ['user', String(spec.owner)])]);
    }
    await ip(['link', 'set', 'dev', spec.name, 'master', spec.bridge]);
    await ip(['link', 'set', 'dev', spec.name, 'up']);
    return created;
  } catch (err) {
    if (err instanceof TapSetupError) throw err;
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new TapSetupError(`cannot prepare tap ${spec.name} on ${spec.bridge} (the pod needs NET_ADMIN): ${stderr.trim() || (err as Error).message}`, { cause: err });
  }
}

/** Removes a tap the launcher created. */
export async function removeTap(name: string, ip: IpRunner = hostIp): Promise<void> {
  await ip(['link', 'del', 'dev', name]).catch(() => undefined);
}
