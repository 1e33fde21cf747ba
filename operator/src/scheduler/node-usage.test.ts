import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PodShape } from './kube-shapes.ts';
import { podRequests } from './node-usage.ts';
import { parseCpuMillis, parseQuantity } from './resource-quantity.ts';

void describe('resource quantities', () => {
  const cases: [string, number][] = [
    ['1', 1],
    ['1.5Gi', 1.5 * 2 ** 30],
    ['128974848', 128974848],
    ['129e6', 129e6],
    ['123Mi', 123 * 2 ** 20],
    ['1k', 1000],
    ['500m', 0.5],
  ];
  for (const [q, v] of cases) void it(`parses ${q}`, () => assert.equal(parseQuantity(q), v));
  void it('cpu in millicores, rounded up', () => {
    assert.equal(parseCpuMillis('2'), 2000);
    assert.equal(parseCpuMillis('250m'), 250);
    assert.equal(parseCpuMillis('0.1'), 100);
    assert.equal(parseCpuMillis('1500u'), 2);
  });
  void it('rejects nonsense', () => assert.throws(() => parseQuantity('12 apples'), { name: 'InvalidQuantityError' }));
});

void describe('podRequests', () => {
  void it('sums containers, takes the init peak, adds sidecars and overhead', () => {
    const pod: PodShape = {
      spec: {
        initContainers: [
          { name: 'init-big', resources: { requests: { cpu: '3', memory: '1Gi' } } },
          { name: 'sidecar', restartPolicy: 'Always', resources: { requests: { cpu: '100m', memory: '64Mi' } } },
        ],
        containers: [
          { name: 'a', resources: { requests: { cpu: '500m', memory: '1Gi' } } },
          { name: 'b', resources: { limits: { 'keyvirt.io/pci-8086-1572': '1' } } },
        ],
        overhead: { memory: '10Mi' },
      },
    };
    const r = podRequests(pod);
    assert.equal(r.get('cpu'), 3000);
    assert.equal(r.get('memory'), 2 ** 30 + 64 * 2 ** 20 + 10 * 2 ** 20);
    assert.equal(r.get('keyvirt.io/pci-8086-1572'), 1);
  });

  void it('pod-level resources replace the container sum', () => {
    const pod: PodShape = {
      spec: {
        resources: { requests: { cpu: '2', memory: '2Gi' } },
        containers: [{ name: 'a', resources: { requests: { cpu: '1', memory: '1Gi' } } }],
      },
    };
    assert.equal(podRequests(pod).get('cpu'), 2000);
    assert.equal(podRequests(pod).get('memory'), 2 * 2 ** 30);
  });
});
