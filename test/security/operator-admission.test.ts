// What the operator's and the node agent's service accounts may do, against the real
// API server with the chart's RBAC and admission policies installed for a release of
// this suite's own (its namespace, its policy names): the operator creates launcher-
// and storage-job-shaped pods and nothing else (no privileged pod in kube-system, no
// host namespace, no foreign image, no hostPath outside the allowed directories), touches
// only the Secrets and volumes it manages, and the node agent changes only its own node.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VirtualMachine } from '@keyvirt/crds';
import { KubeConfig } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { z } from 'zod';
import { storageJobPod } from '../../operator/src/storage/storage-job.ts';
import { renderLauncherPod } from '../../operator/src/vm/launcher-pod.ts';
import { KVM_RESOURCE } from '../../operator/src/node-agent/device-plugin/resource-names.ts';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';

const repo = path.resolve(import.meta.dirname, '../..');
const helmBin = path.join(repo, 'hack/.cache/k8s/bin/helm');
const LAUNCHER_IMAGE = 'localhost/keyvirt/launcher:0.1.0';
const HOST_PATH_PATTERN = '^/tmp/keyvirt-sec/';
const POLICIES = ['pods', 'operator-objects', 'operator-volumes', 'operator-claims', 'node-agent-own-node'] as const;

interface Manifest { kind: string; metadata: { name: string; namespace?: string } }

function kubeVersion(): string {
  const m = /^KUBERNETES_VERSION=(\S+)$/m.exec(fs.readFileSync(path.join(repo, 'hack/k8s/pins.env'), 'utf8'));
  if (m?.[1] === undefined) throw new Error('KUBERNETES_VERSION missing from hack/k8s/pins.env');
  return m[1];
}

/** The outcome of one kubectl call: allowed, or the server's refusal. */
interface Outcome { ok: boolean; out: string }

