// The node runtime (hack/images/node-runtime/Containerfile, ADR 0116): the operator,
// node-agent and launcher images start from one image holding the pinned Node.js, so the
// node binary is one layer under all three. On a node that layer is one directory of the
// storage driver: a launcher and the node agent run the same file, and the kernel keeps
// one copy of its pages for both. Checked here with podman's overlay storage, as
// containerd's overlayfs snapshotter shares a layer chain the same way.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { GenericContainer, type StartedTestContainer } from 'testcontainers';
import { builtImage, NEVER_PULL, startPodmanService, type PodmanService } from './podman-service.ts';

const run = promisify(execFile);

async function layers(ref: string): Promise<string[]> {
  const { stdout } = await run('podman', ['image', 'inspect', '--format', '{{range .RootFS.Layers}}{{println .}}{{end}}', ref]);
  return stdout.split('\n').filter((l) => l !== '');
}

/** A container of `ref` that only runs its Node.js, idle, as its first process. */
async function idleNode(ref: string): Promise<StartedTestContainer> {
  return new GenericContainer(ref)
    .withPullPolicy(NEVER_PULL)
    .withNetworkMode('none')
    .withEntrypoint(['/usr/local/bin/node', '-e', 'setInterval(() => undefined, 60_000)'])
    .start();
}

/**
 * The file a container's first process runs as node: the layer directory of the storage
 * driver that holds /usr/local/bin/node (the container's lower directories, first found
 * wins as overlayfs looks them up), checked against the inode its /proc/PID/maps shows.
 */
async function nodeLayerFile(container: StartedTestContainer): Promise<{ dir: string; dev: number; ino: number }> {
  const { stdout } = await run('podman', ['inspect', '--format', '{{.GraphDriver.Data.LowerDir}}', container.getId()]);
  for (const dir of stdout.trim().split(':')) {
    const file = await stat(path.join(dir, 'usr/local/bin/node')).catch(() => undefined);
    if (file === undefined) continue;
    const maps = await readFile(`/proc/${await hostPid(container)}/maps`, 'utf8');
    const line = maps.split('\n').find((l) => l.endsWith('/usr/local/bin/node'));
    assert.ok(line !== undefined, `container ${container.getId()} maps no /usr/local/bin/node`);
    assert.equal(line.split(/\s+/)[4], String(file.ino), `container ${container.getId()} maps another node than ${dir}'s`);
    return { dir, dev: file.dev, ino: file.ino };
  }
  throw new assert.AssertionError({ message: `no layer of container ${container.getId()} holds /usr/local/bin/node: ${stdout}` });
}

/** The host pid of a container's first process. */
async function hostPid(container: StartedTestContainer): Promise<number> {
  const { stdout } = await run('podman', ['inspect', '--format', '{{.State.Pid}}', container.getId()]);
  const pid = Number(stdout.trim());
  assert.ok(Number.isInteger(pid) && pid > 0, `no host pid for container ${container.getId()}: ${stdout}`);
  return pid;
}

void describe('node runtime layer', { timeout: 300_000 }, () => {
  const refs: Record<'node-runtime' | 'operator' | 'launcher' | 'node-agent', string> = { 'node-runtime': '', operator: '', launcher: '', 'node-agent': '' };
  let podman: PodmanService | undefined;

  before(async () => {
    for (const name of ['operator', 'launcher', 'node-agent'] as const) refs[name] = await builtImage(name);
    refs['node-runtime'] = await builtImage('node-runtime');
    podman = await startPodmanService();
  });
  after(async () => {
    await podman?.stop();
  });

  void it('is the base and one layer, and every application image starts with exactly those layers', async () => {
    const runtime = await layers(refs['node-runtime']);
    assert.equal(runtime.length, 2, `node-runtime: the Debian base and Node.js, got ${runtime.join(', ')}`);
    for (const name of ['operator', 'launcher', 'node-agent'] as const) {
      const own = await layers(refs[name]);
      assert.deepEqual(own.slice(0, runtime.length), runtime, `${name} does not start with the node runtime's layers`);
      assert.ok(own.length > runtime.length, `${name} adds no layer of its own`);
    }
  });

  void it('has a launcher and the node agent run one and the same node binary file', async () => {
    const launcher = await idleNode(refs.launcher);
    try {
      const agent = await idleNode(refs['node-agent']);
      try {
        const [a, b] = await Promise.all([nodeLayerFile(launcher), nodeLayerFile(agent)]);
        assert.deepEqual(a, b, 'the launcher and the node agent run node from different layers');
      } finally {
        await agent.stop({ timeout: 10_000 });
      }
    } finally {
      await launcher.stop({ timeout: 10_000 });
    }
  });
});
