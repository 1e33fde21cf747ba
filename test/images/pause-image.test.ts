// The pause image (hack/images/pause/Containerfile): Kubernetes' pause, static, alone in
// a scratch image, run by podman through testcontainers; and its export, imported by a
// containerd of this suite's own (own root, state and socket, CRI off) with
// `ctr -n k8s.io images import`, as the real nodes import it for sandbox_image.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { GenericContainer } from 'testcontainers';
import { builtImage, NEVER_PULL, startPodmanService, type PodmanService } from './podman-service.ts';

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '..', '..');

void describe('pause image', { timeout: 180_000 }, () => {
  let ref = '';
  let podman: PodmanService | undefined;
  let dir = '';

  before(async () => {
    ref = await builtImage('pause');
    podman = await startPodmanService();
    dir = await mkdtemp(path.join(tmpdir(), 'kv-pause-image-'));
  });
  after(async () => {
    await podman?.stop();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  void it('holds only /pause, runs it as 65535 and keeps running until stopped', async () => {
    const { stdout } = await run('podman', ['image', 'inspect', '--format', '{{json .Config.Entrypoint}} {{.Config.User}} {{len .RootFS.Layers}}', ref]);
    assert.equal(stdout.trim(), '["/pause"] 65535:65535 1');
    const container = await new GenericContainer(ref).withPullPolicy(NEVER_PULL).withNetworkMode('none').start();
    try {
      await sleep(1000);
      const { stdout: state } = await run('podman', ['inspect', '--format', '{{.State.Status}}', container.getId()]);
      assert.equal(state.trim(), 'running');
    } finally {
      await container.stop({ timeout: 10_000 });
    }
  });

  void it('exports an archive that ctr -n k8s.io images import takes, under both tags', async () => {
    const archive = path.join(dir, 'pause.tar');
    await run('bash', [path.join(repoRoot, 'hack/images/build.sh'), 'export', 'pause', archive]);
    const socket = path.join(dir, 'containerd.sock');
    const config = [
      'version = 2',
      `root = "${path.join(dir, 'root')}"`,
      `state = "${path.join(dir, 'state')}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${socket}"`,
      '[ttrpc]',
      `  address = "${socket}.ttrpc"`,
    ].join('\n');
    await writeFile(path.join(dir, 'containerd.toml'), `${config}\n`);
    const containerd = spawn('containerd', ['--config', path.join(dir, 'containerd.toml')], { stdio: 'ignore' });
    const exited = once(containerd, 'exit');
    try {
      const deadline = Date.now() + 30_000;
      while (!existsSync(socket)) {
        assert.ok(Date.now() < deadline && containerd.exitCode === null, 'containerd did not create its socket within 30 s');
        await sleep(100);
      }
      await run('ctr', ['--address', socket, '-n', 'k8s.io', 'images', 'import', archive]);
      const { stdout } = await run('ctr', ['--address', socket, '-n', 'k8s.io', 'images', 'ls', '-q']);
      const names = stdout.trim().split('\n').sort();
      assert.deepEqual(names, [`${ref.slice(0, ref.lastIndexOf(':'))}:3.10.1`, ref].sort());
    } finally {
      containerd.kill('SIGTERM');
      await exited;
    }
  });
});
