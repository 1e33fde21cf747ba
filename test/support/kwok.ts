// Simulated nodes for the benchmarks: kwok (built from its Go module by
// hack/k8s/build.sh, cached) manages the nodes labelled with a run's id. Nodes become
// Ready; with `runPods`, pods bound to them turn Running with a loopback address
// (127.201.0.0/16, so nothing ever leaves the machine) and deleted pods go away.
// `kwokVm` is the VM the suites and benchmarks put on such nodes.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { VirtualMachineInput } from '@keyvirt/crds';
import { TEST_RUN_LABEL, type Scratch } from '../operator/vm-fixtures.ts';
import { eventually, type TestCluster } from './cluster.ts';

export const KWOK_TAINT = 'kwok.x-k8s.io/node';

/**
 * VM `name` of the scratch's run for the kwok nodes labelled `TEST_RUN_LABEL=nodesLabel`,
 * whose taint it tolerates: 128 MiB, no guest agent (its launcher pod is bound, nothing runs).
 */
export function kwokVm(s: Pick<Scratch, 'namespace' | 'runId'>, name: string, nodesLabel: string): VirtualMachineInput {
  return {
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachine',
    metadata: { name, namespace: s.namespace, labels: { [TEST_RUN_LABEL]: s.runId } },
    spec: {
      runStrategy: 'Always',
      nodeSelector: { [TEST_RUN_LABEL]: nodesLabel },
      tolerations: [{ key: KWOK_TAINT, operator: 'Exists', effect: 'NoSchedule' }],
      template: { memory: { size: '128Mi' }, allowEmulation: true, guestAgent: false },
    },
  };
}
const repoRoot = path.resolve(import.meta.dirname, '..', '..');

interface StageMatch {
  readonly key: string;
  readonly operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  readonly values?: readonly string[];
}

/** The object's Ready condition is not True (yet). */
const NOT_READY: StageMatch = { key: '.status.conditions.[] | select( .type == "Ready" ) | .status', operator: 'NotIn', values: ['True'] };

/**
 * A kwok Stage: `kind` objects matching every expression move on to `next`, either a
 * status template (YAML lines; `$now` is the time of the transition) or their deletion.
 */
function stage(name: string, kind: 'Node' | 'Pod', match: readonly StageMatch[], next: { statusTemplate: string } | { delete: true }): string {
  const expressions = match
    .map((m) => `    - key: '${m.key}'\n      operator: '${m.operator}'\n${m.values === undefined ? '' : `      values: [${m.values.map((v) => `'${v}'`).join(', ')}]\n`}`)
    .join('');
  const then =
    'delete' in next
      ? '    delete: true\n'
      : `    statusTemplate: |\n      {{ $now := Now }}\n${next.statusTemplate.replace(/^(?=.)/gm, '      ')}`;
  return `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: ${name}
spec:
  resourceRef:
    apiGroup: v1
    kind: ${kind}
  selector:
    matchExpressions:
${expressions}  next:
${then}`;
}

const NODE_STAGE = stage('node-initialize', 'Node', [NOT_READY], {
  statusTemplate: `conditions:
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
  message: kwok simulates this node
  reason: KubeletReady
  status: "True"
  type: Ready
allocatable: { cpu: "1000", memory: 4Ti, pods: "20000" }
capacity: { cpu: "1000", memory: 4Ti, pods: "20000" }
nodeInfo:
  kubeletVersion: kwok
`,
});

/** kwok's own pod-ready and pod-delete stages (kustomize/stage/pod/fast), trimmed to what a launcher pod has. */
const POD_STAGES = `---
${stage(
  'pod-ready',
  'Pod',
  [{ key: '.metadata.deletionTimestamp', operator: 'DoesNotExist' }, { key: '.status.phase', operator: 'In', values: ['Pending'] }, NOT_READY],
  {
    statusTemplate: `conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Ready
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
{{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
{{ with $podIPs }}
podIP: {{ index . 0 | Quote }}
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
`,
  },
)}---
${stage('pod-delete', 'Pod', [{ key: '.metadata.deletionTimestamp', operator: 'Exists' }], { delete: true })}`;

/** Builds kwok if its pinned build is not cached (a cold build takes minutes). */
export function ensureKwokBinary(): void {
  execFileSync('bash', [path.join(repoRoot, 'hack/k8s/build.sh'), 'kwok'], { stdio: ['ignore', 'inherit', 'inherit'] });
}

export interface KwokNodes {
  readonly names: readonly string[];
  /** kwok's process (its CPU is part of a burst's cost). */
  readonly pid: number | undefined;
  /** Stops kwok and deletes its nodes. */
  stop(): void;
}

export interface KwokOptions {
  /** The label (`key=value`) of the nodes kwok manages. */
  readonly label: { key: string; value: string };
  readonly count: number;
  readonly namePrefix: string;
  /** Pods bound to the nodes run (Running, with an address); otherwise they stay Pending. */
  readonly runPods: boolean;
  /** Where kwok's config and log go. */
  readonly dir: string;
}

/** Starts kwok for `count` new nodes and waits until they are Ready. */
export async function startKwokNodes(cluster: TestCluster, o: KwokOptions): Promise<KwokNodes> {
  ensureKwokBinary();
  const config = path.join(o.dir, 'kwok.yaml');
  await writeFile(config, o.runPods ? `${NODE_STAGE}${POD_STAGES}` : NODE_STAGE);
  const selector = `${o.label.key}=${o.label.value}`;
  const kwok: ChildProcess = spawn(
    path.join(cluster.layout.binDir, 'kwok'),
    [
      `--config=${config}`,
      `--kubeconfig=${cluster.kubeconfig}`,
      '--node-lease-duration-seconds=40',
      `--manage-nodes-with-label-selector=${selector}`,
      '--cidr=127.201.0.0/16',
      '--node-ip=127.0.0.1',
      '--server-address=127.0.0.1:0',
    ],
    { stdio: ['ignore', 'ignore', openSync(path.join(o.dir, 'kwok.log'), 'a')] },
  );
  const names = Array.from({ length: o.count }, (_, i) => `${o.namePrefix}-${i}`);
  const stop = (): void => {
    kwok.kill('SIGTERM');
    cluster.kubectl(['delete', 'nodes', '-l', selector, '--wait=false', '--ignore-not-found']);
  };
  try {
    const nodes = names.map((name) => ({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name,
        annotations: { [KWOK_TAINT]: 'fake' },
        labels: { 'kubernetes.io/hostname': name, type: 'kwok', [o.label.key]: o.label.value, 'keyvirt.io/kvm': 'false' },
      },
      spec: { taints: [{ key: KWOK_TAINT, value: 'fake', effect: 'NoSchedule' }] },
      status: { allocatable: { cpu: '1000', memory: '4Ti', pods: '20000' }, capacity: { cpu: '1000', memory: '4Ti', pods: '20000' } },
    }));
    cluster.kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: nodes }));
    await eventually(
      'kwok nodes Ready',
      () => {
        const ready = cluster.kubectl(['get', 'nodes', '-l', selector, '-o', 'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}']);
        return ready.split(' ').filter((r) => r === 'True').length === o.count ? true : undefined;
      },
      120_000,
    );
  } catch (err) {
    stop();
    throw err;
  }
  return { names, pid: kwok.pid, stop };
}
