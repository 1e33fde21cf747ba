// Pods on the simulated nodes: real processes with their own network namespace and
// pod IP, reachable across nodes; volumes at their mount paths; cgroup limits;
// restart policy; graceful deletion; garbage collection with the owner.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureCluster, eventually } from '../support/cluster.ts';
import type { TestCluster } from '../support/cluster.ts';
import { apply, busyboxPod, createNamespace, deleteNamespace, getPod, waitPodGone, waitPodPhase } from './test-pods.ts';

const serverScript = 'while true; do echo "pong $(hostname)" | nc -l -p 8080; done';

describe('pods on simulated nodes', { timeout: 40 * 60_000 }, () => {
  let cluster: TestCluster;
  let ns: string;
  let nodeA: string;
  let nodeB: string;
  const tmpDirs: string[] = [];
  // A node directory mounted at the same path in the pod (hostPath): containers have a
  // root of their own, so state that outlives a restart or that the test reads lives here.
  const shared = (): { dir: string; volumes: unknown[]; volumeMounts: unknown[] } => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvt-shared-'));
    tmpDirs.push(dir);
    return { dir, volumes: [{ name: 'shared', hostPath: { path: dir, type: 'Directory' } }], volumeMounts: [{ name: 'shared', mountPath: dir }] };
  };
  before(async () => {
    cluster = await ensureCluster();
    ns = await createNamespace(cluster, 'kvt-pods');
    [nodeA = '', nodeB = ''] = cluster.defaultNodes;
  });
  after(() => {
    try {
      deleteNamespace(cluster, ns);
    } finally {
      for (const dir of tmpDirs) fs.rmSync(dir, { recursive: true, force: true });
      cluster.release();
    }
  });

  it('serves TCP on a pod IP on node A, reached from a pod on node B; two pods share a port on one node', async () => {
    apply(cluster, busyboxPod(ns, { name: 'server-1', nodeName: nodeA, script: serverScript }));
    apply(cluster, busyboxPod(ns, { name: 'server-2', nodeName: nodeA, script: serverScript }));
    const s1 = await waitPodPhase(cluster, ns, 'server-1', ['Running']);
    const s2 = await waitPodPhase(cluster, ns, 'server-2', ['Running']);
    const ip1 = s1.status?.podIP ?? '';
    const ip2 = s2.status?.podIP ?? '';
    assert.match(ip1, /^10\.77\.0\.\d+$/);
    assert.notEqual(ip1, ip2);
    const client = [
      `[ "$(nc -w 5 ${ip1} 8080 </dev/null)" = "pong server-1" ] || exit 11`,
      `[ "$(nc -w 5 ${ip2} 8080 </dev/null)" = "pong server-2" ] || exit 12`,
      'nc -w 5 "$KUBERNETES_SERVICE_HOST" "$KUBERNETES_SERVICE_PORT" </dev/null || exit 13',
    ].join('\n');
    apply(cluster, busyboxPod(ns, { name: 'client', nodeName: nodeB, script: client, restartPolicy: 'OnFailure' }));
    const done = await waitPodPhase(cluster, ns, 'client', ['Succeeded'], 180_000);
    assert.equal(done.spec.nodeName, nodeB);
    assert.equal(done.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 0);
  });

  it('materialises volumes at their mount paths and applies cgroup limits', async () => {
    const hostDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvt-hostpath-'));
    const mountRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'kvt-mounts-'));
    tmpDirs.push(hostDir, mountRoot);
    fs.writeFileSync(path.join(hostDir, 'from-host'), 'host-data');
    cluster.kubectl(['create', 'configmap', 'cfg', '-n', ns, '--from-literal=greeting=hello']);
    cluster.kubectl(['create', 'secret', 'generic', 'sec', '-n', ns, '--from-literal=password=s3cret']);
    const m = (sub: string): string => path.join(mountRoot, sub);
    const script = [
      `[ "$(cat ${m('cfg')}/greeting)" = hello ] || exit 11`,
      `[ "$(cat ${m('sec')}/password)" = s3cret ] || exit 12`,
      `[ "$(cat ${m('host')}/from-host)" = host-data ] || exit 13`,
      `echo written > ${m('host')}/from-pod || exit 14`,
      `echo scratch > ${m('scratch')}/x && [ "$(cat ${m('scratch')}/x)" = scratch ] || exit 15`,
      '[ -s /var/run/secrets/kubernetes.io/serviceaccount/token ] || exit 16',
      `[ "$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)" = ${ns} ] || exit 17`,
      'grep -q "BEGIN CERTIFICATE" /var/run/secrets/kubernetes.io/serviceaccount/ca.crt || exit 18',
      'cg=$(grep ":memory:" /proc/self/cgroup | cut -d: -f3)',
      '[ "$(cat /sys/fs/cgroup/memory$cg/memory.limit_in_bytes)" = 67108864 ] || exit 19',
      'cg=$(grep ":cpu,cpuacct:\\|:cpu:" /proc/self/cgroup | head -1 | cut -d: -f3)',
      '[ "$(cat /sys/fs/cgroup/cpu$cg/cpu.cfs_quota_us)" = 50000 ] || exit 20',
      '[ "$MY_POD" = volumes ] && [ "$GREETING" = hello ] || exit 21',
      '[ "$(cat /proc/1/cmdline | tr "\\0" " ")" != "" ] || exit 22',
    ].join('\n');
    apply(cluster, busyboxPod(ns, {
      name: 'volumes', nodeName: nodeA, script,
      extraSpec: {
        automountServiceAccountToken: true,
        volumes: [
          { name: 'cfg', configMap: { name: 'cfg' } },
          { name: 'sec', secret: { secretName: 'sec' } },
          { name: 'host', hostPath: { path: hostDir, type: 'Directory' } },
          { name: 'scratch', emptyDir: {} },
        ],
      },
      container: {
        volumeMounts: [
          { name: 'cfg', mountPath: m('cfg') }, { name: 'sec', mountPath: m('sec') },
          { name: 'host', mountPath: m('host') }, { name: 'scratch', mountPath: m('scratch') },
        ],
        resources: { limits: { memory: '64Mi', cpu: '500m' } },
        env: [
          { name: 'MY_POD', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
          { name: 'GREETING', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'greeting' } } },
        ],
      },
    }));
    const pod = await waitPodPhase(cluster, ns, 'volumes', ['Succeeded', 'Failed'], 180_000);
    assert.equal(pod.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 0, 'every check inside the pod passed');
    assert.equal(fs.readFileSync(path.join(hostDir, 'from-pod'), 'utf8'), 'written\n');
    assert.ok(!fs.existsSync(m('cfg')) || fs.readdirSync(m('cfg')).length === 0, 'the bind mount stayed inside the pod\'s mount namespace');
  });

  it('restarts containers per restartPolicy and reports exit codes', async () => {
    const once = shared();
    apply(cluster, busyboxPod(ns, { name: 'fails-once', nodeName: nodeB, restartPolicy: 'OnFailure',
      script: `f=${once.dir}/once; if [ -e $f ]; then rm $f; exit 0; fi; touch $f; exit 3`,
      extraSpec: { volumes: once.volumes }, container: { volumeMounts: once.volumeMounts } }));
    apply(cluster, busyboxPod(ns, { name: 'fails', nodeName: nodeB, restartPolicy: 'Never', script: 'exit 7' }));
    const succeeded = await waitPodPhase(cluster, ns, 'fails-once', ['Succeeded'], 180_000);
    assert.equal(succeeded.status?.containerStatuses?.[0]?.restartCount, 1);
    const failed = await waitPodPhase(cluster, ns, 'fails', ['Failed']);
    assert.equal(failed.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 7);
    assert.equal(failed.status?.containerStatuses?.[0]?.restartCount, 0);
  });

  it('reports termination messages: the file at terminationMessagePath, the log tail on failure under FallbackToLogsOnError', async () => {
    apply(cluster, busyboxPod(ns, { name: 'message', nodeName: nodeA, script: 'echo "capacity 42" > /dev/termination-log; echo only-in-the-log' }));
    // Mount points outside /dev are created on the node's filesystem, like hostPath mount points.
    const customDir = path.join(os.tmpdir(), `kvt-${ns}-message`);
    tmpDirs.push(customDir);
    apply(cluster, busyboxPod(ns, {
      name: 'custom-path', nodeName: nodeB,
      script: `echo custom > ${customDir}/out; [ ! -e /dev/termination-log ] || exit 9`,
      container: { terminationMessagePath: `${customDir}/out` },
    }));
    apply(cluster, busyboxPod(ns, {
      name: 'fallback', nodeName: nodeB,
      script: 'for i in $(seq 1 100); do echo "line $i"; done; exit 4',
      container: { terminationMessagePolicy: 'FallbackToLogsOnError' },
    }));
    // A privileged container sees the node's devices; its /dev/termination-log is still its own.
    apply(cluster, busyboxPod(ns, {
      name: 'privileged', nodeName: nodeA,
      script: 'echo privileged > /dev/termination-log; [ -c /dev/kvm ] && [ -c /dev/null ] && [ -d /dev/pts ]',
      container: { securityContext: { privileged: true } },
    }));
    const restarts = shared();
    apply(cluster, busyboxPod(ns, {
      name: 'restarts', nodeName: nodeA, restartPolicy: 'OnFailure',
      script: `f=${restarts.dir}/msg; if [ -e $f ]; then rm $f; echo second > /dev/termination-log; exit 0; fi; touch $f; echo first > /dev/termination-log; exit 5`,
      extraSpec: { volumes: restarts.volumes }, container: { volumeMounts: restarts.volumeMounts },
    }));
    const terminated = (name: string, field = 'state'): string => cluster.kubectl(['get', 'pod', name, '-n', ns, '-o', `jsonpath={.status.containerStatuses[0].${field}.terminated.message}`]);
    await waitPodPhase(cluster, ns, 'message', ['Succeeded'], 180_000);
    assert.equal(terminated('message'), 'capacity 42\n');
    assert.equal(fs.existsSync('/dev/termination-log'), false, 'the message file was mounted on the container\'s own /dev');
    const privileged = await waitPodPhase(cluster, ns, 'privileged', ['Succeeded', 'Failed'], 180_000);
    assert.equal(privileged.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 0, 'the node\'s devices in a privileged container');
    assert.equal(terminated('privileged'), 'privileged\n');
    assert.equal(fs.existsSync('/dev/termination-log'), false, 'a privileged container\'s message file is not created in the node\'s /dev');
    const custom = await waitPodPhase(cluster, ns, 'custom-path', ['Succeeded', 'Failed'], 180_000);
    assert.equal(custom.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 0);
    assert.equal(terminated('custom-path'), 'custom\n');
    const failed = await waitPodPhase(cluster, ns, 'fallback', ['Failed'], 180_000);
    assert.equal(failed.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 4);
    const tail = terminated('fallback');
    assert.equal(tail.split('\n')[0], 'line 21', 'the last 80 lines of the log');
    assert.ok(tail.endsWith('line 100\n'));
    await waitPodPhase(cluster, ns, 'restarts', ['Succeeded'], 180_000);
    assert.equal(terminated('restarts'), 'second\n');
    assert.equal(terminated('restarts', 'lastState'), 'first\n');
  });

  it('gates readiness on the readiness probe and restarts a container whose liveness probe fails', async () => {
    const probeDir = shared();
    const alive = `${probeDir.dir}/alive`;
    apply(cluster, busyboxPod(ns, {
      name: 'probed', nodeName: nodeA, restartPolicy: 'Always',
      script: 'sleep 4; while true; do echo ok | nc -l -p 8081; done',
      container: { ports: [{ name: 'svc', containerPort: 8081 }], readinessProbe: { tcpSocket: { port: 'svc' }, periodSeconds: 1 } },
    }));
    const early = await waitPodPhase(cluster, ns, 'probed', ['Running']);
    assert.equal(early.status?.containerStatuses?.[0]?.restartCount, 0);
    assert.equal(cluster.kubectl(['get', 'pod', 'probed', '-n', ns, '-o', 'jsonpath={.status.conditions[?(@.type=="Ready")].status}']), 'False');
    await eventually('probed Ready', () => (cluster.kubectl(['get', 'pod', 'probed', '-n', ns, '-o',
      'jsonpath={.status.conditions[?(@.type=="Ready")].status}']) === 'True' ? true : undefined), 60_000);

    apply(cluster, busyboxPod(ns, {
      name: 'liveness', nodeName: nodeB, restartPolicy: 'Always',
      script: `touch ${alive}; sleep 3; rm -f ${alive}; while true; do sleep 1; done`,
      container: { livenessProbe: { exec: { command: ['test', '-e', alive] }, periodSeconds: 1, failureThreshold: 2, initialDelaySeconds: 1 }, volumeMounts: probeDir.volumeMounts },
      extraSpec: { terminationGracePeriodSeconds: 1, volumes: probeDir.volumes },
    }));
    await eventually('liveness restarted', () => {
      const pod = getPod(cluster, ns, 'liveness');
      return (pod?.status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1 ? true : undefined;
    }, 120_000);
    fs.rmSync(alive, { force: true });
  });

  it('deletes gracefully: SIGTERM first, SIGKILL after the grace period', async () => {
    const { dir: marker, volumes, volumeMounts } = shared();
    apply(cluster, busyboxPod(ns, {
      name: 'graceful', nodeName: nodeA,
      script: `trap "echo got-term > ${marker}/term; exit 0" TERM; touch ${marker}/graceful-ready; while true; do sleep 0.2; done`,
      extraSpec: { volumes }, container: { volumeMounts },
    }));
    apply(cluster, busyboxPod(ns, {
      name: 'stubborn', nodeName: nodeA,
      script: `trap "" TERM; touch ${marker}/stubborn-ready; while true; do sleep 0.2; done`,
      extraSpec: { volumes }, container: { volumeMounts },
    }));
    await waitPodPhase(cluster, ns, 'graceful', ['Running']);
    await waitPodPhase(cluster, ns, 'stubborn', ['Running']);
    // Both traps set: the simulator reports Running once the container's init runs, before
    // the container's own program has set its signal handlers (a deletion during set-up
    // ends the container at once, as it should).
    await eventually('both containers past their traps', () => (fs.existsSync(path.join(marker, 'graceful-ready')) && fs.existsSync(path.join(marker, 'stubborn-ready')) ? true : undefined), 60_000, 100);
    const started = Date.now();
    cluster.kubectl(['delete', 'pod', 'graceful', 'stubborn', '-n', ns, '--wait=false']);
    await waitPodGone(cluster, ns, 'graceful');
    assert.equal(fs.readFileSync(path.join(marker, 'term'), 'utf8'), 'got-term\n');
    await waitPodGone(cluster, ns, 'stubborn');
    assert.ok(Date.now() - started >= 5000, 'the stubborn pod lived out its 5 s grace period');
  });

  it('garbage-collects pods with their owner', async () => {
    apply(cluster, {
      apiVersion: 'apps/v1', kind: 'ReplicaSet',
      metadata: { name: 'rs', namespace: ns },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'kvt-rs' } },
        template: {
          metadata: { labels: { app: 'kvt-rs' } },
          spec: {
            automountServiceAccountToken: false, terminationGracePeriodSeconds: 2,
            containers: [{ name: 'main', image: 'busybox', command: ['sh', '-c', 'while true; do sleep 1; done'] }],
          },
        },
      },
    });
    const names = await eventually('two running ReplicaSet pods', () => {
      const out = cluster.kubectl(['get', 'pods', '-n', ns, '-l', 'app=kvt-rs', '--field-selector=status.phase=Running', '-o', 'name']);
      const list = out.trim().split('\n').filter((l) => l !== '');
      return list.length === 2 ? list.map((l) => l.replace('pod/', '')) : undefined;
    }, 180_000);
    for (const name of names) {
      const pod = getPod(cluster, ns, name);
      assert.ok(cluster.defaultNodes.includes(pod?.spec.nodeName ?? ''), 'the scheduler placed it on a default node');
    }
    cluster.kubectl(['delete', 'replicaset', 'rs', '-n', ns, '--cascade=background', '--wait=false']);
    for (const name of names) await waitPodGone(cluster, ns, name);

    cluster.kubectl(['create', 'configmap', 'owner', '-n', ns]);
    const ownerUid = cluster.kubectl(['get', 'configmap', 'owner', '-n', ns, '-o', 'jsonpath={.metadata.uid}']);
    apply(cluster, busyboxPod(ns, {
      name: 'owned', nodeName: nodeB, script: 'while true; do sleep 1; done',
      metadata: { ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: ownerUid }] },
    }));
    await waitPodPhase(cluster, ns, 'owned', ['Running']);
    cluster.kubectl(['delete', 'configmap', 'owner', '-n', ns, '--wait=false']);
    await waitPodGone(cluster, ns, 'owned');
  });
});
