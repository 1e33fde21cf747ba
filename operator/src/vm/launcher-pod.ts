// Renders a VM's launcher pod and the Secret it mounts (the per-VM API token and the
// launcher configuration). Pure: every decision (node, disks, image) is an input.
// Node devices (/dev/kvm, /dev/net/tun) come from the node agent's device plugins as
// extended resources, never as hostPath volumes (ADR 0079).
// The pod is hardened (ADR 0108): no capabilities but NET_ADMIN for a bridge NIC's tap,
// no privilege escalation, RuntimeDefault seccomp, a read-only root filesystem, and only
// the VM's own disk images and templates mounted (ADR 0106).
import { createHash } from 'node:crypto';
import type { VirtualMachine } from '@keyvirt/crds';
import { LAUNCHER_CONFIG_API_VERSION, LEASE_HOLDER_ENV, LEASE_NODE_ENV, type LauncherConfigInput } from '@keyvirt/launcher/api';
import { controllerReference } from '../runtime/owner-mapping.ts';
import type { LeaseDomain, ResolvedDisk, VolumeSource } from './disk-volumes.ts';
import { launcherDeviceRequests } from './launcher-devices.ts';
import { launcherResources } from './launcher-resources.ts';
import { launcherMakesTap, podNetworkAnnotations, podNetworkConfig, type PodNetworkMode } from './launcher-pod-network.ts';
import { heldPodContainer, LABEL_LAUNCHER_HOST, LAUNCHER_HOST_NODE_AGENT, type LauncherHost } from './held-launcher.ts';
import {
  ANNOTATION_CONFIG_HASH,
  ANNOTATION_MEMORY_OVERHEAD,
  ANNOTATION_HA_REPLACED,
  ANNOTATION_STORAGE_LEASE,
  LABEL_COMPONENT,
  LABEL_EVICTION_STRATEGY,
  LABEL_HA_REPLACEMENT,
  LABEL_MANAGED_BY,
  LABEL_MIGRATION_TARGET,
  LABEL_VM,
  LABEL_VM_UID,
  LAUNCHER_COMPONENT,
  MANAGED_BY,
  launcherPodName,
  launcherSecretName,
  virtualMachineType,
} from './names.ts';

export const LAUNCHER_CONTAINER = 'launcher';
export const LAUNCHER_PORT = 8443;
const CONFIG_DIR = '/var/run/keyvirt/launcher';
export const STATE_DIR = '/var/run/keyvirt/state';
/**
 * The state emptyDir holds sockets, the cloud-init seed and the serial log (rotated at
 * 8 MiB, two generations): a guest flooding its console cannot fill the node's disk.
 */
export const STATE_SIZE_LIMIT = '64Mi';
export const CONFIG_FILE = `${CONFIG_DIR}/config.json`;
export const TOKEN_FILE = `${CONFIG_DIR}/token`;
/** Where an HA VM's lease directory (`leases/<namespace>/<vm>` on its domain) is mounted. */
export const LEASE_DIR = '/var/lib/keyvirt/lease';
export const LEASE_FILE = `${LEASE_DIR}/lease`;

/** How the operator runs launchers (from its own configuration). */
export interface LauncherSettings {
  image: string;
  /** Arguments after the image's entrypoint. */
  args: readonly string[];
  imagePullPolicy: 'Always' | 'IfNotPresent' | 'Never';
  /** The cluster-wide emulation switch (KubeVirt's useEmulation). */
  allowEmulation: boolean;
  /** The cluster's metrics key: launcher Secrets then carry the VM's read-only metrics token (ADR 0069). */
  metricsKey?: Buffer | undefined;
  /** Who prepares the guest's pod network (ADR 0094): the node agent, or QEMU's user-mode network. */
  podNetwork?: PodNetworkMode | undefined;
  /** Where launchers run (ADR 0134): in their pods, or in the node agent for the VMs it can serve. */
  launcherHost?: LauncherHost | undefined;
  /** A held HA VM's lease stays renewed this long while its node agent restarts (ADR 0138); 0 or absent: none. */
  agentRestartGraceSeconds?: number | undefined;
}

