import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { deriveMetricsToken, type VmMetrics } from '@keyvirt/launcher/api';
import { pino } from 'pino';
import { launcherTargets } from './launcher-pods.ts';
import { VmMetricsExposition } from './vm-metrics-exposition.ts';
import { readLaunchers, type VmMetricsOptions } from './vm-metrics-loop.ts';

const log = pino({ level: 'silent' });
const NODE = 'node-a';

function pod(name: string, opts: { node?: string; phase?: string; ip?: string | undefined; target?: boolean; port?: number; vm?: string } = {}): unknown {
  return {
    metadata: {
      namespace: 'tenant',
      name,
      labels: {
        'app.kubernetes.io/component': 'launcher',
        'app.kubernetes.io/managed-by': 'keyvirt-operator',
        'keyvirt.io/vm': opts.vm ?? name.replace(/^launcher-/, ''),
        'keyvirt.io/vm-uid': `uid-${name}`,
        ...(opts.target === true ? { 'keyvirt.io/migration-target': 'm1' } : {}),
      },
    },
    spec: { nodeName: opts.node ?? NODE, containers: [{ ports: [{ name: 'launcher-api', containerPort: opts.port ?? 8443 }] }] },
    status: { phase: opts.phase ?? 'Running', ...(opts.ip === undefined && 'ip' in opts ? {} : { podIP: opts.ip ?? '10.0.0.5' }) },
  };
}

function sample(phase = 'Running', migration?: VmMetrics['migration']): VmMetrics {
  return {
    vm: { namespace: 'lies', name: 'lies', uid: 'x' },
    phase,
    collectedAt: new Date(0).toISOString(),
    vcpus: [{ index: 0, seconds: 2.5 }],
    memory: { guestBytes: 268435456, launcherResidentBytes: 1000, qemuResidentBytes: 5000, overheadBytes: 3000 },
    disks: [{ name: 'root', readBytes: 10, writeBytes: 20, readOps: 1, writeOps: 2, flushOps: 0, readTimeSeconds: 0, writeTimeSeconds: 0 }],
    interfaces: [{ name: 'default', receiveBytes: 7, transmitBytes: 9, receivePackets: 1, transmitPackets: 1, receiveErrors: 0, transmitErrors: 0, receiveDropped: 0, transmitDropped: 0 }],
    filesystems: [],
    ...(migration === undefined ? {} : { migration }),
  };
}

void describe('launcher targets from the pod list', () => {
  void it('keeps running launcher pods of this node with an address, named by their labels', () => {
    const list = {
      items: [
        pod('launcher-web'),
        pod('launcher-other-node', { node: 'node-b' }),
        pod('launcher-pending', { phase: 'Pending' }),
        pod('launcher-no-ip', { ip: undefined }),
        pod('launcher-target', { target: true }),
        pod('launcher-v6', { ip: 'fd00::5', port: 9443 }),
        { metadata: { name: 'garbage' } },
      ],
    };
    assert.deepEqual(
      launcherTargets(list, NODE).map((t) => [t.name, t.vmUid, t.url]),
      [
        ['web', 'uid-launcher-web', 'http://10.0.0.5:8443/v1/metrics'],
        ['v6', 'uid-launcher-v6', 'http://[fd00::5]:9443/v1/metrics'],
      ],
    );
    assert.deepEqual(launcherTargets({ kind: 'Status' }, NODE), []);
  });
});

