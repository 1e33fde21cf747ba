// "Another host" for tests and benchmarks: a network namespace joined to the root
// namespace by a veth pair. Addresses come from 10.78.0.0/24, reserved for this and
// distinct from the local cluster's networks; each peer takes a /30 slot of it
// (root end .4k+1, namespace end .4k+2), so up to 64 peers can exist at once across
// concurrent test files. Slots are claimed with an atomic mkdir under /run and
// reclaimed when the process that held them is gone. The root namespace does not
// forward (ip_forward stays as it is): traffic flows root ↔ peer, which is what a
// source launcher (root namespace) migrating to a target launcher (peer) needs.
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const PEER_SUBNET = '10.78.0.0/24';
const SLOT_DIR = '/run/keyvirt-test-netns';
const SLOTS = 64;

export interface PeerHost {
  /** Network namespace name (`ip netns exec <name> …`). */
  readonly name: string;
  /** The peer's address inside its namespace. */
  readonly address: string;
  /** The root namespace's address on the link to the peer. */
  readonly rootAddress: string;
  /** Prefix that runs a command inside the peer's namespace. */
  readonly exec: readonly string[];
  destroy(): Promise<void>;
}

async function ip(...args: string[]): Promise<void> {
  await run('ip', args);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function slotNames(slot: number): { ns: string; rootLink: string; peerLink: string } {
  return { ns: `kv-peer-${slot}`, rootLink: `kvp${slot}r`, peerLink: `kvp${slot}p` };
}

async function removeSlotLinks(slot: number): Promise<void> {
  const { ns, rootLink } = slotNames(slot);
  await ip('link', 'del', rootLink).catch(() => undefined);
  await ip('netns', 'del', ns).catch(() => undefined);
}

async function claimSlot(): Promise<number> {
  await mkdir(SLOT_DIR, { recursive: true });
  const start = (process.pid * 7) % SLOTS;
  for (let i = 0; i < SLOTS; i++) {
    const slot = (start + i) % SLOTS;
    const dir = `${SLOT_DIR}/${slot}`;
    try {
      await mkdir(dir);
    } catch {
      const owner = Number(await readFile(`${dir}/pid`, 'utf8').catch(() => ''));
      if (!Number.isInteger(owner) || owner <= 0 || alive(owner)) continue;
      // A process died holding this slot: clean it and take it over.
      await removeSlotLinks(slot);
    }
    await writeFile(`${dir}/pid`, String(process.pid));
    return slot;
  }
  throw new Error(`no free peer slot in ${PEER_SUBNET}`);
}

/** Creates a peer "host" namespace with a veth link to the root namespace. */
export async function createPeerHost(): Promise<PeerHost> {
  const slot = await claimSlot();
  const { ns, rootLink, peerLink } = slotNames(slot);
  const rootAddress = `10.78.0.${slot * 4 + 1}`;
  const address = `10.78.0.${slot * 4 + 2}`;
  const destroy = async (): Promise<void> => {
    await removeSlotLinks(slot);
    await rm(`${SLOT_DIR}/${slot}`, { recursive: true, force: true });
  };
  try {
    await removeSlotLinks(slot);
    await ip('netns', 'add', ns);
    await ip('link', 'add', rootLink, 'type', 'veth', 'peer', 'name', peerLink);
    await ip('link', 'set', peerLink, 'netns', ns);
    await ip('addr', 'add', `${rootAddress}/30`, 'dev', rootLink);
    await ip('link', 'set', rootLink, 'up');
    await ip('-n', ns, 'addr', 'add', `${address}/30`, 'dev', peerLink);
    await ip('-n', ns, 'link', 'set', peerLink, 'up');
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
    await ip('-n', ns, 'route', 'add', 'default', 'via', rootAddress);
  } catch (err) {
    await destroy();
    throw err;
  }
  return { name: ns, address, rootAddress, exec: ['ip', 'netns', 'exec', ns], destroy };
}