export interface LauncherPodInput {
  vm: VirtualMachine;
  settings: LauncherSettings;
  affinity: Record<string, unknown>;
  /** The device resources the chosen node advertises (devices.keyvirt.io/…): the pod requests those the VM needs. */
  devices: readonly string[];
  disks: readonly ResolvedDisk[];
  /** Render a migration target instead of the VM's own launcher (ADR 0081). */
  migrationTarget?: MigrationTargetNaming | undefined;
  /** The storage lease of an HA VM (ADR 0064); absent for other VMs: no lease at all. */
  lease?: LeaseMount | undefined;
  /** Render an HA replacement launcher instead of the VM's own launcher (ADR 0064). */
  haReplacement?: HaReplacementNaming | undefined;
}

export interface LeaseMount {
  readonly domain: LeaseDomain;
  /** The previous holder's node is known fenced: the launcher claims the lease without waiting for expiry. */
  readonly nodeFenced: boolean;
}

/** How an HA replacement pod differs from the VM's own launcher pod: name, Secret, label. */
export interface HaReplacementNaming {
  /** The pod's name; its Secret has the same name. */
  readonly podName: string;
  /** The UID of the launcher pod it replaces, the value of the ha-replacement label. */
  readonly replacedUid: string;
}

/** How a migration target pod differs from the VM's own launcher pod: name, Secret, label, mode. */
export interface MigrationTargetNaming {
  /** The pod's name; its Secret has the same name. */
  readonly podName: string;
  /** The VirtualMachineMigration's UID, the value of the migration-target label. */
  readonly migrationUid: string;
}

function podNameOf(input: LauncherPodInput): string {
  return input.migrationTarget?.podName ?? input.haReplacement?.podName ?? launcherPodName(input.vm.metadata.name);
}

/** The Secret a launcher pod mounts: the VM's own, or the target's (replacement's) of the same name as its pod. */
export function secretNameOf(input: LauncherPodInput): string {
  return input.migrationTarget?.podName ?? input.haReplacement?.podName ?? launcherSecretName(input.vm.metadata.name);
}

/** The labels that set a candidate pod (migration target, HA replacement) apart from the VM's launcher. */
export function candidateLabels(input: Pick<LauncherPodInput, 'migrationTarget' | 'haReplacement'>): Record<string, string> {
  const target = input.migrationTarget;
  if (target !== undefined) return { [LABEL_MIGRATION_TARGET]: target.migrationUid };
  const replacement = input.haReplacement;
  return replacement === undefined ? {} : { [LABEL_HA_REPLACEMENT]: replacement.replacedUid };
}

/** True for a label key the operator sets or reads itself: the VM's author may not set it on a pod. */
function reservedLabelKey(key: string): boolean {
  const prefix = key.includes('/') ? key.slice(0, key.indexOf('/')) : '';
  return prefix === 'keyvirt.io' || prefix.endsWith('.keyvirt.io') || key === LABEL_COMPONENT || key === LABEL_MANAGED_BY;
}

/**
 * The VM's own labels as the launcher pod carries them, so that a Service (or any
 * selector) on the VM's labels selects its launcher pod; keys under keyvirt.io and the
 * operator's own app.kubernetes.io keys are left out (ADR 0099).
 */
export function copiedVmLabels(vm: VirtualMachine): Record<string, string> {
  const copied: Record<string, string> = {};
  for (const [key, value] of Object.entries(vm.metadata.labels ?? {})) {
    if (!reservedLabelKey(key)) copied[key] = value;
  }
  return copied;
}

function labelsOf(input: LauncherPodInput): Record<string, string> {
  return {
    ...copiedVmLabels(input.vm), ...labels(input.vm), [LABEL_EVICTION_STRATEGY]: input.vm.spec.evictionStrategy, ...candidateLabels(input),
    ...(heldByNodeAgent(input) ? { [LABEL_LAUNCHER_HOST]: LAUNCHER_HOST_NODE_AGENT } : {}),
  };
}

export function mayEmulate(vm: VirtualMachine, settings: LauncherSettings): boolean {
  return settings.allowEmulation || vm.spec.template.allowEmulation;
}

/**
 * Whether the node agent runs this pod's launcher, the pod holding QEMU (ADR 0134): when
 * the operator is so configured and the VM needs nothing the agent cannot do yet (a
 * migration target, a tap or the pod network; an HA VM is held, ADR 0136); otherwise the launcher
 * runs in the pod as always.
 */
