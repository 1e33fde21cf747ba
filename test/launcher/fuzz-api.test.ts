// A launcher running the real test guest under QEMU, attacked through its API port:
// the request that used to end the process (`GET //a:99999/`), a few thousand generated
// malformed requests (request lines, headers, bodies, encodings, truncations), huge
// headers, slow clients and a connection flood from another peer address. Afterwards
// the launcher is still the same process, QEMU the same pid, the guest the same boot
// with its counter still counting, and the API answers; the safety net was never needed.
// Bounded in time: the generated part is a fixed number of requests (KEYVIRT_FUZZ_SEED
// replays a run; the seed is printed).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertCounterContinues, startLauncher, waitForCounter, waitForStatus } from '../support/launcher-process.ts';
import { openSocket, rawExchange } from '../support/raw-http.ts';
import { Random } from './http-fuzz.ts';
import { fuzzApi, slowClients, type FuzzRun } from './http-fuzz-run.ts';

const BOOT_TIMEOUT_MS = 180_000;
const GENERATED_REQUESTS = 3000;
const CONCURRENCY = 12;
/** Another loopback address: the attacker is a different peer than the test's own client. */
const ATTACKER = '127.0.0.2';
/** The launcher's headers timeout (DEFAULT_SERVER_LIMITS) plus its 1 s check interval and slack. */
const SLOW_CLIENT_CUTOFF_MS = 14_000;

void test('hostile traffic on the API port leaves the launcher, QEMU and the guest untouched', { timeout: 420_000 }, async (t) => {
  const launcher = await startLauncher({ name: 'fuzz' });
  t.after(() => launcher.dispose());
  const host = '127.0.0.1';
  const port = Number(new URL(launcher.baseUrl).port);
  const running = await waitForStatus(launcher, (s) => s.phase === 'Running', BOOT_TIMEOUT_MS, 'Running');
  const qemuPid = running.qemu.pid;
  const before = await waitForCounter(launcher, 3, BOOT_TIMEOUT_MS);
  const bootId = before[0]?.bootId;
  assert.ok(bootId !== undefined && typeof qemuPid === 'number');
  t.diagnostic(`accelerator=${running.accelerator}`);

  // The operator's view while the attack runs: status every 250 ms must keep answering.
  const watch = { stop: false, ok: 0, failed: [] as string[] };
  t.after(() => {
    watch.stop = true;
  });
  const watching = (async () => {
    while (!watch.stop) {
      try {
        const s = await launcher.client.status();
        if (s.phase === 'Running') watch.ok++;
        else watch.failed.push(`phase ${s.phase}`);
      } catch (err) {
        watch.failed.push((err as Error).message);
      }
      await sleep(250);
    }
  })();

  await t.test('the request that used to end the process, and its relatives', async () => {
    const cases: [string, number][] = [
      ['GET //a:99999/ HTTP/1.1\r\nHost: x\r\n\r\n', 401],
      [`GET //a:99999/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${launcher.vm.token}\r\n\r\n`, 404],
      [`GET /v1/%E0%A4%A HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${launcher.vm.token}\r\n\r\n`, 400],
      ['GET /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n', 401],
      ['DELETE /v1/status HTTP/1.1\r\nHost: x\r\n\r\n', 401],
      [`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: ${'a'.repeat(64 * 1024)}\r\n\r\n`, 431],
      [`GET /healthz HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 3000 }, (_, i) => `X-H${i}: v`).join('\r\n')}\r\n\r\n`, 431],
      ['GET http://launcher/v1/info HTTP/1.1\r\nHost: x\r\n\r\n', 400],
    ];
    for (const [request, status] of cases) {
      const answer = await rawExchange(host, port, Buffer.from(request, 'latin1'), { waitMs: 5000, localAddress: ATTACKER });
      assert.equal(answer.status, status, `${JSON.stringify(request.slice(0, 60))} → ${answer.text.slice(0, 120)}`);
    }
  });

  await t.test(`${GENERATED_REQUESTS} generated malformed requests, with slow clients alongside`, async () => {
    const seed = Number(process.env.KEYVIRT_FUZZ_SEED ?? Date.now() % 2 ** 31);
    t.diagnostic(`KEYVIRT_FUZZ_SEED=${seed}`);
    const random = new Random(seed);
    // Slow clients: each sends one header line every second and never finishes.
    const slow = await slowClients(host, port, 8, ATTACKER);
    let run: FuzzRun;
    let cutoffs: number[] | 'never';
    try {
      run = await fuzzApi({ host, port, token: launcher.vm.token, random, requests: GENERATED_REQUESTS, concurrency: CONCURRENCY, localAddress: ATTACKER });
      cutoffs = await Promise.race([Promise.all(slow.closed), sleep(SLOW_CLIENT_CUTOFF_MS + 5000, 'never' as const)]);
    } finally {
      slow.stop();
    }
    const { statuses, unexpected } = run;
    t.diagnostic(`answers: ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`);
    assert.deepEqual(unexpected.slice(0, 20), [], `${unexpected.length} unexpected answers`);
    assert.notEqual(cutoffs, 'never', 'slow clients were never cut off');
    if (cutoffs !== 'never') t.diagnostic(`slow clients cut off after ${Math.min(...cutoffs)}–${Math.max(...cutoffs)} ms`);
  });

  await t.test('a connection flood from one peer is capped while the operator still gets through', async () => {
    const flood = await Promise.all(Array.from({ length: 400 }, () => openSocket(host, port, ATTACKER)));
    try {
      await sleep(300);
      const held = flood.filter((s) => !s.destroyed).length;
      assert.ok(held <= 40, `${held} connections held by one peer`);
      const status = await launcher.client.status();
      assert.equal(status.phase, 'Running', 'the operator gets through during the flood');
    } finally {
      for (const s of flood) s.destroy();
    }
  });

  watch.stop = true;
  await watching;

  await t.test('afterwards: same launcher, same QEMU, same boot, counter counting, API answering', async () => {
    assert.equal(launcher.process.exitCode, null, 'the launcher exited');
    assert.equal(launcher.process.signalCode, null);
    const status = await launcher.client.status();
    assert.equal(status.phase, 'Running');
    assert.equal(status.qemu.pid, qemuPid, 'QEMU was restarted');
    const info = await launcher.client.info();
    assert.deepEqual(info.apiVersions, ['v1']);
    const lastBefore = before.at(-1)?.n ?? 0;
    const after = await waitForCounter(launcher, before.length + 5, 60_000);
    assertCounterContinues(after, bootId, 'after the attack');
    assert.ok((after.at(-1)?.n ?? 0) > lastBefore + 4, 'the counter kept counting');
    assert.deepEqual(watch.failed, [], 'status requests failed during the attack');
    assert.ok(watch.ok > 10, `only ${watch.ok} status answers during the attack`);
    const netCaught = launcher.logs().filter((l) => l.msg.startsWith('uncaught error'));
    assert.deepEqual(netCaught, [], 'the safety net had to catch an error');
  });
});
