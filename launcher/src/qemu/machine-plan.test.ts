import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseLauncherConfig } from '../config.ts';
import { buildQemuArgs } from './command-line.ts';
import { MachinePlanError, memoryMiB, planMachine } from './machine-plan.ts';
import type { PlanInputs } from './machine-plan.ts';

const paths = { qmpSocket: '/s/qmp', serialSocket: '/s/serial', guestAgentSocket: '/s/qga', vncSocket: '/s/vnc', serialLog: '/s/serial.log' };

function inputs(overrides: Record<string, unknown> = {}): PlanInputs {
  const config = parseLauncherConfig(
    {
      apiVersion: 'launcher.keyvirt.io/v1',
      vm: { name: 'web-1', namespace: 'prod', uid: '5f8e0c0a-7a4e-4a57-9a43-1b0d7b1f3c11' },
      template: {
        cpu: { model: 'Skylake-Server', sockets: 1, cores: 2, threads: 1 },
        memory: { size: '2Gi', hugepages: { pageSize: '2Mi' } },
        disks: [
          { name: 'root', bootOrder: 1, storageDomain: { name: 'nfs', size: '20Gi', format: 'qcow2' } },
          { name: 'data', bus: 'scsi', persistentVolumeClaim: { claimName: 'data' } },
        ],
        interfaces: [{ name: 'default', macAddress: '52:54:00:12:34:56', ports: [{ port: 22 }, { port: 53, protocol: 'UDP' }] }],
        hostDevices: [{ name: 'gpu0', resourceName: 'keyvirt.io/pci-10de-1eb8' }],
      },
      disks: { root: { path: '/d/root.qcow2' }, data: { path: '/d/data.img' } },
      hostDevices: { gpu0: '0000:3b:00.0' },
      tokenFile: '/t',
      stateDir: '/s',
      ...overrides,
    },
    'test',
  );
  return { config, accelerator: 'kvm', paths, diskCache: { root: 'none', data: 'writeback' } };
}

void test('the plan follows the template and the resolved paths', () => {
  const plan = planMachine(inputs());
  assert.equal(plan.guestName, 'prod_web-1');
  assert.equal(plan.uuid, '5f8e0c0a-7a4e-4a57-9a43-1b0d7b1f3c11');
  assert.deepEqual(plan.cpu, { model: 'Skylake-Server', sockets: 1, cores: 2, threads: 1 });
  assert.deepEqual(plan.memory, { sizeMiB: 2048, hugepages: { path: '/dev/hugepages' } });
  assert.deepEqual(
    plan.disks.map((d) => [d.name, d.path, d.format, d.bus, d.bootOrder, d.cache]),
    [
      ['root', '/d/root.qcow2', 'qcow2', 'virtio', 1, 'none'],
      ['data', '/d/data.img', 'raw', 'scsi', undefined, 'writeback'],
    ],
  );
  assert.deepEqual(plan.interfaces[0], {
    name: 'default',
    model: 'virtio',
    macAddress: '52:54:00:12:34:56',
    backend: 'user',
    portForwards: [
      { protocol: 'tcp', hostAddress: '0.0.0.0', hostPort: 22, guestPort: 22 },
      { protocol: 'udp', hostAddress: '0.0.0.0', hostPort: 53, guestPort: 53 },
    ],
  });
  assert.deepEqual(plan.hostDevices, [{ name: 'gpu0', pciAddress: '0000:3b:00.0' }]);
  assert.equal(plan.sockets.guestAgent, '/s/qga');
  assert.equal(plan.incoming, undefined);
});

void test('a migration target waits for the incoming stream', () => {
  assert.equal(planMachine(inputs({ mode: 'migration-target' })).incoming, 'defer');
});

void test('the bridge binding needs a tap device', () => {
  const base = inputs();
  const bridged = { ...base.config, template: { ...base.config.template, interfaces: [{ name: 'br', binding: 'bridge' as const, model: 'virtio' as const }] } };
  assert.throws(() => planMachine({ ...base, config: bridged }), MachinePlanError);
  const plan = planMachine({ ...base, config: { ...bridged, interfaces: { br: { tapDevice: 'tap0' } } } });
  assert.deepEqual(plan.interfaces[0], { name: 'br', model: 'virtio', macAddress: undefined, backend: 'tap', tapDevice: 'tap0' });
});

void test('an unresolved disk or host device is a MachinePlanError', () => {
  const base = inputs();
  assert.throws(() => planMachine({ ...base, config: { ...base.config, disks: {} } }), /disk root/);
  assert.throws(() => planMachine({ ...base, config: { ...base.config, hostDevices: {} } }), /host device gpu0/);
});

void test('memory sizes convert to MiB', () => {
  assert.equal(memoryMiB('256Mi'), 256);
  assert.equal(memoryMiB('1G'), 954);
  assert.throws(() => memoryMiB('0'), MachinePlanError);
});

void test('a configuration that names a kernel to boot still boots from its disks: the launcher has no direct kernel boot', () => {
  const args = buildQemuArgs(planMachine(inputs({ directKernelBoot: { kernel: '/x/vmlinux', initrd: '/x/initrd', cmdline: 'init=/bin/sh' } })));
  for (const flag of ['-kernel', '-initrd', '-append']) assert.ok(!args.includes(flag), `${flag} in ${args.join(' ')}`);
  assert.deepEqual(args.slice(args.indexOf('-boot'), args.indexOf('-boot') + 2), ['-boot', 'strict=on']);
});
