// A pod's network namespace as a CNI leaves it, for the pod-network suites: a netns
// with `eth0` (veth) holding the "pod IP" in a /24 of 10.76.0.0/16 (used by nothing
// else: the cluster has 10.77.0.0/24, test peers 10.78.0.0/24, real nodes' pods
// 10.79.<k>.0/24), a default route via the root namespace's end of the veth (the
// "node", .1), and a client namespace on the same "node" bridge playing another pod. Subnets are picked per process; the root
// namespace does not forward, traffic flows node/client ↔ pod only.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface PodSandbox {
  /** The pod's namespace (`ip netns exec <netns> …`). */
  readonly netns: string;
  /** `/run/netns/<netns>`, for nsenter. */
  readonly netnsPath: string;
  readonly podIp: string;
  readonly gateway: string;
  readonly prefixLength: number;
  /** Another pod on the same bridge. */
  readonly client: { readonly netns: string; readonly ip: string };
  destroy(): Promise<void>;
}

async function ip(...args: string[]): Promise<void> {
  await run('ip', args);
}

export async function createPodSandbox(tag: string): Promise<PodSandbox> {
  const id = `${tag}${process.pid % 10_000}`;
  const third = (process.pid % 200) + 20;
  const subnet = `10.76.${third}`;
  const netns = `kv-pod-${id}`;
  const clientNs = `kv-cli-${id}`;
  const bridge = `kvn${id}`.slice(0, 15);
  const podVeth = `kvpv${id}`.slice(0, 15);
  const cliVeth = `kvcv${id}`.slice(0, 15);
  const destroy = async (): Promise<void> => {
    for (const link of [podVeth, cliVeth, bridge]) await ip('link', 'del', link).catch(() => undefined);
    for (const ns of [netns, clientNs]) await ip('netns', 'del', ns).catch(() => undefined);
  };
  await destroy();
  try {
    await ip('link', 'add', bridge, 'type', 'bridge');
    await ip('addr', 'add', `${subnet}.1/24`, 'dev', bridge);
    await ip('link', 'set', bridge, 'up');
    for (const [ns, veth, host] of [[netns, podVeth, 2], [clientNs, cliVeth, 3]] as const) {
      await ip('netns', 'add', ns);
      await ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      await ip('link', 'set', veth, 'master', bridge, 'up');
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await ip('-n', ns, 'addr', 'add', `${subnet}.${host}/24`, 'dev', 'eth0');
      await ip('-n', ns, 'link', 'set', 'eth0', 'up');
      await ip('-n', ns, 'route', 'add', 'default', 'via', `${subnet}.1`);
    }
  } catch (err) {
    await destroy();
    throw err;
  }
  return {
    netns, netnsPath: `/run/netns/${netns}`, podIp: `${subnet}.2`, gateway: `${subnet}.1`, prefixLength: 24,
    client: { netns: clientNs, ip: `${subnet}.3` }, destroy,
  };
}
