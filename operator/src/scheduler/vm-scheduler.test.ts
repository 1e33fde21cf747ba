import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NodeShape, PodShape, Taint } from './kube-shapes.ts';
import type { PlacementRequest, PlacementResult, SchedulingPolicy } from './placement-types.ts';
import { parseQuantity } from './resource-quantity.ts';
import { placeVm, rejectionDetails } from './vm-scheduler.ts';

interface NodeOptions {
  cpu?: string;
  memory?: string;
  pods?: string;
  labels?: Record<string, string>;
  extended?: Record<string, string>;
  taints?: Taint[];
  cordoned?: boolean;
  ready?: boolean;
}

function node(name: string, o: NodeOptions = {}): NodeShape {
  const allocatable = { cpu: o.cpu ?? '4', memory: o.memory ?? '8Gi', pods: o.pods ?? '110', ...o.extended };
  return {
    metadata: {
      name,
      labels: {
        'kubernetes.io/hostname': name,
        'keyvirt.io/kvm': 'true',
        'keyvirt.io/accelerator': 'kvm',
        'keyvirt.io/node-agent': 'v1',
        ...o.labels,
      },
    },
    spec: { unschedulable: o.cordoned ?? false, taints: o.taints ?? [] },
    status: {
      allocatable,
      capacity: allocatable,
      conditions: [{ type: 'Ready', status: o.ready === false ? 'False' : 'True', reason: 'KubeletReady' }],
    },
  };
}

function pod(
  name: string,
  where: { nodeName?: string; pinnedTo?: string },
  requests: Record<string, string>,
  phase = 'Running',
): PodShape {
  return {
    metadata: { name, namespace: 'default' },
    spec: {
      ...(where.nodeName === undefined ? {} : { nodeName: where.nodeName }),
      ...(where.pinnedTo === undefined
        ? {}
        : {
            affinity: {
              nodeAffinity: {
                requiredDuringSchedulingIgnoredDuringExecution: {
                  nodeSelectorTerms: [
                    { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [where.pinnedTo] }] },
                  ],
                },
              },
            },
          }),
      containers: [{ name: 'c', resources: { requests } }],
    },
    status: { phase },
  };
}

function vm(o: Partial<PlacementRequest> & { cpu?: string; memory?: string; devices?: Record<string, number> } = {}): PlacementRequest {
  const resources = new Map<string, number>([
    ['cpu', parseQuantity(o.cpu ?? '1') * 1000],
    ['memory', parseQuantity(o.memory ?? '1Gi')],
    ...Object.entries(o.devices ?? {}),
  ]);
  return { allowEmulation: false, ...o, resources };
}

function placed(result: PlacementResult): string {
  assert.equal(result.kind, 'Placement', result.kind === 'Unschedulable' ? result.message : '');
  return result.kind === 'Placement' ? result.node : '';
}

function refused(result: PlacementResult): string {
  assert.equal(result.kind, 'Unschedulable', result.kind === 'Placement' ? `placed on ${result.node}` : '');
  return result.kind === 'Unschedulable' ? result.message : '';
}

const GPU = 'keyvirt.io/pci-10de-1eb8';
const powerSaving: SchedulingPolicy = { name: 'power_saving', highUtilization: 80, lowUtilization: 20 };