void describe('node agent exposition', () => {
  const target = { namespace: 'tenant', name: 'web', vmUid: 'u', pod: 'launcher-web', url: 'http://x' };

  void it('labels each series by the pod, not by what the launcher claims, and types counters as counters', async () => {
    const e = new VmMetricsExposition(NODE);
    e.update([{ target, metrics: sample() }, { target: { ...target, name: 'down' }, failure: 'timeout' }]);
    const text = await e.metrics();
    assert.match(text, /# TYPE keyvirt_vmi_vcpu_seconds_total counter/);
    assert.match(text, /keyvirt_vmi_vcpu_seconds_total\{namespace="tenant",name="web",node="node-a",vcpu="0"\} 2\.5/);
    assert.match(text, /keyvirt_vmi_storage_write_traffic_bytes_total\{namespace="tenant",name="web",node="node-a",drive="root"\} 20/);
    assert.match(text, /keyvirt_vmi_network_receive_bytes_total\{namespace="tenant",name="web",node="node-a",interface="default"\} 7/);
    assert.match(text, /keyvirt_vmi_launcher_overhead_bytes\{namespace="tenant",name="web",node="node-a"\} 3000/);
    assert.match(text, /keyvirt_vmi_launcher_up\{namespace="tenant",name="down",node="node-a",reason="timeout"\} 0/);
    assert.match(text, /keyvirt_vmi_phase_count\{node="node-a",phase="Running"\} 1/);
    assert.match(text, /keyvirt_vmi_phase_count\{node="node-a",phase="Unknown"\} 1/);
    assert.doesNotMatch(text, /lies/);
    assert.doesNotMatch(text, /keyvirt_vmi_migration_data_remaining_bytes\{/);
  });

  void it("counts the errors the agent's safety net survived (ADR 0139), 0 when none", async () => {
    let survived = 0;
    const e = new VmMetricsExposition(NODE, { uncaughtErrors: () => survived });
    assert.match(await e.metrics(), /# TYPE keyvirt_node_agent_uncaught_errors_total counter\nkeyvirt_node_agent_uncaught_errors_total\{node="node-a"\} 0\n/);
    survived = 3;
    assert.match(await e.metrics(), /keyvirt_node_agent_uncaught_errors_total\{node="node-a"\} 3\n/);
  });

  void it('shows migration progress only while QEMU migrates, and forgets VMs that left the node', async () => {
    const e = new VmMetricsExposition(NODE);
    const migration = { status: 'active', transferredBytes: 100, remainingBytes: 400, totalBytes: 500, dirtyRateBytesPerSecond: 0, iterations: 1 };
    e.update([{ target, metrics: sample('Migrating', migration) }]);
    assert.match(await e.metrics(), /keyvirt_vmi_migration_data_remaining_bytes\{namespace="tenant",name="web",node="node-a"\} 400/);
    e.update([{ target, metrics: sample('Running', { ...migration, status: 'completed' }) }]);
    assert.doesNotMatch(await e.metrics(), /keyvirt_vmi_migration_data_remaining_bytes\{/);
    assert.doesNotMatch(await e.metrics(), /keyvirt_vmi_migration_failed\{/);
    e.update([{ target, metrics: sample('Running', { ...migration, status: 'failed' }) }]);
    assert.match(await e.metrics(), /keyvirt_vmi_migration_failed\{namespace="tenant",name="web",node="node-a"\} 1/);
    e.update([]);
    assert.doesNotMatch(await e.metrics(), /name="web"/);
  });
});

void describe('reading launchers', () => {
  const key = randomBytes(32);
  let server: Server;
  let port = 0;
  /** What the fake launcher answers to each VM's metrics token; any other token gets 401, as from the launcher. */
  const behaviour = new Map<string, 'ok' | 'huge' | 'slow' | 'invalid'>([
    ['ok', 'ok'],
    ['huge', 'huge'],
    ['slow', 'slow'],
    ['invalid', 'invalid'],
  ]);

  before(async () => {
    server = createServer((req, res) => {
      const uid = [...behaviour.keys()].find((u) => req.headers.authorization === `Bearer ${deriveMetricsToken(key, u)}`);
      const b = uid === undefined ? undefined : behaviour.get(uid);
      if (b === undefined || req.url !== '/v1/metrics') {
        res.writeHead(401).end();
      } else if (b === 'huge') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(`{"x":"${'a'.repeat(2 * 1024 * 1024)}"}`);
      } else if (b === 'slow') {
        res.writeHead(200);
      } else if (b === 'invalid') {
        res.writeHead(200).end(JSON.stringify({ ...sample(), vcpus: [{ index: 0, seconds: -1 }] }));
      } else {
        res.writeHead(200).end(JSON.stringify(sample()));
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  void it('reads each launcher with its own metrics token and names every failure', async () => {
    const uids = ['ok', 'huge', 'slow', 'invalid', 'wrong-key'];
    const items = uids.map((uid) => {
      const p = pod(`launcher-${uid}`, { ip: '127.0.0.1', port }) as { metadata: { labels: Record<string, string> } };
      p.metadata.labels['keyvirt.io/vm-uid'] = uid;
      return p;
    });
    const options: VmMetricsOptions = {
      api: { listPods: (field, labels) => Promise.resolve(field === `spec.nodeName=${NODE}` && labels.includes('app.kubernetes.io/component=launcher') ? { items } : { items: [] }) },
      node: NODE,
      key,
      intervalMs: 1000,
      timeoutMs: 500,
      concurrency: 2,
      exposition: new VmMetricsExposition(NODE),
      log,
    };
    const readings = await readLaunchers(options);
    assert.deepEqual(
      readings.map((r) => [r.target.vmUid, r.failure ?? 'ok']),
      [
        ['ok', 'ok'],
        ['huge', 'too-large'],
        ['slow', 'timeout'],
        ['invalid', 'invalid'],
        ['wrong-key', 'unauthorized'],
      ],
    );
    assert.equal(readings[0]?.metrics?.vcpus[0]?.seconds, 2.5);
  });
});
