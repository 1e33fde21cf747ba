import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { VirtualMachine, parseQuantity } from '@keyvirt/crds';
import { LauncherConfigSchema } from '@keyvirt/launcher/api';
import { z } from 'zod';
import { configHash, launcherConfig, renderLauncherPod, renderLauncherSecret, type LauncherPodInput } from './launcher-pod.ts';
import { memoryOverheadBytes } from './launcher-resources.ts';
import { KVM_RESOURCE, TUN_RESOURCE, VHOST_NET_RESOURCE } from '../node-agent/device-plugin/resource-names.ts';

const vm = VirtualMachine.parse({
  apiVersion: 'keyvirt.io/v1alpha1',
  kind: 'VirtualMachine',
  metadata: { name: 'web-1', namespace: 'prod', uid: 'vm-uid' },
  spec: {
    runStrategy: 'Always',
    template: {
      cpu: { cores: 2 },
      memory: { size: '1Gi' },
      disks: [
        { name: 'root', bootOrder: 1, storageDomain: { name: 'local-sd', size: '1Gi' } },
        { name: 'data', persistentVolumeClaim: { claimName: 'web-1-data' } },
      ],
    },
  },
});

const podShape = z.object({
  metadata: z.object({ name: z.string(), ownerReferences: z.array(z.object({ uid: z.string(), controller: z.boolean() })) }),
  spec: z.object({
    automountServiceAccountToken: z.boolean(),
    restartPolicy: z.string(),
    affinity: z.unknown(),
    containers: z.array(
      z.object({
        image: z.string(),
        args: z.array(z.string()),
        resources: z.object({ requests: z.record(z.string(), z.string()), limits: z.record(z.string(), z.string()).optional() }),
        volumeMounts: z.array(z.object({ name: z.string(), mountPath: z.string() })),
      }),
    ),
    volumes: z.array(z.looseObject({ name: z.string() })),
  }),
});

function input(over: Partial<LauncherPodInput> = {}): LauncherPodInput {
  return {
    vm,
    settings: { image: 'keyvirt/launcher:0.1.0', args: [], imagePullPolicy: 'IfNotPresent', allowEmulation: true },
    affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [] } } },
    devices: [],
    disks: [
      {
        name: 'root', source: { hostPath: { path: '/srv/sd', type: 'Directory' } }, format: 'qcow2', readOnly: false,
        path: '/var/run/keyvirt/domains/local-sd/images/prod/web-1/root.qcow2',
        mounts: [
          { subPath: 'images/prod/web-1/root.qcow2', mountPath: '/var/run/keyvirt/domains/local-sd/images/prod/web-1/root.qcow2', readOnly: false },
          { subPath: 'templates/debian-12', mountPath: '/var/run/keyvirt/domains/local-sd/templates/debian-12', readOnly: true },
        ],
      },
      {
        name: 'data', source: { persistentVolumeClaim: { claimName: 'web-1-data' } }, format: 'raw', readOnly: false,
        path: '/var/run/keyvirt/disks/data/disk.img', mounts: [{ mountPath: '/var/run/keyvirt/disks/data', readOnly: false }],
      },
    ],
    ...over,
  };
}