void describe('placeVm filters', () => {
  const cases: {
    name: string;
    request: PlacementRequest;
    nodes: NodeShape[];
    pods?: PodShape[];
    expect: string;
    message?: RegExp;
  }[] = [
    { name: 'fits on the only node', request: vm(), nodes: [node('a')], expect: 'a' },
    {
      name: 'cordoned nodes are excluded',
      request: vm(),
      nodes: [node('a', { cordoned: true }), node('b')],
      expect: 'b',
    },
    {
      name: 'not-ready nodes are excluded',
      request: vm(),
      nodes: [node('a', { ready: false }), node('b')],
      expect: 'b',
    },
    {
      name: 'memory counts existing pods and the launcher overhead in the request',
      request: vm({ memory: '3Gi' }),
      nodes: [node('a', { memory: '8Gi' }), node('b', { memory: '4Gi' })],
      pods: [pod('big', { nodeName: 'a' }, { memory: '6Gi' })],
      expect: 'b',
    },
    {
      name: 'finished pods free their resources',
      request: vm({ memory: '3Gi' }),
      nodes: [node('a', { memory: '4Gi' })],
      pods: [pod('done', { nodeName: 'a' }, { memory: '3Gi' }, 'Succeeded')],
      expect: 'a',
    },
    {
      name: 'pending pods pinned to a node count against it',
      request: vm({ memory: '3Gi' }),
      nodes: [node('a', { memory: '4Gi' }), node('b', { memory: '4Gi' })],
      pods: [pod('pending', { pinnedTo: 'a' }, { memory: '2Gi' })],
      expect: 'b',
    },
    {
      name: 'cpu fit in millicores',
      request: vm({ cpu: '1500m' }),
      nodes: [node('a', { cpu: '2' }), node('b', { cpu: '4' })],
      pods: [pod('p', { nodeName: 'a' }, { cpu: '1' }), pod('q', { nodeName: 'b' }, { cpu: '2500m' })],
      expect: 'b',
    },
    {
      name: 'hardware KVM required unless emulation is allowed',
      request: vm(),
      nodes: [node('a', { labels: { 'keyvirt.io/kvm': 'false', 'keyvirt.io/accelerator': 'tcg' } }), node('b')],
      expect: 'b',
    },
    {
      name: 'emulation allowed accepts TCG nodes',
      request: vm({ allowEmulation: true }),
      nodes: [node('a', { labels: { 'keyvirt.io/kvm': 'false' } })],
      expect: 'a',
    },
    {
      name: 'named CPU model needs the model label',
      request: vm({ cpuModel: 'Icelake-Server-noTSX' }),
      nodes: [
        node('a', { labels: { 'cpu-model.node.keyvirt.io/Haswell-noTSX': 'true' } }),
        node('b', { labels: { 'cpu-model.node.keyvirt.io/Icelake-Server-noTSX': 'true' } }),
      ],
      expect: 'b',
    },
    {
      name: 'QEMU baseline models run anywhere',
      request: vm({ cpuModel: 'qemu64' }),
      nodes: [node('a')],
      expect: 'a',
    },
    {
      name: 'under emulation the host CPU does not limit the model',
      request: vm({ cpuModel: 'SapphireRapids', allowEmulation: true }),
      nodes: [
        node('a', { labels: { 'keyvirt.io/kvm': 'true' } }),
        node('b', { labels: { 'keyvirt.io/kvm': 'false', 'keyvirt.io/accelerator': 'tcg' } }),
      ],
      expect: 'b',
    },
    {
      name: 'required CPU features accept cpuinfo or QEMU names',
      request: vm({ requiredCpuFeatures: ['sse4_2', 'avx512f'] }),
      nodes: [
        node('a', { labels: { 'cpu-feature.node.keyvirt.io/sse4.2': 'true' } }),
        node('b', {
          labels: { 'cpu-feature.node.keyvirt.io/sse4.2': 'true', 'cpu-feature.node.keyvirt.io/avx512f': 'true' },
        }),
      ],
      expect: 'b',
    },
    {
      name: 'forbidden CPU features exclude nodes that have them',
      request: vm({ forbiddenCpuFeatures: ['rtm'] }),
      nodes: [node('a', { labels: { 'cpu-feature.node.keyvirt.io/rtm': 'true' } }), node('b')],
      expect: 'b',
    },
    {
      name: 'host devices must be free',
      request: vm({ devices: { [GPU]: 1 } }),
      nodes: [node('a', { extended: { [GPU]: '1' } }), node('b', { extended: { [GPU]: '2' } })],
      pods: [
        pod('g1', { nodeName: 'a' }, { [GPU]: '1' }),
        pod('g2', { nodeName: 'b' }, { [GPU]: '1' }),
      ],
      expect: 'b',
    },
    {
      name: 'nodeSelector',
      request: vm({ nodeSelector: { zone: 'east' } }),
      nodes: [node('a', { labels: { zone: 'west' } }), node('b', { labels: { zone: 'east' } })],
      expect: 'b',
    },
    {
      name: 'required node affinity with NotIn and Gt',
      request: vm({
        affinity: {
          nodeAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: {
              nodeSelectorTerms: [
                {
                  matchExpressions: [
                    { key: 'rack', operator: 'NotIn', values: ['r1'] },
                    { key: 'gen', operator: 'Gt', values: ['3'] },
                  ],
                },
              ],
            },
          },
        },
      }),
      nodes: [
        node('a', { labels: { rack: 'r1', gen: '5' } }),
        node('b', { labels: { rack: 'r2', gen: '3' } }),
        node('c', { labels: { rack: 'r2', gen: '4' } }),
      ],
      expect: 'c',
    },
    {
      name: 'untolerated NoSchedule taints exclude, tolerated ones do not',
      request: vm({ tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'vms', effect: 'NoSchedule' }] }),
      nodes: [
        node('a', { taints: [{ key: 'gpu', value: 'yes', effect: 'NoSchedule' }] }),
        node('b', { taints: [{ key: 'dedicated', value: 'vms', effect: 'NoSchedule' }] }),
      ],
      expect: 'b',
    },
    {
      name: 'Exists with an empty key tolerates everything',
      request: vm({ tolerations: [{ operator: 'Exists' }] }),
      nodes: [node('a', { taints: [{ key: 'x', effect: 'NoExecute' }] })],
      expect: 'a',
    },
    {
      name: 'kube-scheduler style message when nothing fits',
      request: vm({ memory: '16Gi' }),
      nodes: [node('a'), node('b'), node('c', { cordoned: true, memory: '64Gi' })],
      expect: 'Unschedulable',
      message: /^0\/3 nodes are available: 2 Insufficient memory, 1 node\(s\) were unschedulable\.$/,
    },
    {
      name: 'one node can count under several reasons',
      request: vm({ memory: '16Gi', cpu: '8' }),
      nodes: [node('a'), node('b', { labels: { 'keyvirt.io/kvm': 'false' } })],
      expect: 'Unschedulable',
      message: /^0\/2 nodes are available: 2 Insufficient cpu, 2 Insufficient memory, 1 node\(s\) had no hardware KVM/,
    },
    {
      name: 'a device no node has',
      request: vm({ devices: { [GPU]: 1 } }),
      nodes: [node('a')],
      expect: 'Unschedulable',
      message: /1 Insufficient keyvirt\.io\/pci-10de-1eb8/,
    },
    {
      name: 'too many pods',
      request: vm(),
      nodes: [node('a', { pods: '1' })],
      pods: [pod('p', { nodeName: 'a' }, {})],
      expect: 'Unschedulable',
      message: /1 Too many pods/,
    },
    {
      name: 'an empty cluster',
      request: vm(),
      nodes: [],
      expect: 'Unschedulable',
      message: /^0\/0 nodes are available/,
    },
  ];
  for (const c of cases) {
    void it(c.name, () => {
      const result = placeVm(c.request, c.nodes, c.pods ?? []);
      if (c.expect === 'Unschedulable') assert.match(refused(result), c.message ?? /./);
      else assert.equal(placed(result), c.expect);
    });
  }

  void it('explains every node it rejected', () => {
    const result = placeVm(vm({ memory: '6Gi' }), [node('a', { cordoned: true }), node('b', { memory: '4Gi' })], []);
    assert.equal(result.kind, 'Unschedulable');
    if (result.kind !== 'Unschedulable') return;
    assert.deepEqual(
      result.rejected.map((r) => r.node),
      ['a', 'b'],
    );
    assert.equal(
      rejectionDetails(result.rejected),
      'a: node is cordoned (spec.unschedulable). b: memory: needs 6 GiB, 4 GiB free of 4 GiB allocatable',
    );
  });
});

