// The launcher as its image runs it (the bundle under the launcher's Node flags), against
// real QEMU and the test guest: once the guest agent has answered and the API has been
// called with the token, the process has loaded neither node:crypto nor node:tls — a
// launcher that is not migrating and holds no storage lease never loads OpenSSL (ADR 0122).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildLauncher, LAUNCHER_NODE_FLAGS } from '../../hack/launcher-build/build-launcher.ts';
import { startLauncher, waitForStatus } from '../support/launcher-process.ts';

const BOOT_TIMEOUT_MS = 240_000;
const repoRoot = path.resolve(import.meta.dirname, '..', '..');
/**
 * Preloaded into the launcher (`--require`: CommonJS, as lite mode has no WebAssembly to
 * strip TypeScript with): every 200 ms it writes the builtins the process has loaded so
 * far, one per line, to the file KEYVIRT_TEST_BUILTINS_FILE names.
 */
const RECORDER = `'use strict';
const { writeFileSync } = require('node:fs');
const file = process.env.KEYVIRT_TEST_BUILTINS_FILE;
const loaded = () => process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length));
setInterval(() => writeFileSync(file, loaded().join('\\n') + '\\n'), 200).unref();
`;

/** The builtins the recorder wrote first after `since` (ms since the epoch), once it has. */
async function loadedBuiltinsAfter(file: string, since: number): Promise<string[]> {
  const deadline = Date.now() + 30_000;
  while ((await stat(file)).mtimeMs <= since) {
    if (Date.now() > deadline) throw new Error('the recorder wrote nothing for 30 s');
    await sleep(100);
  }
  return (await readFile(file, 'utf8')).split('\n').filter((l) => l !== '');
}

void test('the bundled launcher runs a guest to its agent and serves its API without loading OpenSSL', { timeout: 600_000 }, async (t) => {
  const build = buildLauncher(repoRoot, path.join(repoRoot, 'hack', '.cache', 'launcher-build'));
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-builtins-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'builtins');
  const recorder = path.join(dir, 'recorder.cjs');
  await writeFile(recorder, RECORDER);
  const launcher = await startLauncher({
    name: 'bundle-builtins',
    command: [process.execPath, ...LAUNCHER_NODE_FLAGS, '--require', recorder, build.entry],
    env: { KEYVIRT_TEST_BUILTINS_FILE: file },
  });
  t.after(() => launcher.dispose());
  const status = await waitForStatus(launcher, (s) => s.phase === 'Running' && s.guestAgent.connected && s, BOOT_TIMEOUT_MS);
  t.diagnostic(`accelerator=${status.accelerator}`);
  assert.equal(status.guest.os?.id, 'debian', 'the agent answered');
  const intruder = await fetch(`${launcher.baseUrl}/v1/status`, { headers: { authorization: `Bearer ${'x'.repeat(4096)}` } });
  assert.equal(intruder.status, 401, 'an oversized token is refused');
  await launcher.client.status();
  const loaded = await loadedBuiltinsAfter(file, Date.now());
  assert.ok(loaded.includes('http') && loaded.includes('child_process') && loaded.includes('dgram'), `the recorder saw the launcher's builtins (${loaded.length})`);
  assert.deepEqual(loaded.filter((m) => /^(crypto|tls|_tls_\w+|internal\/crypto\/.+|internal\/tls\/.+)$/.test(m)), []);
});