export function heldByNodeAgent(input: Pick<LauncherPodInput, 'vm' | 'settings' | 'lease' | 'migrationTarget'>): boolean {
  const { vm, settings } = input;
  // An HA VM's lease is held by the agent as the pod (ADR 0136); a migration target is not.
  if (settings.launcherHost !== LAUNCHER_HOST_NODE_AGENT || input.migrationTarget !== undefined) return false;
  if (vm.spec.template.interfaces.some((i) => i.binding === 'bridge')) return false;
  return Object.keys(podNetworkAnnotations(vm, settings.podNetwork)).length === 0;
}

/** An HA VM's lease; held by the node agent, with the grace of its parting renewal (ADR 0138). */
function leaseConfig(lease: NonNullable<LauncherPodInput['lease']>, held: boolean, settings: LauncherSettings): NonNullable<LauncherConfigInput['lease']> {
  const grace = held ? (settings.agentRestartGraceSeconds ?? 0) : 0;
  return { path: LEASE_FILE, nodeFenced: lease.nodeFenced, ...(grace > 0 ? { agentRestartGraceMs: grace * 1000 } : {}) };
}

/** The launcher configuration written into the Secret. */
export function launcherConfig(input: LauncherPodInput): LauncherConfigInput {
  const { vm } = input;
  const held = heldByNodeAgent(input);
  const uid = vm.metadata.uid ?? '';
  const disks: Record<string, { path: string; format: 'qcow2' | 'raw' }> = {};
  for (const d of input.disks) disks[d.name] = { path: d.path, format: d.format };
  return {
    apiVersion: LAUNCHER_CONFIG_API_VERSION,
    vm: { name: vm.metadata.name, namespace: vm.metadata.namespace ?? 'default', uid },
    template: vm.spec.template,
    terminationGracePeriodSeconds: vm.spec.terminationGracePeriodSeconds,
    mode: input.migrationTarget === undefined ? 'run' : 'migration-target',
    disks,
    listen: { address: '0.0.0.0', port: LAUNCHER_PORT },
    tokenFile: TOKEN_FILE,
    stateDir: STATE_DIR,
    allowEmulation: mayEmulate(vm, input.settings),
    ...podNetworkConfig(vm, input.settings.podNetwork),
    ...(input.lease === undefined ? {} : { lease: leaseConfig(input.lease, held, input.settings) }),
    ...(held ? { qemu: { host: 'pod' as const } } : {}),
  };
}

export function configHash(config: LauncherConfigInput): string {
  return createHash('sha256').update(JSON.stringify(config)).digest('hex').slice(0, 16);
}

function labels(vm: VirtualMachine): Record<string, string> {
  return {
    [LABEL_COMPONENT]: LAUNCHER_COMPONENT,
    [LABEL_MANAGED_BY]: MANAGED_BY,
    [LABEL_VM]: vm.metadata.name,
    [LABEL_VM_UID]: vm.metadata.uid ?? '',
  };
}

/** The Secret: `token` (the launcher's bearer token) and `config.json`. */
export function renderLauncherSecret(
  vm: VirtualMachine,
  token: string,
  config: LauncherConfigInput,
  target?: MigrationTargetNaming,
  replacement?: HaReplacementNaming,
): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: target?.podName ?? replacement?.podName ?? launcherSecretName(vm.metadata.name),
      namespace: vm.metadata.namespace,
      labels: { ...labels(vm), ...candidateLabels({ migrationTarget: target, haReplacement: replacement }) },
      ownerReferences: [controllerReference(virtualMachineType, vm)],
    },
    type: 'Opaque',
    data: {
      token: Buffer.from(token).toString('base64'),
      'config.json': Buffer.from(JSON.stringify(config)).toString('base64'),
    },
  };
}

interface Volume {
  name: string;
  [source: string]: unknown;
}

function diskVolume(d: ResolvedDisk): Volume {
  const source: VolumeSource = d.source;
  return { name: `disk-${d.name}`, ...source };
}

/** The disk mounts, one per mount path (two disks over one template share its mount). */
function diskMounts(disks: readonly ResolvedDisk[]): unknown[] {
  const seen = new Set<string>();
  const mounts: unknown[] = [];
  for (const d of disks) {
    for (const m of d.mounts) {
      if (seen.has(m.mountPath)) continue;
      seen.add(m.mountPath);
      mounts.push({ name: `disk-${d.name}`, mountPath: m.mountPath, readOnly: m.readOnly, ...(m.subPath === undefined ? {} : { subPath: m.subPath }) });
    }
  }
  return mounts;
}

