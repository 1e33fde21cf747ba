// Real nodes (kubelet + containerd + runc + CNI bridge) of the local cluster: both Ready;
// a pod from a locally built image on each; logs, exec and port-forward through the API
// server; pod-to-pod across the two nodes over the cluster bridge; deletion ends the pod.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { KubectlError } from '../../hack/cluster/kubectl.ts';
import { eventually } from '../support/cluster.ts';
import { kubeletKernelTunables } from '../../hack/cluster/real-node-config.ts';
import { realNodePids } from '../../hack/cluster/real-nodes.ts';
import { busyboxImage, ensureRealNodes, realNodeDevicePluginDir, realNodeLabel, realNodeTaint, realNodeToleration } from '../support/real-nodes.ts';
import type { ImageArchive, RealNodes } from '../support/real-nodes.ts';

const nodeSchema = z.object({
  metadata: z.object({ name: z.string(), labels: z.record(z.string(), z.string()) }),
  spec: z.object({ taints: z.array(z.object({ key: z.string(), value: z.string().optional(), effect: z.string() })).optional() }),
  status: z.object({
    conditions: z.array(z.object({ type: z.string(), status: z.string() })),
    addresses: z.array(z.object({ type: z.string(), address: z.string() })),
    nodeInfo: z.object({ kubeletVersion: z.string(), containerRuntimeVersion: z.string() }),
    daemonEndpoints: z.object({ kubeletEndpoint: z.object({ Port: z.number() }) }),
  }),
});
const podSchema = z.object({
  spec: z.object({ nodeName: z.string().optional() }),
  status: z.object({
    phase: z.string().optional(),
    podIP: z.string().optional(),
    containerStatuses: z.array(z.object({ containerID: z.string().optional(), ready: z.boolean() })).optional(),
  }),
});

function pinnedVersion(): string {
  const pins = fs.readFileSync(path.join(import.meta.dirname, '../../hack/k8s/pins.env'), 'utf8');
  return /^KUBERNETES_VERSION=(\S+)/m.exec(pins)?.[1] ?? 'unknown';
}

/** A pod serving `<pod name> on <node>` over HTTP on 8080, as nobody, with no capabilities. */
function webPod(namespace: string, name: string, node: string, image: string): string {
  const script = [
    'mkdir -p /tmp/www', `echo "${name} on ${node}" > /tmp/www/index.html`, 'echo "web started as $(id -u)"',
    'trap \'kill $child; exit 0\' TERM', 'httpd -f -p 8080 -h /tmp/www & child=$!', 'wait $child',
  ].join('; ');
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: { app: 'real-node-web' } },
    spec: {
      nodeName: node,
      tolerations: [realNodeToleration],
      terminationGracePeriodSeconds: 30,
      automountServiceAccountToken: false,
      securityContext: { runAsUser: 65534, runAsGroup: 65534, runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [{
        name: 'web', image, imagePullPolicy: 'Never', command: ['/bin/sh', '-c', script], ports: [{ containerPort: 8080 }],
        securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: false, capabilities: { drop: ['ALL'] } },
        readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 1 },
      }],
    },
  });
}

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
  });
}

