// The storage fault hooks on a throwaway node created with a storage root: its pods
// reach the shared directory through the node's own FUSE view, so that hanging the view
// stops their writes (while the host, and every other node, still write the same
// directory) and failing it makes them fail; an API-only partition (cutNetwork) leaves
// the storage alone; restoring brings writes back; a hung view of one node never reaches
// the pods of another; and deleting a node whose view hangs finishes promptly and leaves
// no mount behind.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensureCluster, eventually, throwawayTaintKey, type TestCluster } from '../support/cluster.ts';
import { apply, busyboxPod, createNamespace, deleteNamespace, waitPodPhase } from '../cluster/test-pods.ts';
import { nodeStorageView } from '../../hack/cluster/nodes.ts';

/** Appends a line every 100 ms to /shared/<file>; a failed write is reported on stdout and retried. */
const writer = (file: string): string => `i=0; while true; do i=$((i+1)); echo $i >> /shared/${file} || echo write-failed; sleep 0.1; done`;

function lines(file: string): number {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').length;
  } catch {
    return 0;
  }
}

/** Lines written to `file` during `ms`. */
async function growth(file: string, ms: number): Promise<number> {
  const before = lines(file);
  await sleep(ms);
  return lines(file) - before;
}

function mountedUnder(dir: string): string[] {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(dir));
}

void describe('storage faults on one node', { timeout: 20 * 60_000 }, () => {
  let cluster: TestCluster;
  let ns = '';
  let root = '';
  let node = '';
  const nodes: string[] = [];

  const writerPod = async (name: string, file: string): Promise<void> => {
    apply(cluster, busyboxPod(ns, {
      name, nodeName: node, script: writer(file),
      extraSpec: {
        tolerations: [{ key: throwawayTaintKey, operator: 'Exists' }],
        volumes: [{ name: 'shared', hostPath: { path: path.join(root, 'data'), type: 'Directory' } }],
      },
      container: { volumeMounts: [{ name: 'shared', mountPath: '/shared' }] },
    }));
    await waitPodPhase(cluster, ns, name, ['Running']);
    await eventually(`${name} writing`, () => (lines(path.join(root, 'data', file)) > 2 ? true : undefined), 60_000, 100);
  };

  before(async () => {
    cluster = await ensureCluster();
    ns = await createNamespace(cluster, 'kvt-storage');
    root = await mkdtemp(path.join(tmpdir(), 'kvt-storage-'));
    fs.mkdirSync(path.join(root, 'data'));
    node = (await cluster.createNode('kvt-storage', { storageRoot: root })).name;
    nodes.push(node);
  });

  after(async () => {
    const errors: unknown[] = [];
    for (const n of nodes) await cluster.deleteNode(n).catch((err: unknown) => errors.push(err));
    try {
      deleteNamespace(cluster, ns);
    } finally {
      cluster.release();
    }
    await rm(root, { recursive: true, force: true });
    assert.deepEqual(errors, [], 'every throwaway node was removed');
  });

  void it('a pod writes through the view; cutting the node off the network leaves its storage alone', async () => {
    const file = path.join(root, 'data', 'cut');
    await writerPod('writer-cut', 'cut');
    cluster.faults.cutNetwork(node);
    try {
      assert.ok(await growth(file, 2000) >= 5, 'writes go on while the node is cut off');
    } finally {
      cluster.faults.restoreNetwork(node);
    }
  });

  void it('a hung view stops the node\'s writes while the host writes on; restored, they resume', async () => {
    const file = path.join(root, 'data', 'hang');
    await writerPod('writer-hang', 'hang');
    await cluster.faults.storageHang(node);
    try {
      await sleep(300); // a write already past the view may land
      assert.equal(await growth(file, 2000), 0, 'no write of the node reaches the storage');
      fs.appendFileSync(path.join(root, 'data', 'host'), 'the host still writes\n');
      assert.equal(lines(path.join(root, 'data', 'host')), 1);
    } finally {
      await cluster.faults.storageRestore(node);
    }
    assert.ok(await growth(file, 2000) >= 5, 'writes resume');
  });

  void it('a failed view makes the node\'s writes fail; restored, a new pod writes again', async () => {
    const file = path.join(root, 'data', 'fail');
    await writerPod('writer-fail', 'fail');
    await cluster.faults.storageFail(node);
    assert.equal(await growth(file, 2000), 0, 'no write of the node reaches the storage');
    await cluster.faults.storageRestore(node);
    await writerPod('writer-after', 'after');
  });

  void it('while one node\'s view hangs, a pod on another node starts and writes', async () => {
    const other = (await cluster.createNode('kvt-storage-o', { storageRoot: root })).name;
    nodes.push(other);
    await cluster.faults.storageHang(node);
    const saved = node;
    try {
      node = other;
      await writerPod('writer-other', 'other');
    } finally {
      node = saved;
      await cluster.faults.storageRestore(saved);
    }
  });

  void it('deleting a node whose view hangs is prompt and leaves no mount', async () => {
    const second = (await cluster.createNode('kvt-storage-h', { storageRoot: root })).name;
    nodes.push(second);
    const saved = node;
    node = second;
    try {
      await writerPod('writer-delete', 'delete');
    } finally {
      node = saved;
    }
    await cluster.faults.storageHang(second);
    await sleep(500);
    const started = Date.now();
    await cluster.deleteNode(second);
    nodes.splice(nodes.indexOf(second), 1);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 30_000, `node deleted in ${elapsed} ms`);
    assert.deepEqual(mountedUnder(nodeStorageView(cluster.layout, second)), []);
    assert.ok(fs.existsSync(path.join(root, 'data', 'delete')), 'the shared files stay');
  });
});
