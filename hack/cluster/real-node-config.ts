// What a real node (kubelet + containerd) is made of, as pure data: its paths, addresses,
// cgroup root, and the text of every file it is started with. No I/O here; real-nodes.ts
// writes these files and starts the processes (docs/adr/0076-real-nodes-on-one-host.md).
import path from 'node:path';
import { stringify } from 'yaml';
import { apiServerUrl, network, nodeNetNames, nodeSlice } from './layout.ts';

/** The real nodes `ensureRealNodes` starts. */
export const realNodeNames: readonly string[] = ['real-1', 'real-2'];

/** Every real node carries this NoSchedule taint: only pods that tolerate it land there. */
export const realNodeTaint = { key: 'keyvirt.io/real-node', value: 'true', effect: 'NoSchedule' } as const;
/** Every real node carries this label (value "true"). */
export const realNodeLabel = 'keyvirt.io/real-node';

/** Pod CIDRs of real nodes: 10.79.<index>.0/24 (10.78.0.0/24 is the test peers'). */
export function realNodePodCidr(index: number): { cidr: string; gateway: string } {
  nodeSlice(index);
  return { cidr: `10.79.${index}.0/24`, gateway: `10.79.${index}.1` };
}

/** Kernel tunables the kubelet sets host-wide unless they already hold these values. */
export const kubeletKernelTunables: Readonly<Record<string, string>> = {
  'vm/overcommit_memory': '1',
  'vm/panic_on_oom': '0',
  'kernel/panic': '10',
  'kernel/panic_on_oops': '1',
  'kernel/keys/root_maxkeys': '1000000',
  'kernel/keys/root_maxbytes': '25000000',
};

/**
 * Paths the kubelet, containerd or the CNI plugins hard-code on the host. Inside a real
 * node's mount namespace each one is a bind mount of a directory of that node.
 */
export const privateHostPaths: readonly string[] = [
  '/var/lib/kubelet/device-plugins',
  '/var/log/pods',
  '/var/log/containers',
  '/var/lib/cni',
  '/run/containerd',
];

export interface RealNodePlan {
  readonly name: string;
  readonly index: number;
  readonly nodeIp: string;
  readonly podCidr: string;
  readonly podGateway: string;
  readonly netns: string;
  readonly uplinkHost: string;
  readonly dir: string;
  readonly kubeletRootDir: string;
  readonly containerdRoot: string;
  readonly containerdState: string;
  readonly containerdSocket: string;
  readonly containerdConfig: string;
  readonly cniConfDir: string;
  readonly kubeletConfig: string;
  readonly kubeletKubeconfig: string;
  readonly servingCert: string;
  readonly servingKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** The node's directory behind each of `privateHostPaths`. */
  readonly privateDirs: Readonly<Record<string, string>>;
  /** Files holding the values the kubelet wants, bound over the host's /proc/sys entries. */
  readonly tunablesDir: string;
  /** The kubelet's cgroup root (the same path under every cgroup v1 hierarchy). */
  readonly cgroupRoot: string;
}

/** The cgroup directory under which every real node has its own cgroup root. */
export const realNodesCgroupParent = '/keyvirt-real-nodes';

/** The node's own directory behind a hard-coded host path (see `privateHostPaths`). */
export function privateDirOf(realNodesDir: string, name: string, hostPath: string): string {
  return path.join(realNodesDir, name, 'host', hostPath.slice(1).replaceAll('/', '_'));
}

export function realNodePlan(realNodesDir: string, name: string, index: number): RealNodePlan {
  if (!/^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$/.test(name)) throw new RangeError(`real node name ${JSON.stringify(name)} is not a DNS label of at most 32 characters`);
  const slice = nodeSlice(index);
  const { netns, uplinkHost } = nodeNetNames(index);
  const pod = realNodePodCidr(index);
  const dir = path.join(realNodesDir, name);
  const privateDirs: Record<string, string> = {};
  for (const p of privateHostPaths) privateDirs[p] = privateDirOf(realNodesDir, name, p);
  return {
    name, index, nodeIp: slice.nodeIp, podCidr: pod.cidr, podGateway: pod.gateway, netns, uplinkHost, dir,
    kubeletRootDir: path.join(dir, 'kubelet'),
    containerdRoot: path.join(dir, 'containerd', 'root'),
    containerdState: path.join(dir, 'containerd', 'state'),
    containerdSocket: path.join(dir, 'containerd', 'containerd.sock'),
    containerdConfig: path.join(dir, 'containerd.toml'),
    cniConfDir: path.join(dir, 'cni'),
    kubeletConfig: path.join(dir, 'kubelet.yaml'),
    kubeletKubeconfig: path.join(dir, 'kubelet.kubeconfig'),
    servingCert: path.join(dir, 'pki', 'serving.crt'),
    servingKey: path.join(dir, 'pki', 'serving.key'),
    clientCert: path.join(dir, 'pki', 'client.crt'),
    clientKey: path.join(dir, 'pki', 'client.key'),
    privateDirs,
    tunablesDir: path.join(dir, 'sysctl'),
    cgroupRoot: `${realNodesCgroupParent}/${name}`,
  };
}

function tomlString(value: string): string {
  return JSON.stringify(value);
}