void describe('launcher pod', () => {
  void it('has a deterministic name, a controller owner reference and no service-account token', () => {
    const pod = podShape.parse(renderLauncherPod(input(), 'h'));
    assert.equal(pod.metadata.name, 'launcher-web-1');
    assert.deepEqual(pod.metadata.ownerReferences.map((r) => [r.uid, r.controller]), [['vm-uid', true]]);
    assert.equal(pod.spec.automountServiceAccountToken, false);
    assert.equal(pod.spec.restartPolicy, 'Never');
    assert.deepEqual(pod.spec.affinity, input().affinity);
  });

  void it('requests the guest memory plus the launcher/QEMU overhead, and runs the launcher with its config', () => {
    const pod = podShape.parse(renderLauncherPod(input(), 'h'));
    const container = pod.spec.containers[0];
    assert.ok(container);
    const memory = parseQuantity(container.resources.requests.memory ?? '');
    const expected = 1024 ** 3 + memoryOverheadBytes(vm.spec.template, true);
    assert.ok(memory !== undefined && memory >= expected && memory - expected < 1024 * 1024, `memory request ${container.resources.requests.memory}`);
    assert.equal(container.resources.requests.cpu, '300m');
    assert.deepEqual(container.args, ['--config', '/var/run/keyvirt/launcher/config.json']);
  });

  void it('mounts each disk volume and never a device node', () => {
    const kvmNode = podShape.parse(renderLauncherPod(input({ devices: [KVM_RESOURCE, TUN_RESOURCE, VHOST_NET_RESOURCE] }), 'h'));
    assert.deepEqual(kvmNode.spec.volumes.map((v) => v.name), ['launcher-config', 'state', 'disk-root', 'disk-data']);
    assert.ok(!kvmNode.spec.containers[0]?.volumeMounts.some((m) => m.mountPath.startsWith('/dev')));
  });

  void describe('node devices come from the device plugins as extended resources (requests = limits)', () => {
    const bridged = VirtualMachine.parse({
      ...vm,
      spec: { ...vm.spec, template: { ...vm.spec.template, interfaces: [{ name: 'lan', binding: 'bridge' }] } },
    });
    const cases: { name: string; vm: VirtualMachine; devices: string[]; want: Record<string, string> }[] = [
      { name: 'a node without device plugins: nothing', vm, devices: [], want: {} },
      { name: 'kvm advertised: kvm', vm, devices: [KVM_RESOURCE], want: { [KVM_RESOURCE]: '1' } },
      { name: 'masquerade NIC: no tun', vm, devices: [KVM_RESOURCE, TUN_RESOURCE, VHOST_NET_RESOURCE], want: { [KVM_RESOURCE]: '1' } },
      { name: 'bridge NIC: kvm and tun', vm: bridged, devices: [KVM_RESOURCE, TUN_RESOURCE, VHOST_NET_RESOURCE], want: { [KVM_RESOURCE]: '1', [TUN_RESOURCE]: '1' } },
      { name: 'bridge NIC, tun not advertised: kvm', vm: bridged, devices: [KVM_RESOURCE], want: { [KVM_RESOURCE]: '1' } },
      { name: 'bridge NIC, kvm not advertised: tun', vm: bridged, devices: [TUN_RESOURCE], want: { [TUN_RESOURCE]: '1' } },
    ];
    for (const c of cases) {
      void it(c.name, () => {
        const container = podShape.parse(renderLauncherPod(input({ vm: c.vm, devices: c.devices }), 'h')).spec.containers[0];
        const only = (list: Record<string, string> | undefined): Record<string, string> =>
          Object.fromEntries(Object.entries(list ?? {}).filter(([k]) => k.startsWith('devices.keyvirt.io/')));
        assert.deepEqual(only(container?.resources.requests), c.want);
        assert.deepEqual(only(container?.resources.limits), c.want);
      });
    }
  });

  void it('never mounts a host path nor asks for a direct kernel boot, whatever the VM carries', () => {
    const annotated = { ...vm, metadata: { ...vm.metadata, annotations: { 'keyvirt.io/kernel-boot': JSON.stringify({ kernel: '/x/vmlinux', initrd: '/x/initrd' }) } } };
    const pod = podShape.parse(renderLauncherPod(input({ vm: annotated }), 'h'));
    assert.ok(!pod.spec.containers[0]?.volumeMounts.some((m) => m.mountPath === '/x'));
    assert.ok(!JSON.stringify(launcherConfig(input({ vm: annotated }))).includes('/x/vmlinux'));
  });

  void it('writes a configuration the launcher accepts, with each disk at its mount path', () => {
    const config = LauncherConfigSchema.parse(launcherConfig(input()));
    assert.deepEqual(config.disks, {
      root: { path: '/var/run/keyvirt/domains/local-sd/images/prod/web-1/root.qcow2', format: 'qcow2' },
      data: { path: '/var/run/keyvirt/disks/data/disk.img', format: 'raw' },
    });
    assert.equal(config.allowEmulation, true);
    assert.equal(configHash(launcherConfig(input())), configHash(launcherConfig(input())));
    const secret = z.object({ data: z.object({ token: z.string(), 'config.json': z.string() }) }).parse(renderLauncherSecret(vm, 'tok', launcherConfig(input())));
    assert.equal(Buffer.from(secret.data.token, 'base64').toString(), 'tok');
  });

  void it('mounts only the VM\'s own image and its template (read-only) from a domain, each at its domain path', () => {
    const mounts = z.array(z.object({ name: z.string(), mountPath: z.string(), subPath: z.string().optional(), readOnly: z.boolean().optional() }))
      .parse(z.object({ spec: z.object({ containers: z.array(z.object({ volumeMounts: z.unknown() })) }) }).parse(renderLauncherPod(input(), 'h')).spec.containers[0]?.volumeMounts);
    assert.deepEqual(mounts.filter((m) => m.name.startsWith('disk-')), [
      { name: 'disk-root', subPath: 'images/prod/web-1/root.qcow2', mountPath: '/var/run/keyvirt/domains/local-sd/images/prod/web-1/root.qcow2', readOnly: false },
      { name: 'disk-root', subPath: 'templates/debian-12', mountPath: '/var/run/keyvirt/domains/local-sd/templates/debian-12', readOnly: true },
      { name: 'disk-data', mountPath: '/var/run/keyvirt/disks/data', readOnly: false },
    ]);
    // The overlay names its template `../../../templates/debian-12`: from the image's directory in the pod that is the template's mount.
    const imageDir = '/var/run/keyvirt/domains/local-sd/images/prod/web-1';
    assert.equal(path.posix.resolve(imageDir, '../../../templates/debian-12'), mounts.find((m) => m.subPath === 'templates/debian-12')?.mountPath);
  });

  void it('mounts a template shared by two disks once', () => {
    const base = input().disks[0];
    assert.ok(base);
    const second = { ...base, name: 'extra', mounts: [{ ...base.mounts[0], mountPath: '/var/run/keyvirt/domains/local-sd/images/prod/web-1/extra.qcow2', subPath: 'images/prod/web-1/extra.qcow2', readOnly: false }, base.mounts[1]].filter((m) => m !== undefined) };
    const pod = podShape.parse(renderLauncherPod(input({ disks: [base, second] }), 'h'));
    const paths = pod.spec.containers[0]?.volumeMounts.map((m) => m.mountPath) ?? [];
    assert.equal(new Set(paths).size, paths.length, `mount paths unique: ${paths.join(', ')}`);
    assert.equal(paths.filter((p) => p.endsWith('/templates/debian-12')).length, 1);
  });

  void it('runs the launcher without capabilities, privilege escalation or a writable root, under RuntimeDefault seccomp', () => {
    const hardened = z.object({
      spec: z.object({
        securityContext: z.object({ seccompProfile: z.object({ type: z.string() }) }),
        hostNetwork: z.undefined().optional(), hostPID: z.undefined().optional(), hostIPC: z.undefined().optional(),
        containers: z.array(z.object({ securityContext: z.object({
          privileged: z.literal(false),
          allowPrivilegeEscalation: z.literal(false),
          readOnlyRootFilesystem: z.literal(true),
          capabilities: z.object({ drop: z.array(z.string()), add: z.array(z.string()).optional() }),
          seccompProfile: z.object({ type: z.string() }),
        }) })),
      }),
    });
    const pod = hardened.parse(renderLauncherPod(input(), 'h'));
    assert.equal(pod.spec.securityContext.seccompProfile.type, 'RuntimeDefault');
    const sc = pod.spec.containers[0]?.securityContext;
    assert.deepEqual(sc?.capabilities, { drop: ['ALL'] }, 'a masquerade NIC needs no capability');
    assert.equal(sc?.seccompProfile.type, 'RuntimeDefault');
    const bridged = VirtualMachine.parse({ ...vm, spec: { ...vm.spec, template: { ...vm.spec.template, interfaces: [{ name: 'br', binding: 'bridge' }] } } });
    const withTap = hardened.parse(renderLauncherPod(input({ vm: bridged }), 'h'));
    assert.deepEqual(withTap.spec.containers[0]?.securityContext.capabilities, { drop: ['ALL'], add: ['NET_ADMIN'] }, 'a bridge NIC: NET_ADMIN for its tap');
  });
});