void describe('placeVm weights', () => {
  const nodes = [node('a', { cpu: '10', memory: '10Gi' }), node('b', { cpu: '10', memory: '10Gi' }), node('c', { cpu: '10', memory: '10Gi' })];
  const pods = [
    pod('a1', { nodeName: 'a' }, { cpu: '1', memory: '1Gi' }), // 10 %
    pod('b1', { nodeName: 'b' }, { cpu: '5', memory: '5Gi' }), // 50 %
    pod('c1', { nodeName: 'c' }, { cpu: '7', memory: '7Gi' }), // 70 %
  ];

  void it('evenly_distributed picks the least utilised node', () => {
    assert.equal(placed(placeVm(vm(), nodes, pods)), 'a');
  });

  void it('evenly_distributed avoids pushing a node over HighUtilization even when it is ranked by preference', () => {
    const request = vm({
      cpu: '2',
      memory: '2Gi',
      affinity: {
        nodeAffinity: {
          preferredDuringSchedulingIgnoredDuringExecution: [
            { weight: 50, preference: { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['c'] }] } },
          ],
        },
      },
    });
    const result = placeVm(request, nodes, pods);
    assert.equal(placed(result), 'a');
    assert.equal(result.kind === 'Placement' ? result.ranking.at(-1) : '', 'c');
  });

  void it('power_saving packs onto the busiest node that stays under HighUtilization', () => {
    assert.equal(placed(placeVm(vm(), nodes, pods, powerSaving)), 'c');
    assert.equal(placed(placeVm(vm({ cpu: '2', memory: '2Gi' }), nodes, pods, powerSaving)), 'b');
  });

  void it('power_saving uses under-utilised nodes only when busy nodes are full', () => {
    const full = [
      ...pods,
      pod('b2', { nodeName: 'b' }, { cpu: '3', memory: '3Gi' }),
      pod('c2', { nodeName: 'c' }, { cpu: '1', memory: '1Gi' }),
    ];
    assert.equal(placed(placeVm(vm({ cpu: '1', memory: '1Gi' }), nodes, full, powerSaving)), 'a');
  });

  void it('preferred node affinity decides between equally suited nodes', () => {
    const same = [node('x'), node('y', { labels: { ssd: 'true' } })];
    const request = vm({
      affinity: {
        nodeAffinity: {
          preferredDuringSchedulingIgnoredDuringExecution: [
            { weight: 10, preference: { matchExpressions: [{ key: 'ssd', operator: 'Exists' }] } },
          ],
        },
      },
    });
    assert.equal(placed(placeVm(request, same, [])), 'y');
  });

  void it('PreferNoSchedule taints push a node back', () => {
    const same = [node('x', { taints: [{ key: 'soft', effect: 'PreferNoSchedule' }] }), node('y')];
    assert.equal(placed(placeVm(vm(), same, [])), 'y');
  });

  void it('ties break by name', () => {
    assert.equal(placed(placeVm(vm(), [node('n2'), node('n1')], [])), 'n1');
  });
});