void describe('operator and node agent service accounts against the real API server', { timeout: 600_000 }, () => {
  let cluster: TestCluster;
  const ns = `kv-sec-${randomBytes(3).toString('hex')}`;
  const release = ns;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kv-sec-'));
  const nodeLabel = `keyvirt.io/sec-test-${randomBytes(3).toString('hex')}`;
  let operator: string;

  const as = (kubeconfig: string, args: readonly string[], input?: unknown): Outcome => {
    const r = spawnSync(cluster.kubectlPath, ['--kubeconfig', kubeconfig, ...args], {
      encoding: 'utf8', input: input === undefined ? undefined : JSON.stringify(input),
    });
    return { ok: r.status === 0, out: `${r.stdout}${r.stderr}` };
  };
  /** A kubeconfig that authenticates with `token`. */
  const tokenKubeconfig = (name: string, token: string): string => {
    const admin = new KubeConfig();
    admin.loadFromFile(cluster.kubeconfig);
    const server = admin.getCurrentCluster();
    if (server === null) throw new Error('admin kubeconfig has no cluster');
    const ca = server.caData ?? fs.readFileSync(server.caFile ?? '').toString('base64');
    const file = path.join(dir, `${name}.kubeconfig`);
    fs.writeFileSync(file, JSON.stringify({
      apiVersion: 'v1', kind: 'Config', 'current-context': name,
      clusters: [{ name: 'local', cluster: { server: server.server, 'certificate-authority-data': ca } }],
      users: [{ name, user: { token } }],
      contexts: [{ name, context: { cluster: 'local', user: name } }],
    }), { mode: 0o600 });
    return file;
  };
  /** PATCH /api/v1/nodes/<node>/status with the token of `kubeconfig`. */
  const patchNodeStatus = async (kubeconfig: string, node: string): Promise<Outcome> => {
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    const server = kc.getCurrentCluster();
    const token = kc.getCurrentUser()?.token;
    if (server === null || token === undefined) throw new Error(`${kubeconfig} has no server or token`);
    const url = new URL(`/api/v1/nodes/${node}/status`, server.server);
    return new Promise((resolve, reject) => {
      const req = https.request(url, {
        method: 'PATCH', ca: Buffer.from(server.caData ?? '', 'base64'),
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/merge-patch+json' },
      }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ ok: (res.statusCode ?? 500) < 300, out: body }));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ status: { capacity: { 'keyvirt.io/sec-test': '1' } } }));
    });
  };
  const denied = (outcome: Outcome, policy: string, message: RegExp): void => {
    assert.equal(outcome.ok, false, `expected a refusal, got: ${outcome.out}`);
    assert.match(outcome.out, new RegExp(`ValidatingAdmissionPolicy '${release}-${policy}' with binding '${release}-${policy}' denied request`), outcome.out);
    assert.match(outcome.out, message);
  };

  const vm = VirtualMachine.parse({
    apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine',
    metadata: { name: 'web-1', namespace: ns, uid: '6a1b5cf2-0000-4000-8000-000000000001' },
    spec: { runStrategy: 'Always', template: { cpu: { cores: 1 }, memory: { size: '256Mi' }, allowEmulation: true } },
  });
  /** A launcher pod as the operator renders it: a domain disk and its template, /dev/kvm from the device plugin. */
  const launcherPod = (): Record<string, unknown> => {
    const pod = renderLauncherPod({
      vm,
      settings: { image: LAUNCHER_IMAGE, args: [], imagePullPolicy: 'Never', allowEmulation: true },
      affinity: {},
      devices: [KVM_RESOURCE],
      disks: [{
        name: 'root', source: { hostPath: { path: '/tmp/keyvirt-sec/domain', type: 'Directory' } }, format: 'qcow2', readOnly: false,
        path: `/var/run/keyvirt/domains/sd/images/${ns}/web-1/root.qcow2`,
        mounts: [
          { subPath: `images/${ns}/web-1/root.qcow2`, mountPath: `/var/run/keyvirt/domains/sd/images/${ns}/web-1/root.qcow2`, readOnly: false },
          { subPath: 'templates/base', mountPath: '/var/run/keyvirt/domains/sd/templates/base', readOnly: true },
        ],
      }],
    }, 'hash');
    return z.looseObject({}).parse(pod);
  };
  type PodMutation = (pod: { metadata: Record<string, unknown>; spec: { containers: Record<string, unknown>[]; volumes: Record<string, unknown>[] } & Record<string, unknown> }) => void;
  const mutated = (mutate: PodMutation, namespace = ns): Record<string, unknown> => {
    const pod = structuredClone(launcherPod()) as Parameters<PodMutation>[0];
    pod.metadata.namespace = namespace;
    mutate(pod);
    return pod;
  };

  before(async () => {
    cluster = await ensureCluster();
    cluster.kubectl(['create', 'namespace', ns]);
    const r = spawnSync(helmBin, ['template', release, path.join(repo, 'charts/keyvirt'), '--namespace', ns, '--kube-version', kubeVersion(),
      '--set', `launcher.hostPathPattern=${HOST_PATH_PATTERN}`, '--set', `launcher.image.tag=${LAUNCHER_IMAGE.split(':')[1] ?? ''}`,
      '--show-only', 'templates/rbac-operator.yaml', '--show-only', 'templates/node-agent.yaml', '--show-only', 'templates/admission-policy.yaml'],
    { encoding: 'utf8', env: { ...process.env, HELM_CACHE_HOME: path.join(repo, 'hack/.cache/helm') } });
    assert.equal(r.status, 0, r.stderr);
    const objects = parseAllDocuments(r.stdout).map((d) => d.toJS() as Manifest | null).filter((o): o is Manifest => o !== null && o.kind !== 'DaemonSet');
    cluster.kubectl(['apply', '-n', ns, '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
    operator = tokenKubeconfig('operator', cluster.kubectl(['create', 'token', 'keyvirt-operator', '-n', ns, '--duration=1h']).trim());
    // Policies compile asynchronously: wait until each reports its type check, then require it clean.
    for (const name of POLICIES) {
      const status = await eventually(`policy ${name} type-checked`, () => {
        const out = cluster.kubectl(['get', 'validatingadmissionpolicy', `${release}-${name}`, '-o', 'jsonpath={.status}']);
        return out.includes('typeChecking') ? out : undefined;
      }, 60_000);
      assert.doesNotMatch(status, /expressionWarnings/, `${name}: ${status}`);
    }
    // The first request through a new binding can race the policy's arrival in the admission plugin.
    await eventually('the pod policy enforced', () => {
      const o = as(operator, ['create', '--dry-run=server', '-f', '-'], mutated((p) => { p.spec.hostNetwork = true; }));
      return o.out.includes('denied request') ? true : undefined;
    }, 60_000);
  });

  after(() => {
    if (cluster === undefined) return;
    for (const args of [
      ['delete', 'namespace', ns, '--wait=false', '--ignore-not-found'],
      ['delete', 'validatingadmissionpolicybinding,validatingadmissionpolicy', ...POLICIES.map((p) => `${release}-${p}`), '--ignore-not-found'],
      ['delete', 'clusterrole,clusterrolebinding', `${release}-operator`, `${release}-node-agent`, '--ignore-not-found'],
      ['label', 'node', '--all', `${nodeLabel}-`],
    ]) {
      try {
        cluster.kubectl(args);
      } catch {
        // best effort: every name is unique to this run
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
    cluster.release();
  });

  void it('lets the operator create a launcher pod and a storage job pod as it renders them', () => {
    const launcher = as(operator, ['create', '--dry-run=server', '-f', '-'], { ...launcherPod(), metadata: { ...(launcherPod().metadata as object), namespace: ns } });
    assert.ok(launcher.ok, launcher.out);
    const job = as(operator, ['create', '--dry-run=server', '-f', '-'], storageJobPod({
      name: 'keyvirt-sd-probe-x', namespace: ns, domain: 'x', claimName: 'keyvirt-sd-x', image: LAUNCHER_IMAGE,
      owner: { apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain', name: 'x', uid: '6a1b5cf2-0000-4000-8000-000000000002', controller: true },
      operation: { op: 'probe' },
    }));
    assert.ok(job.ok, job.out);
  });

  void it('lets the operator create an HA replacement launcher (lease directory, image directory, pod UID) and no lease volume outside the allowed directories', () => {
    const ha = (leasePath: string): Record<string, unknown> => {
      const source = { hostPath: { path: leasePath, type: 'Directory' } };
      const pod = renderLauncherPod({
        vm,
        settings: { image: LAUNCHER_IMAGE, args: [], imagePullPolicy: 'Never', allowEmulation: true },
        affinity: {},
        devices: [],
        disks: [{
          name: 'root', source: { hostPath: { path: '/tmp/keyvirt-sec/domain', type: 'Directory' } }, format: 'raw', readOnly: false,
          path: `/var/run/keyvirt/domains/sd/images/${ns}/web-1/root.raw`,
          mounts: [{ subPath: `images/${ns}/web-1`, mountPath: `/var/run/keyvirt/domains/sd/images/${ns}/web-1`, readOnly: false }],
        }],
        lease: { domain: { domain: 'sd', source, leaseDir: `leases/${ns}/web-1` }, nodeFenced: false },
        haReplacement: { podName: 'launcher-web-1-0123456789', replacedUid: '6a1b5cf2-0000-4000-8000-0000000000aa' },
      }, 'hash');
      const parsed = z.looseObject({ metadata: z.looseObject({}) }).parse(pod);
      return { ...parsed, metadata: { ...parsed.metadata, namespace: ns } };
    };
    const allowed = as(operator, ['create', '--dry-run=server', '-f', '-'], ha('/tmp/keyvirt-sec/domain'));
    assert.ok(allowed.ok, allowed.out);
    const outside = as(operator, ['create', '--dry-run=server', '-f', '-'], ha('/etc'));
    assert.ok(!outside.ok && outside.out.includes('denied request'), outside.out);
  });

  void it('refuses a privileged pod in kube-system, though RBAC alone would allow it', () => {
    const pod = mutated((p) => {
      p.spec.containers[0] = { ...p.spec.containers[0], securityContext: { privileged: true } };
    }, 'kube-system');
    const rbac = as(operator, ['auth', 'can-i', 'create', 'pods', '-n', 'kube-system']);
    assert.equal(rbac.out.trim(), 'yes', 'RBAC grants pod creation cluster-wide: the policy is what stops it');
    denied(as(operator, ['create', '--dry-run=server', '-f', '-'], pod), 'pods', /no pods in kube-\* namespaces/);
    denied(as(operator, ['create', '--dry-run=server', '-f', '-'], mutated((p) => {
      p.spec.containers[0] = { ...p.spec.containers[0], securityContext: { privileged: true } };
    })), 'pods', /launcher containers are unprivileged/);
  });

  const shapes: [string, PodMutation, RegExp][] = [
    ['another image', (p) => { p.spec.containers[0] = { ...p.spec.containers[0], image: 'busybox:1.36' }; }, /configured launcher image localhost\/keyvirt\/launcher:0\.1\.0/],
    ['SYS_ADMIN', (p) => { p.spec.containers[0] = { ...p.spec.containers[0], securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'], add: ['SYS_ADMIN'] } } }; }, /unprivileged/],
    ['privilege escalation', (p) => { p.spec.containers[0] = { ...p.spec.containers[0], securityContext: { capabilities: { drop: ['ALL'] } } }; }, /unprivileged/],
    ['the host network', (p) => { p.spec.hostNetwork = true; }, /no host namespace/],
    ['the host PID namespace', (p) => { p.spec.hostPID = true; }, /no host namespace/],
    ['a service-account token', (p) => { p.spec.automountServiceAccountToken = true; }, /no service-account token/],
    ['the node\'s root as hostPath', (p) => { p.spec.volumes.push({ name: 'host', hostPath: { path: '/' } }); }, /hostPath directories matching/],
    ['the kubelet\'s pods as hostPath', (p) => { p.spec.volumes.push({ name: 'host', hostPath: { path: '/var/lib/kubelet/pods' } }); }, /hostPath directories matching/],
    ['/dev/kvm as a directory', (p) => { p.spec.volumes.push({ name: 'kvm2', hostPath: { path: '/dev/kvm', type: 'Directory' } }); }, /hostPath directories matching/],
    ['/dev/kvm as a hostPath character device', (p) => { p.spec.volumes.push({ name: 'kvm2', hostPath: { path: '/dev/kvm', type: 'CharDevice' } }); }, /devices come from the device plugins/],
    ['a projected volume', (p) => { p.spec.volumes.push({ name: 'p', projected: { sources: [] } }); }, /mount only secret/],
    ['an init container', (p) => { p.spec.initContainers = [{ name: 'init', image: LAUNCHER_IMAGE }]; }, /no init or ephemeral containers/],
    ['a host port', (p) => { p.spec.containers[0] = { ...p.spec.containers[0], ports: [{ containerPort: 8443, hostPort: 8443 }] }; }, /no host ports/],
    ['no KeyVirt label', (p) => { p.metadata.labels = {}; }, /only touches pods labelled/],
  ];
  for (const [what, mutate, message] of shapes) {
    void it(`refuses a launcher pod with ${what}`, () => {
      denied(as(operator, ['create', '--dry-run=server', '-f', '-'], mutated(mutate)), 'pods', message);
    });
  }

  void it('depends on no object beside the policies: with every ConfigMap of the namespace gone, other users write pods and the operator is still held', () => {
    // A binding whose parameter object is missing denies whatever it matches before its
    // match conditions run: during `helm uninstall` that was every pod write in the cluster.
    cluster.kubectl(['delete', 'configmap', '--all', '-n', ns, '--wait=true']);
    const plain = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'plain', namespace: ns }, spec: { containers: [{ name: 'c', image: 'busybox:1.36' }] } };
    assert.match(cluster.kubectl(['create', '--dry-run=server', '-o', 'name', '-f', '-'], JSON.stringify(plain)), /pod\/plain/);
    denied(as(operator, ['create', '--dry-run=server', '-f', '-'], mutated((p) => { p.spec.hostNetwork = true; })), 'pods', /no host namespace/);
  });

  void it('touches only Secrets it manages: no list, no overwrite or deletion of a Secret it does not own', () => {
    cluster.kubectl(['create', 'secret', 'generic', 'launcher-victim', '-n', ns, '--from-literal=password=s3cret']);
    assert.equal(as(operator, ['auth', 'can-i', 'list', 'secrets', '-n', ns]).out.trim(), 'no');
    const owned = {
      apiVersion: 'v1', kind: 'Secret', type: 'Opaque',
      metadata: {
        name: 'launcher-victim', namespace: ns, labels: { 'app.kubernetes.io/managed-by': 'keyvirt-operator' },
        ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: 'VirtualMachine', name: 'victim', uid: '6a1b5cf2-0000-4000-8000-000000000003', controller: true }],
      },
      data: { token: Buffer.from('operator-token').toString('base64') },
    };
    denied(as(operator, ['replace', '-f', '-'], owned), 'operator-objects', /only touches secrets it manages/);
    denied(as(operator, ['delete', 'secret', 'launcher-victim', '-n', ns]), 'operator-objects', /only touches secrets it manages/);
    assert.equal(Buffer.from(cluster.kubectl(['get', 'secret', 'launcher-victim', '-n', ns, '-o', 'jsonpath={.data.password}']), 'base64').toString(), 's3cret');
    denied(as(operator, ['create', '--dry-run=server', '-f', '-'], { ...owned, metadata: { name: 'launcher-new', namespace: ns } }), 'operator-objects', /only touches secrets it manages/);
    const create = as(operator, ['create', '--dry-run=server', '-f', '-'], { ...owned, metadata: { ...owned.metadata, name: 'launcher-new' } });
    assert.ok(create.ok, create.out);
  });

  void it('creates hostPath PersistentVolumes only in the allowed directories, and claims only of its own volumes', () => {
    const pv = (hostPath: string): Record<string, unknown> => ({
      apiVersion: 'v1', kind: 'PersistentVolume',
      metadata: {
        name: `keyvirt-sd-${ns}`, labels: { 'app.kubernetes.io/managed-by': 'keyvirt-operator' },
        ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain', name: 'x', uid: '6a1b5cf2-0000-4000-8000-000000000004', controller: true }],
      },
      spec: { capacity: { storage: '1Gi' }, accessModes: ['ReadWriteMany'], hostPath: { path: hostPath, type: 'Directory' } },
    });
    denied(as(operator, ['create', '--dry-run=server', '-f', '-'], pv('/')), 'operator-volumes', /hostPath PersistentVolumes only at paths matching/);
    denied(as(operator, ['create', '--dry-run=server', '-f', '-'], pv('/var/lib/kubelet')), 'operator-volumes', /hostPath PersistentVolumes only/);
    const allowed = as(operator, ['create', '--dry-run=server', '-f', '-'], pv('/tmp/keyvirt-sec/domain'));
    assert.ok(allowed.ok, allowed.out);
    denied(as(operator, ['create', '--dry-run=server', '-f', '-'], {
      apiVersion: 'v1', kind: 'PersistentVolumeClaim',
      metadata: { name: 'steal', namespace: ns, labels: { 'app.kubernetes.io/managed-by': 'keyvirt-operator' }, ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain', name: 'x', uid: '6a1b5cf2-0000-4000-8000-000000000004' }] },
      spec: { accessModes: ['ReadWriteOnce'], volumeName: 'someone-elses-volume', resources: { requests: { storage: '1Gi' } } },
    }), 'operator-claims', /claims bind only to KeyVirt's own volumes/);
  });

  void it('lets the node agent change its own node and no other', async () => {
    const [own = '', other = ''] = cluster.defaultNodes;
    cluster.kubectl(['apply', '-f', '-'], JSON.stringify({
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name: 'agent', namespace: ns },
      spec: {
        nodeName: own, serviceAccountName: 'keyvirt-node-agent', automountServiceAccountToken: false, terminationGracePeriodSeconds: 1,
        containers: [{ name: 'main', image: 'busybox', command: ['sh', '-c', 'sleep 600'] }],
      },
    }));
    const bound = tokenKubeconfig('agent', cluster.kubectl(['create', 'token', 'keyvirt-node-agent', '-n', ns, '--bound-object-kind=Pod', '--bound-object-name=agent', '--duration=1h']).trim());
    const unbound = tokenKubeconfig('agent-unbound', cluster.kubectl(['create', 'token', 'keyvirt-node-agent', '-n', ns, '--duration=1h']).trim());
    const label = (kubeconfig: string, node: string): Outcome => as(kubeconfig, ['label', 'node', node, `${nodeLabel}=x`, '--overwrite']);
    await eventually('the node-agent policy enforced', () => (label(bound, other).out.includes('denied request') ? true : undefined), 60_000);
    const mine = label(bound, own);
    assert.ok(mine.ok, mine.out);
    assert.equal(cluster.kubectl(['get', 'node', own, '-o', `jsonpath={.metadata.labels.${nodeLabel.replaceAll('.', '\\.')}}`]), 'x');
    denied(label(bound, other), 'node-agent-own-node', new RegExp(`may change only the node its pod runs on, not ${other}`));
    denied(label(unbound, own), 'node-agent-own-node', /may change only the node its pod runs on/);
    // The status subresource, as the agent writes it (a merge patch; the agent cannot GET nodes/status).
    denied(await patchNodeStatus(bound, other), 'node-agent-own-node', /may change only the node its pod runs on/);
  });

  void it('needs Pod Security baseline for a VM on claims and masquerade, privileged once a hostPath or a bridge tap is involved, and never meets restricted', () => {
    const levels = ['restricted', 'baseline', 'privileged'] as const;
    const namespaces = Object.fromEntries(levels.map((level) => {
      const name = `${ns}-pss-${level}`;
      cluster.kubectl(['create', 'namespace', name]);
      cluster.kubectl(['label', 'namespace', name, `pod-security.kubernetes.io/enforce=${level}`]);
      return [level, name];
    })) as Record<(typeof levels)[number], string>;
    try {
      const render = (options: { hostPathDisk: boolean; bridge: boolean; namespace: string }): Record<string, unknown> => z.looseObject({}).parse(renderLauncherPod({
        vm: VirtualMachine.parse({
          ...vm,
          metadata: { ...vm.metadata, namespace: options.namespace },
          spec: { ...vm.spec, template: { ...vm.spec.template, interfaces: [{ name: 'default', binding: options.bridge ? 'bridge' : 'masquerade' }] } },
        }),
        settings: { image: LAUNCHER_IMAGE, args: [], imagePullPolicy: 'Never', allowEmulation: true },
        affinity: {},
        devices: [],
        disks: [options.hostPathDisk
          ? { name: 'root', source: { hostPath: { path: '/var/lib/keyvirt/sd', type: 'Directory' } }, format: 'raw', readOnly: false, path: '/var/run/keyvirt/domains/sd/images/x/web-1/root.raw', mounts: [{ subPath: 'images/x/web-1/root.raw', mountPath: '/var/run/keyvirt/domains/sd/images/x/web-1/root.raw', readOnly: false }] }
          : { name: 'root', source: { persistentVolumeClaim: { claimName: 'web-1-root' } }, format: 'raw', readOnly: false, path: '/var/run/keyvirt/disks/root/disk.img', mounts: [{ mountPath: '/var/run/keyvirt/disks/root', readOnly: false }] }],
      }, 'hash'));
      const admits = (level: (typeof levels)[number], options: { hostPathDisk: boolean; bridge: boolean }): boolean => {
        const r = spawnSync(cluster.kubectlPath, ['--kubeconfig', cluster.kubeconfig, 'create', '--dry-run=server', '-f', '-'], {
          encoding: 'utf8', input: JSON.stringify(render({ ...options, namespace: namespaces[level] })),
        });
        if (r.status !== 0) assert.match(r.stderr, /violates PodSecurity/, r.stderr);
        return r.status === 0;
      };
      const claims = { hostPathDisk: false, bridge: false };
      assert.deepEqual(levels.map((l) => admits(l, claims)), [false, true, true], 'claims and masquerade: baseline');
      assert.deepEqual(levels.map((l) => admits(l, { hostPathDisk: true, bridge: false })), [false, false, true], 'a local or posix domain (hostPath): privileged');
      assert.deepEqual(levels.map((l) => admits(l, { hostPathDisk: false, bridge: true })), [false, false, true], 'a bridge NIC (NET_ADMIN): privileged');
    } finally {
      for (const name of Object.values(namespaces)) cluster.kubectl(['delete', 'namespace', name, '--wait=false']);
    }
  });
});