void describe('HA launcher pods (ADR 0064)', () => {
  const lease = { domain: { domain: 'shared', source: { hostPath: { path: '/var/lib/keyvirt/shared', type: 'Directory' } }, leaseDir: 'leases/prod/web-1' }, nodeFenced: true };

  void it('mounts the lease directory read-write, passes the pod UID and node, and puts the lease in a config the launcher accepts', () => {
    const pod = renderLauncherPod(input({ lease }), 'h') as {
      spec: { volumes: { name: string; hostPath?: { path: string } }[]; containers: { volumeMounts: { name: string; mountPath: string; subPath?: string; readOnly?: boolean }[]; env?: { name: string; valueFrom: { fieldRef: { fieldPath: string } } }[] }[] };
    };
    assert.deepEqual(pod.spec.volumes.find((v) => v.name === 'ha-lease')?.hostPath?.path, '/var/lib/keyvirt/shared');
    const c = pod.spec.containers[0];
    assert.deepEqual(c?.volumeMounts.find((m) => m.name === 'ha-lease'), { name: 'ha-lease', mountPath: '/var/lib/keyvirt/lease', subPath: 'leases/prod/web-1', readOnly: false });
    assert.deepEqual(c?.env?.map((e) => [e.name, e.valueFrom.fieldRef.fieldPath]), [['KEYVIRT_POD_UID', 'metadata.uid'], ['KEYVIRT_NODE_NAME', 'spec.nodeName']]);
    const config = LauncherConfigSchema.parse(launcherConfig(input({ lease })));
    assert.equal(config.lease?.path, '/var/lib/keyvirt/lease/lease');
    assert.equal(config.lease?.nodeFenced, true);
    assert.equal(config.lease?.renewIntervalMs, 1000);
  });

  void it('a VM without a lease gets neither the mount, nor the environment, nor a lease block', () => {
    const pod = JSON.stringify(renderLauncherPod(input(), 'h'));
    assert.doesNotMatch(pod, /ha-lease|KEYVIRT_POD_UID/);
    assert.equal(launcherConfig(input()).lease, undefined);
  });

  void it('an HA replacement has its own name, Secret and label, and runs in mode run', () => {
    const replacement = { podName: 'launcher-web-1-0123456789', replacedUid: 'old-uid' };
    const pod = renderLauncherPod(input({ lease, haReplacement: replacement }), 'h') as {
      metadata: { name: string; labels: Record<string, string>; annotations: Record<string, string> };
      spec: { volumes: { name: string; secret?: { secretName: string } }[] };
    };
    assert.equal(pod.metadata.name, 'launcher-web-1-0123456789');
    assert.equal(pod.metadata.labels['keyvirt.io/ha-replacement'], 'old-uid');
    assert.equal(pod.metadata.annotations['keyvirt.io/ha-replaced'], 'old-uid');
    assert.equal(pod.metadata.annotations['keyvirt.io/storage-lease'], 'shared');
    assert.equal(pod.spec.volumes.find((v) => v.name === 'launcher-config')?.secret?.secretName, 'launcher-web-1-0123456789');
    const secret = renderLauncherSecret(vm, 't', launcherConfig(input({ lease, haReplacement: replacement })), undefined, replacement) as { metadata: { name: string; labels: Record<string, string> } };
    assert.equal(secret.metadata.name, 'launcher-web-1-0123456789');
    assert.equal(secret.metadata.labels['keyvirt.io/ha-replacement'], 'old-uid');
    assert.equal(launcherConfig(input({ lease, haReplacement: replacement })).mode, 'run');
  });
});
