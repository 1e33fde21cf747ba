// What a test prints when pods of a simulated node never become Ready: each pod's phase,
// conditions and container states, the tail of each container's log (kept by the node
// simulator under its state directory), the node simulator's own lines about the pod
// (probe failures with their reasons) and the pod's network as its namespace and its
// node's bridge see it (address, link state, neighbour entry). A probe that times out
// from the pod's first second on says the pod cannot be reached, not that it is slow:
// these lines tell the two apart after the run, when the node and its pods are gone.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { nodeNetNames } from '../../hack/cluster/layout.ts';
import { nodeIndexOf } from '../../hack/cluster/nodes.ts';
import { podMac, podNetnsName } from '../../hack/nodesim/pod-network.ts';
import type { TestCluster } from './cluster.ts';

const TAIL_LINES = 20;

function tail(file: string, lines: number, filter?: string): string {
  try {
    const all = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '' && (filter === undefined || l.includes(filter)));
    return all.slice(-lines).join('\n');
  } catch (err) {
    return `(${(err as Error).message})`;
  }
}

function run(command: string, args: readonly string[]): string {
  const r = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
  const text = `${r.stdout}${r.stderr}`.trim();
  if (r.status === 0) return text || '(none)';
  return `${text} (exit ${String(r.status ?? r.signal)})`.trim();
}

function ip(args: readonly string[]): string {
  return run('ip', args);
}

interface PodView {
  metadata: { name: string; uid: string };
  spec: { nodeName?: string; hostNetwork?: boolean; containers: { name: string; ports?: { containerPort: number }[] }[] };
  status?: { phase?: string; podIP?: string; conditions?: unknown[]; containerStatuses?: unknown[] };
}

/** The pod's network as its namespace and its node's bridge see it, and whether the node reaches its declared ports. */
function podNetwork(index: number, pod: PodView): string[] {
  const lines: string[] = [];
  const podNetns = podNetnsName(index, pod.metadata.uid);
  const nodeNetns = nodeNetNames(index).netns;
  lines.push(`pod network (${podNetns}):\n${ip(['-n', podNetns, '-br', 'addr'])}\n${ip(['-n', podNetns, 'route'])}`);
  const podIp = pod.status?.podIP ?? '0.0.0.0';
  lines.push(`listening in the pod:\n${ip(['netns', 'exec', podNetns, 'ss', '-ltnH'])}`);
  // The probes' path: a TCP connection from the node's namespace to each declared port.
  for (const port of pod.spec.containers.flatMap((c) => (c.ports ?? []).map((p) => p.containerPort))) {
    const dial = run('ip', ['netns', 'exec', nodeNetns, 'timeout', '2', 'bash', '-c', `exec 3<>/dev/tcp/${podIp}/${String(port)} && echo connected`]);
    lines.push(`dial ${podIp}:${String(port)} from the node: ${dial}`);
  }
  // Where the node sends the pod's frames: its neighbour entry and the bridge port that learned the pod's MAC.
  const mac = podIp === '0.0.0.0' ? undefined : podMac(podIp);
  const fdb = run('bridge', ['-n', nodeNetns, 'fdb', 'show', 'br', 'nbr0']).split('\n').filter((l) => mac !== undefined && l.startsWith(mac));
  lines.push(`node bridge (${nodeNetns}):\n${ip(['-n', nodeNetns, '-br', 'link'])}\nneighbour: ${ip(['-n', nodeNetns, 'neigh', 'show', podIp])}\nbridge port of ${mac ?? '?'}: ${fdb.join('; ') || '(none)'}`);
  return lines;
}

/** Everything about the pods of `namespace` that says why they are not Ready; best effort, never throws. */
export function podDiagnostics(cluster: TestCluster, namespace: string): string {
  let pods: PodView[];
  try {
    pods = (JSON.parse(cluster.kubectl(['get', 'pods', '-n', namespace, '-o', 'json'])) as { items: PodView[] }).items;
  } catch (err) {
    return `pods of ${namespace}: ${(err as Error).message}`;
  }
  const out: string[] = [];
  for (const pod of pods) {
    const node = pod.spec.nodeName;
    out.push(`--- pod ${namespace}/${pod.metadata.name} on ${node ?? '(none)'}: ${pod.status?.phase ?? '?'} ${pod.status?.podIP ?? ''}`);
    out.push(`conditions: ${JSON.stringify(pod.status?.conditions ?? [])}`);
    out.push(`containers: ${JSON.stringify(pod.status?.containerStatuses ?? [])}`);
    if (node === undefined) continue;
    const nodeDir = path.join(cluster.layout.nodesDir, node);
    for (const c of pod.spec.containers) out.push(`log of ${c.name}:\n${tail(path.join(nodeDir, 'pods', pod.metadata.uid, `${c.name}.log`), TAIL_LINES)}`);
    out.push(`node simulator on the pod:\n${tail(path.join(cluster.layout.logDir, `nodesim-${node}.log`), TAIL_LINES, pod.metadata.uid)}`);
    const index = nodeIndexOf(cluster.layout, node);
    if (index === undefined || pod.spec.hostNetwork === true) continue;
    try {
      out.push(...podNetwork(index, pod));
    } catch (err) {
      out.push(`pod network: ${(err as Error).message}`);
    }
  }
  return out.join('\n');
}