/**
 * The launcher container's securityContext: every capability dropped but NET_ADMIN when
 * a bridge-bound NIC needs the launcher to create its tap (masquerade NICs run in QEMU's
 * user-mode network and need none). Root in the container, without capabilities: the
 * images on hostPath and NFS domains are root's and /dev/kvm is root's (ADR 0108).
 */
export function launcherSecurityContext(vm: VirtualMachine, podNetwork?: PodNetworkMode): Record<string, unknown> {
  const bridged = launcherMakesTap(vm, podNetwork);
  return {
    privileged: false,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'], ...(bridged ? { add: ['NET_ADMIN'] } : {}) },
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

/** The launcher pod. `configHash` ties the pod to the Secret content it started with. */
export function renderLauncherPod(input: LauncherPodInput, hash: string): unknown {
  const { vm, settings } = input;
  const held = heldByNodeAgent(input);
  const resources = launcherResources(vm.spec.template, mayEmulate(vm, settings), held);
  // Extended resources: requests equal limits.
  const devices = launcherDeviceRequests(vm, input.devices, settings.podNetwork);
  const limits = { ...resources.limits, ...devices };
  const volumes: Volume[] = [
    { name: 'launcher-config', secret: { secretName: secretNameOf(input), defaultMode: 0o400 } },
    { name: 'state', emptyDir: { sizeLimit: STATE_SIZE_LIMIT } },
    ...input.disks.map(diskVolume),
    ...(input.lease === undefined ? [] : [{ name: 'ha-lease', ...input.lease.domain.source }]),
  ];
  const mounts: unknown[] = [
    { name: 'launcher-config', mountPath: CONFIG_DIR, readOnly: true },
    { name: 'state', mountPath: STATE_DIR },
    ...diskMounts(input.disks),
    ...(input.lease === undefined ? [] : [{ name: 'ha-lease', mountPath: LEASE_DIR, subPath: input.lease.domain.leaseDir, readOnly: false }]),
  ];
  // The lease holder is this pod: its UID (and node, for the record) from the downward API.
  const env =
    input.lease === undefined
      ? []
      : [
          { name: LEASE_HOLDER_ENV, valueFrom: { fieldRef: { fieldPath: 'metadata.uid' } } },
          { name: LEASE_NODE_ENV, valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
        ];
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: podNameOf(input),
      namespace: vm.metadata.namespace,
      labels: labelsOf(input),
      annotations: {
        [ANNOTATION_CONFIG_HASH]: hash,
        [ANNOTATION_MEMORY_OVERHEAD]: String(resources.overheadBytes),
        ...(input.haReplacement === undefined ? {} : { [ANNOTATION_HA_REPLACED]: input.haReplacement.replacedUid }),
        ...(input.lease === undefined ? {} : { [ANNOTATION_STORAGE_LEASE]: input.lease.domain.domain }),
        ...podNetworkAnnotations(vm, settings.podNetwork),
      },
      ownerReferences: [controllerReference(virtualMachineType, vm)],
    },
    spec: {
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      hostname: vm.metadata.name,
      terminationGracePeriodSeconds: vm.spec.terminationGracePeriodSeconds + 30,
      affinity: input.affinity,
      securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
      ...(vm.spec.nodeSelector === undefined ? {} : { nodeSelector: vm.spec.nodeSelector }),
      ...(vm.spec.tolerations === undefined ? {} : { tolerations: vm.spec.tolerations }),
      containers: [
        {
          name: LAUNCHER_CONTAINER,
          image: settings.image,
          imagePullPolicy: settings.imagePullPolicy,
          ...(held
            ? heldPodContainer({ stateDir: STATE_DIR, graceSeconds: vm.spec.terminationGracePeriodSeconds })
            : { args: [...settings.args, '--config', CONFIG_FILE], ...(env.length > 0 ? { env } : {}) }),
          ports: [{ name: 'launcher-api', containerPort: LAUNCHER_PORT, protocol: 'TCP' }],
          resources: { requests: { ...resources.requests, ...devices }, ...(Object.keys(limits).length > 0 ? { limits } : {}) },
          volumeMounts: mounts,
          securityContext: launcherSecurityContext(vm, settings.podNetwork),
          readinessProbe: { tcpSocket: { port: LAUNCHER_PORT }, periodSeconds: 5 },
        },
      ],
      volumes,
    },
  };
}