void describe('placement affinity', () => {
  void it('pins the launcher pod by hostname and keeps the VM constraints', () => {
    const request = vm({
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [{ matchExpressions: [{ key: 'zone', operator: 'In', values: ['east'] }] }],
          },
        },
      },
    });
    const result = placeVm(request, [node('a', { labels: { zone: 'east' } })], []);
    assert.equal(result.kind, 'Placement');
    if (result.kind !== 'Placement') return;
    assert.deepEqual(result.affinity.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution, {
      nodeSelectorTerms: [
        {
          matchExpressions: [
            { key: 'zone', operator: 'In', values: ['east'] },
            { key: 'kubernetes.io/hostname', operator: 'In', values: ['a'] },
          ],
        },
      ],
    });
  });

  void it('falls back to metadata.name when the node has no hostname label', () => {
    const bare: NodeShape = { ...node('a'), metadata: { name: 'a', labels: { 'keyvirt.io/kvm': 'true' } } };
    const result = placeVm(vm(), [bare], []);
    assert.equal(result.kind, 'Placement');
    if (result.kind !== 'Placement') return;
    assert.deepEqual(result.affinity.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms, [
      { matchFields: [{ key: 'metadata.name', operator: 'In', values: ['a'] }] },
    ]);
  });

  void it('a pod placed earlier is counted when the next VM is placed', () => {
    const nodes = [node('a', { memory: '4Gi' }), node('b', { memory: '4Gi' })];
    const first = placeVm(vm({ memory: '3Gi' }), nodes, []);
    assert.equal(placed(first), 'a');
    if (first.kind !== 'Placement') return;
    const launcher: PodShape = {
      metadata: { name: 'launcher-1' },
      spec: { affinity: first.affinity, containers: [{ name: 'l', resources: { requests: { memory: '3Gi' } } }] },
      status: { phase: 'Pending' },
    };
    assert.equal(placed(placeVm(vm({ memory: '3Gi' }), nodes, [launcher])), 'b');
  });
});