/** containerd 1.6 configuration (version 2) of one node. */
export function containerdConfigText(plan: RealNodePlan, sandboxImage: string): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return `# Generated by hack/cluster/real-node-config.ts for node ${plan.name}; rewritten at every start.
version = 2
root = ${tomlString(plan.containerdRoot)}
state = ${tomlString(plan.containerdState)}
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = ${tomlString(plan.containerdSocket)}

[ttrpc]
  address = ${tomlString(`${plan.containerdSocket}.ttrpc`)}

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = ${tomlString(path.join(plan.dir, 'containerd', 'opt'))}

[${cri}]
  sandbox_image = ${tomlString(sandboxImage)}
  # Without it every sandbox fails here: "runc create failed: can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_unprivileged_ports = false
  enable_unprivileged_icmp = false

[${cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[${cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[${cri}.containerd.runtimes.runc.options]
  BinaryName = "/usr/sbin/runc"
  SystemdCgroup = false

[${cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = ${tomlString(plan.cniConfDir)}
  max_conf_num = 1
`;
}

/** The CNI network of one node: a bridge in the node's namespace, addresses from its pod CIDR. */
export function cniConfigText(plan: RealNodePlan): string {
  return `${JSON.stringify({
    cniVersion: '1.0.0',
    name: 'keyvirt-real-node',
    plugins: [{
      type: 'bridge',
      bridge: 'cni0',
      isGateway: true,
      ipMasq: false,
      hairpinMode: true,
      ipam: {
        type: 'host-local',
        ranges: [[{ subnet: plan.podCidr, gateway: plan.podGateway }]],
        routes: [{ dst: '0.0.0.0/0' }],
      },
    }],
  }, null, 2)}\n`;
}

/** The KubeletConfiguration of one node. */
export function kubeletConfigText(plan: RealNodePlan, caFile: string): string {
  const config = {
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    containerRuntimeEndpoint: `unix://${plan.containerdSocket}`,
    cgroupDriver: 'cgroupfs',
    cgroupRoot: plan.cgroupRoot,
    failCgroupV1: false,
    failSwapOn: false,
    address: plan.nodeIp,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: 10248,
    tlsCertFile: plan.servingCert,
    tlsPrivateKeyFile: plan.servingKey,
    tlsMinVersion: 'VersionTLS12',
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true, cacheTTL: '30s' },
      x509: { clientCAFile: caFile },
    },
    authorization: { mode: 'Webhook', webhook: { cacheAuthorizedTTL: '30s', cacheUnauthorizedTTL: '10s' } },
    registerNode: true,
    registerWithTaints: [realNodeTaint],
    maxPods: 110,
    podPidsLimit: 4096,
    resolvConf: '/etc/resolv.conf',
    serializeImagePulls: false,
    // Images are imported, never pulled: nothing may collect them.
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    evictionHard: { 'memory.available': '100Mi', 'nodefs.available': '1%', 'imagefs.available': '1%', 'nodefs.inodesFree': '1%' },
    nodeStatusUpdateFrequency: '5s',
    nodeStatusReportFrequency: '30s',
    syncFrequency: '10s',
    fileCheckFrequency: '10s',
    shutdownGracePeriod: '0s',
    logging: { format: 'text' },
  };
  return `# Generated by hack/cluster/real-node-config.ts for node ${plan.name}; rewritten at every start.\n${stringify(config)}`;
}

/** The kubelet's kubeconfig: its own client certificate (system:node:<name>). */
export function kubeletKubeconfigText(plan: RealNodePlan, caFile: string): string {
  const user = `system:node:${plan.name}`;
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'keyvirt', cluster: { server: apiServerUrl, 'certificate-authority': caFile } }],
    users: [{ name: user, user: { 'client-certificate': plan.clientCert, 'client-key': plan.clientKey } }],
    contexts: [{ name: `${user}@keyvirt`, context: { cluster: 'keyvirt', user } }],
    'current-context': `${user}@keyvirt`,
  });
}

/** The kubelet's command line (everything else is in its configuration file). */
export function kubeletArgs(plan: RealNodePlan): string[] {
  return [
    `--config=${plan.kubeletConfig}`, `--kubeconfig=${plan.kubeletKubeconfig}`, `--root-dir=${plan.kubeletRootDir}`,
    `--hostname-override=${plan.name}`, `--node-ip=${plan.nodeIp}`, `--node-labels=${realNodeLabel}=true`, '--v=1',
  ];
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/**
 * The script that containerd's process runs in its fresh mount namespace before it
 * becomes containerd: every hard-coded host path bound to the node's own directory,
 * and each differing kernel tunable shown as a read-only file holding the kubelet's value.
 */
export function mountNamespaceScript(plan: RealNodePlan, tunables: readonly string[]): string {
  const lines = ['set -eu'];
  for (const [target, source] of Object.entries(plan.privateDirs)) {
    lines.push(`mount --bind ${shellQuote(source)} ${shellQuote(target)}`);
  }
  for (const key of tunables) {
    const file = shellQuote(path.join(plan.tunablesDir, key.replaceAll('/', '.')));
    const target = shellQuote(`/proc/sys/${key}`);
    lines.push(`mount --bind ${file} ${target}`, `mount -o remount,bind,ro ${target}`);
  }
  lines.push('exec "$@"');
  return lines.join('\n');
}

/** Routes a node's namespace needs: to every other real node's pods, straight over the cluster bridge. */
export function podRoutesFrom(plan: RealNodePlan, others: readonly RealNodePlan[]): Array<{ dst: string; via: string }> {
  return others.filter((o) => o.name !== plan.name).map((o) => ({ dst: o.podCidr, via: o.nodeIp }));
}

/** The network facts a node's namespace is set up with. */
export function nodeNetwork(plan: RealNodePlan): { address: string; gateway: string } {
  return { address: `${plan.nodeIp}/${network.prefixLength}`, gateway: network.gateway };
}