/** Status of GET https://<node>:10250<path>, verifying the kubelet's certificate against the cluster CA. */
function kubeletGet(pkiDir: string, nodeIp: string, urlPath: string, client?: string): Promise<number> {
  const read = (name: string): Buffer => fs.readFileSync(path.join(pkiDir, name));
  return new Promise((resolve, reject) => {
    const req = https.get({
      host: nodeIp, port: 10250, path: urlPath, timeout: 10_000, ca: read('ca.crt'),
      ...(client === undefined ? {} : { cert: read(`${client}.crt`), key: read(`${client}.key`) }),
    }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${nodeIp}`)));
    req.on('error', reject);
  });
}

describe('real nodes', { timeout: 20 * 60_000 }, () => {
  let real: RealNodes;
  let image: ImageArchive;
  const namespace = `real-nodes-${randomBytes(3).toString('hex')}`;
  const podName = (node: string): string => `web-${node}`;
  const pod = (node: string): z.infer<typeof podSchema> =>
    podSchema.parse(JSON.parse(real.cluster.kubectl(['-n', namespace, 'get', 'pod', podName(node), '-o', 'json'])));

  before(async () => {
    image = busyboxImage();
    real = await ensureRealNodes([image]);
    real.cluster.kubectl(['create', 'namespace', namespace]);
  });
  after(() => {
    try {
      real.cluster.kubectl(['delete', 'namespace', namespace, '--wait=false']);
    } finally {
      real.cluster.release();
    }
  });

  it('registers both nodes Ready: pinned kubelet, containerd, node address, taint, label', () => {
    assert.ok(real.nodes.length >= 2);
    for (const node of real.nodes) {
      const object = nodeSchema.parse(JSON.parse(real.cluster.kubectl(['get', 'node', node.name, '-o', 'json'])));
      assert.equal(object.status.conditions.find((c) => c.type === 'Ready')?.status, 'True', `${node.name} is Ready`);
      assert.equal(object.status.nodeInfo.kubeletVersion, pinnedVersion());
      assert.match(object.status.nodeInfo.containerRuntimeVersion, /^containerd:\/\/1\./);
      assert.equal(object.status.addresses.find((a) => a.type === 'InternalIP')?.address, node.nodeIp);
      assert.equal(object.status.daemonEndpoints.kubeletEndpoint.Port, 10250);
      assert.equal(object.metadata.labels[realNodeLabel], 'true');
      assert.ok(object.spec.taints?.some((t) => t.key === realNodeTaint.key && t.effect === realNodeTaint.effect), 'tainted');
      assert.equal(node.devicePluginDir, realNodeDevicePluginDir(real.cluster.layout, node.name));
      assert.ok(fs.existsSync(path.join(node.devicePluginDir, 'kubelet.sock')), `${node.name}'s kubelet serves its device-plugin socket in its own directory`);
    }
    assert.notEqual(real.nodes[0]?.devicePluginDir, real.nodes[1]?.devicePluginDir);
  });

  it('serves its kubelet API under a certificate for its address, to the API server only', async () => {
    const pkiDir = real.cluster.layout.pkiDir;
    for (const node of real.nodes) {
      assert.equal(await kubeletGet(pkiDir, node.nodeIp, '/pods'), 401, 'no client certificate: unauthenticated');
      assert.equal(await kubeletGet(pkiDir, node.nodeIp, '/pods', 'viewer'), 403, 'a cluster user without nodes/proxy: forbidden');
      assert.equal(await kubeletGet(pkiDir, node.nodeIp, '/pods', 'apiserver-kubelet-client'), 200, 'the API server\'s identity');
    }
  });

  it('leaves the host kernel tunables alone: the kubelet sees its own values, read-only, in its mount namespace', () => {
    for (const node of real.nodes) {
      const kubelet = realNodePids(real.cluster.layout, node.name).kubelet;
      assert.ok(kubelet !== undefined);
      for (const [key, wanted] of Object.entries(kubeletKernelTunables)) {
        // Through /proc/<pid>/root, paths resolve in that process's mount namespace.
        const seen = fs.readFileSync(`/proc/${kubelet}/root/proc/sys/${key}`, 'utf8').trim();
        assert.equal(seen, wanted, `${node.name}'s kubelet sees ${key}=${wanted}`);
      }
      // Each tunable the host held otherwise when the node started: still otherwise on the host, read-only for the kubelet.
      const mounts = fs.readFileSync(`/proc/${kubelet}/mountinfo`, 'utf8').split('\n');
      for (const file of fs.readdirSync(node.tunablesDir)) {
        const key = file.replaceAll('.', '/');
        assert.notEqual(fs.readFileSync(`/proc/sys/${key}`, 'utf8').trim(), kubeletKernelTunables[key], `the host's ${key} is unchanged`);
        const mount = mounts.find((m) => m.split(' ')[4] === `/proc/sys/${key}`);
        assert.ok(mount?.split(' ')[5]?.split(',').includes('ro') === true, `${key} is a read-only mount for the kubelet: ${mount}`);
      }
    }
  });

  it('runs a pod from a locally built image on each node, addressed from its pod CIDR', async () => {
    for (const node of real.nodes) real.cluster.kubectl(['apply', '-f', '-'], webPod(namespace, podName(node.name), node.name, image.ref));
    for (const node of real.nodes) {
      const running = await eventually(`${podName(node.name)} ready`, () => {
        const p = pod(node.name);
        return p.status.containerStatuses?.[0]?.ready === true ? p : undefined;
      }, 120_000);
      assert.equal(running.status.phase, 'Running');
      assert.equal(running.spec.nodeName, node.name);
      const prefix = node.podCidr.split('.').slice(0, 3).join('.');
      assert.ok(running.status.podIP?.startsWith(`${prefix}.`) === true, `${running.status.podIP} in ${node.podCidr}`);
    }
  });

  it('serves kubectl logs and kubectl exec through the API server', () => {
    for (const node of real.nodes) {
      const logs = real.cluster.kubectl(['-n', namespace, 'logs', podName(node.name)]);
      assert.match(logs, /web started as 65534/);
      const out = real.cluster.kubectl(['-n', namespace, 'exec', podName(node.name), '--', 'cat', '/tmp/www/index.html']);
      assert.equal(out.trim(), `${podName(node.name)} on ${node.name}`);
      const uid = real.cluster.kubectl(['-n', namespace, 'exec', podName(node.name), '--', 'id', '-u']);
      assert.equal(uid.trim(), '65534');
    }
  });

  it('forwards a local port (127.0.0.1 only) to a port in the pod', async () => {
    const node = real.nodes[0];
    assert.ok(node !== undefined);
    const child = spawn(real.cluster.kubectlPath, [
      '--kubeconfig', real.cluster.kubeconfig, '-n', namespace, 'port-forward', '--address', '127.0.0.1', `pod/${podName(node.name)}`, ':8080',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let out = '';
        child.stdout.setEncoding('utf8');
        child.stdout.on('data', (c: string) => {
          out += c;
          const m = /Forwarding from 127\.0\.0\.1:(\d+) -> 8080/.exec(out);
          if (m?.[1] !== undefined) resolve(Number(m[1]));
        });
        child.once('exit', (code) => reject(new Error(`kubectl port-forward exited ${code}: ${out}`)));
      });
      for (let i = 0; i < 3; i++) assert.equal((await httpGet(`http://127.0.0.1:${port}/`)).trim(), `${podName(node.name)} on ${node.name}`);
    } finally {
      child.kill('SIGTERM');
    }
  });

  // (busybox wget's own -T timeout crashes in Debian's busybox-static: timeout(1) bounds it instead.)
  it('carries pod-to-pod traffic across the two nodes over the cluster bridge', () => {
    const [a, b] = real.nodes;
    assert.ok(a !== undefined && b !== undefined);
    for (const [from, to] of [[a, b], [b, a]] as const) {
      const ip = pod(to.name).status.podIP;
      assert.ok(ip !== undefined);
      const body = real.cluster.kubectl(['-n', namespace, 'exec', podName(from.name), '--', 'timeout', '10', 'wget', '-q', '-O', '-', `http://${ip}:8080/`]);
      assert.equal(body.trim(), `${podName(to.name)} on ${to.name}`);
    }
  });

  it('routes between the host and the pods: the host reaches each pod, each pod the API server address', async () => {
    for (const node of real.nodes) {
      const ip = pod(node.name).status.podIP;
      assert.ok(ip !== undefined);
      assert.equal((await httpGet(`http://${ip}:8080/`)).trim(), `${podName(node.name)} on ${node.name}`);
      // Plain HTTP to the API server's TLS port: its own 400 answer proves the round trip.
      const url = `http://${real.cluster.apiServer.host}:${real.cluster.apiServer.port}/`;
      assert.throws(
        () => real.cluster.kubectl(['-n', namespace, 'exec', podName(node.name), '--', 'timeout', '10', 'wget', '-q', '-O', '-', url]),
        (err: unknown) => err instanceof KubectlError && /400 Bad Request/.test(err.stderr),
      );
    }
  });

  it('ends a deleted pod: its container stops on SIGTERM and leaves the node', () => {
    for (const node of real.nodes) {
      const id = pod(node.name).status.containerStatuses?.[0]?.containerID?.replace('containerd://', '');
      assert.ok(id !== undefined && id !== '');
      const tasks = (): string => execFileSync('ctr', ['--address', node.containerdSocket, '-n', 'k8s.io', 'tasks', 'ls'], { encoding: 'utf8' });
      assert.match(tasks(), new RegExp(`${id}\\s+\\d+\\s+RUNNING`));
      const started = Date.now();
      real.cluster.kubectl(['-n', namespace, 'delete', 'pod', podName(node.name), '--wait=true', '--timeout=60s']);
      // Well inside the 30 s grace period: the container ended on SIGTERM, not on the kill after it.
      assert.ok(Date.now() - started < 20_000, `deleted in ${Date.now() - started} ms`);
      assert.doesNotMatch(tasks(), new RegExp(id));
    }
  });
});
