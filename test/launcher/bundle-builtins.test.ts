// The launcher as its image runs it (the bundle under the launcher's Node flags), against
// real QEMU and the test guest: once the guest agent has answered and the API has been
// called with the token, the process has loaded neither node:crypto nor node:tls — a
// launcher that is not migrating and holds no storage lease never loads OpenSSL (ADR 0122).
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { buildLauncher, LAUNCHER_NODE_FLAGS } from '../../hack/launcher-build/build-launcher.ts';
import { startLauncher, waitForStatus } from '../support/launcher-process.ts';
import { builtinsRecording } from '../support/node-floor.ts';

const BOOT_TIMEOUT_MS = 240_000;
const repoRoot = path.resolve(import.meta.dirname, '..', '..');

void test('the bundled launcher runs a guest to its agent and serves its API without loading OpenSSL', { timeout: 600_000 }, async (t) => {
  const build = buildLauncher(repoRoot, path.join(repoRoot, 'hack', '.cache', 'launcher-build'));
  const recording = await builtinsRecording();
  t.after(() => recording.dispose());
  const launcher = await startLauncher({
    name: 'bundle-builtins',
    command: [process.execPath, ...LAUNCHER_NODE_FLAGS, ...recording.nodeArgs, build.entry],
    env: recording.env,
  });
  t.after(() => launcher.dispose());
  const status = await waitForStatus(launcher, (s) => s.phase === 'Running' && s.guestAgent.connected && s, BOOT_TIMEOUT_MS);
  t.diagnostic(`accelerator=${status.accelerator}`);
  assert.equal(status.guest.os?.id, 'debian', 'the agent answered');
  const intruder = await fetch(`${launcher.baseUrl}/v1/status`, { headers: { authorization: `Bearer ${'x'.repeat(4096)}` } });
  assert.equal(intruder.status, 401, 'an oversized token is refused');
  await launcher.client.status();
  const loaded = await recording.read(launcher.process.pid ?? -1);
  assert.ok(loaded.includes('http') && loaded.includes('child_process') && loaded.includes('dgram'), `the recorder saw the launcher's builtins (${loaded.length})`);
  assert.deepEqual(loaded.filter((m) => /^(crypto|tls|_tls_\w+|internal\/crypto\/.+|internal\/tls\/.+)$/.test(m)), []);
});
