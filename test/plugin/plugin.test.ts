// End to end on the local cluster: `kubectl keyvirt` as a user runs it — the plugin on
// PATH, found by the pinned kubectl, with a kubeconfig holding only a ServiceAccount
// token — against the real kube-apiserver (API aggregation, RBAC), the real operator
// serving subresources.keyvirt.io from the host, and a real launcher running the test
// guest under QEMU (TCG here). Cases: kubectl finds the plugin → errors name what is
// wrong (403 without RBAC on virtualmachines/console, VM not found, already running,
// unknown flag, unknown context) with their exit codes → console types a command and
// reads the reply, Ctrl+] leaves, piped and in a pty → vnc --proxy-only yields the RFB handshake →
// guestinfo → port-forward up to the API server (no kubelet streaming on simulated
// nodes) → pause → Paused and the guest counter stops, unpause → Running →
// soft-reboot → a new boot id → migrate --wait → the VM on another node →
// stop --wait → Stopped, start --wait → Running, restart --wait → a new launcher pod.
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { maxCounterOfBoot, readDiskRecords, testGuest, type TestGuest } from '../support/guest.ts';
import { type OperatorProcess, startSubresourceOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, getVm, launcherPods, pvcDisk, scratch, type Scratch, testVm, waitVm } from '../operator/vm-fixtures.ts';
import { chartUserRoles, serviceAccountUser } from '../subresources/api-user.ts';
import { pluginOnPath, runToEnd, start, tokenKubeconfig, type Finished } from './plugin-process.ts';

const VM = 'plug-1';

function shown(r: Finished): string {
  return `exit ${String(r.code)}; stdout: ${r.stdout}; stderr: ${r.stderr}`;
}

/** The first bytes a TCP server sends. */
function greeting(port: number, bytes: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`only ${JSON.stringify(got.toString('latin1'))} within ${String(timeoutMs)} ms`));
    }, timeoutMs);
    socket.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
      if (got.length >= bytes) {
        clearTimeout(timer);
        socket.destroy();
        resolve(got.subarray(0, bytes).toString('latin1'));
      }
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

void describe('kubectl keyvirt on the local cluster', { timeout: 25 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let operator: OperatorProcess;
  let image: string;
  let env: NodeJS.ProcessEnv;
  let userConfig: string;
  let strangerConfig: string;
  let viewerConfig: string;

  /** `kubectl keyvirt ARGS` through kubectl, as the user bound to keyvirt.io:edit. */
  const keyvirt = (args: readonly string[], config = userConfig, timeoutMs = 120_000): Promise<Finished> =>
    runToEnd(cluster.kubectlPath, ['keyvirt', ...args], { ...env, KUBECONFIG: config }, timeoutMs);
  /** The plugin run directly (as kubectl would exec it), with --kubeconfig. */
  const plugin = (args: readonly string[], config = userConfig, timeoutMs = 120_000): Promise<Finished> =>
    runToEnd('kubectl-keyvirt', ['--kubeconfig', config, ...args], env, timeoutMs);

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-plugin');
    image = await pvcDisk(cluster, s, 'plug-1-data');
    operator = await startSubresourceOperator(cluster, s, 'plugin');
    cluster.kubectl(['apply', '--server-side', '--field-manager=keyvirt-tests', '-f', '-'], chartUserRoles());
    const user = await serviceAccountUser(cluster, s.namespace, 'vm-user');
    const stranger = await serviceAccountUser(cluster, s.namespace, 'stranger');
    const viewer = await serviceAccountUser(cluster, s.namespace, 'viewer');
    cluster.kubectl(['create', 'rolebinding', 'vm-user-edit', '-n', s.namespace, '--clusterrole=keyvirt.io:edit', `--serviceaccount=${s.namespace}:vm-user`]);
    cluster.kubectl(['create', 'rolebinding', 'viewer-view', '-n', s.namespace, '--clusterrole=keyvirt.io:view', `--serviceaccount=${s.namespace}:viewer`]);
    env = await pluginOnPath(s.dir);
    userConfig = await tokenKubeconfig(cluster, path.join(s.dir, 'user.kubeconfig'), user, s.namespace);
    strangerConfig = await tokenKubeconfig(cluster, path.join(s.dir, 'stranger.kubeconfig'), stranger, s.namespace);
    viewerConfig = await tokenKubeconfig(cluster, path.join(s.dir, 'viewer.kubeconfig'), viewer, s.namespace);
    apply(cluster, testVm(s, guest, { name: VM, claimName: 'plug-1-data' }));
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running with the agent', (v) => v.status?.phase === 'Running' && v.status.guestOSInfo !== undefined);
    await eventually('the guest writing to its disk', async () => ((await readDiskRecords(image)).length > 3 ? true : undefined), 60_000);
  });

  after(async () => {
    await stopOperator(operator);
    await s.cleanup();
  });

  void it('kubectl finds kubectl-keyvirt on PATH: version names the plugin, the API server and both KeyVirt APIs', async () => {
    const r = await keyvirt(['version']);
    assert.equal(r.code, 0, shown(r));
    assert.match(r.stdout, /^Plugin version: 0\.1\.0$/m);
    assert.match(r.stdout, /^Server version: v1\.\d+\.\d+/m);
    assert.match(r.stdout, /^KeyVirt API keyvirt\.io\/v1alpha1: served$/m);
    assert.match(r.stdout, /^KeyVirt subresources\.keyvirt\.io\/v1alpha1: served$/m);
    const help = await keyvirt(['console', '--help']);
    assert.equal(help.code, 0, shown(help));
    assert.match(help.stdout, /Ctrl\+\] to leave/);
  });

  void it('errors name what is wrong, with their exit codes', async () => {
    const cases: { who: string; args: string[]; code: number; message: RegExp }[] = [
      { who: strangerConfig, args: ['console', VM], code: 4, message: new RegExp(`^error: forbidden: you may not get virtualmachines/console \\(API group subresources\\.keyvirt\\.io\\) in namespace "${s.namespace}"; ask for an RBAC role`) },
      { who: viewerConfig, args: ['vnc', VM, '--proxy-only'], code: 4, message: /^error: forbidden: you may not get virtualmachines\/vnc/ },
      { who: strangerConfig, args: ['pause', VM], code: 4, message: /^error: forbidden: you may not update virtualmachines\/pause/ },
      { who: strangerConfig, args: ['stop', VM], code: 4, message: /^error: forbidden: you may not get virtualmachines \(API group keyvirt\.io\)/ },
      { who: userConfig, args: ['pause', 'no-such-vm'], code: 3, message: new RegExp(`^error: VirtualMachine "no-such-vm" not found in namespace "${s.namespace}"$`, 'm') },
      { who: userConfig, args: ['start', 'no-such-vm'], code: 3, message: new RegExp(`^error: VirtualMachine "no-such-vm" not found in namespace "${s.namespace}"$`, 'm') },
      { who: userConfig, args: ['start', VM], code: 5, message: /^error: VirtualMachine "plug-1" in namespace "[^"]+" is already running \(phase Running\)$/m },
      { who: userConfig, args: ['migrate-cancel', VM], code: 3, message: /^error: VirtualMachine "plug-1" in namespace "[^"]+": .*no migration in progress/m },
      { who: userConfig, args: ['console', VM, '--follow'], code: 2, message: /^error: unknown flag --follow for "console"\nSee "kubectl keyvirt console --help"\.$/m },
      { who: userConfig, args: ['--context', 'staging', 'pause', VM], code: 1, message: /^error: context "staging" not found in .*user\.kubeconfig \(contexts: user\)$/m },
      { who: userConfig, args: ['image-upload', 'disk.img'], code: 2, message: /^error: --file is required/m },
    ];
    for (const c of cases) {
      const r = await keyvirt(c.args, c.who);
      assert.equal(r.code, c.code, `${c.args.join(' ')}: ${shown(r)}`);
      assert.match(r.stderr, c.message, c.args.join(' '));
    }
    // -n beats the context's namespace.
    const elsewhere = await plugin(['-n', 'default', 'guestinfo', VM]);
    assert.equal(elsewhere.code, 4, shown(elsewhere));
    assert.match(elsewhere.stderr, /in namespace "default"/);
  });

  void it('console: a typed command is answered on stdout, Ctrl+] leaves with exit 0', async () => {
    const c = start(cluster.kubectlPath, ['keyvirt', 'console', VM], { ...env, KUBECONFIG: userConfig });
    try {
      await c.until('stderr', /Connected to the console of VirtualMachine "plug-1" .*Escape character is \^\]/, 60_000);
      // The first Enter starts the guest's root shell (hack/guest/rootfs/etc/keyvirt/console-shell).
      c.child.stdin.write('\n');
      await new Promise((r) => setTimeout(r, 1000));
      c.child.stdin.write('echo kv-$((6*7))-plugin\n');
      await c.until('stdout', /kv-42-plugin/, 30_000);
      c.child.stdin.write(Buffer.from([0x1d]));
      assert.equal(await c.exited, 0, c.stderr());
      assert.match(c.stderr(), /Console closed\./);
    } finally {
      c.child.kill('SIGKILL');
    }
  });

  void it('console in a terminal (a pty from script(1)): raw mode, the guest echoes what is typed, Ctrl+] leaves with exit 0', async () => {
    // The console is free again once the previous session's close has reached the server.
    const command = `${cluster.kubectlPath} keyvirt console ${VM}`;
    const c = start('script', ['-qfec', command, '/dev/null'], { ...env, KUBECONFIG: userConfig, TERM: 'dumb' });
    try {
      await c.until('stdout', /Escape character is \^\]/, 60_000);
      c.child.stdin.write('\r');
      await new Promise((r) => setTimeout(r, 1000));
      c.child.stdin.write('echo kv-$((5*5))-tty\r');
      await c.until('stdout', /kv-25-tty/, 30_000);
      c.child.stdin.write(Buffer.from([0x1d]));
      assert.equal(await c.exited, 0, c.stdout());
      assert.match(c.stdout(), /Console closed\./);
    } finally {
      c.child.kill('SIGKILL');
    }
  });

  void it('vnc --proxy-only prints the port, which yields the RFB handshake of the guest display', async () => {
    const v = start('kubectl-keyvirt', ['--kubeconfig', userConfig, 'vnc', VM, '--proxy-only'], env);
    try {
      const out = await v.until('stdout', /\{"port":\d+\}\n/, 30_000);
      const port = Number(/"port":(\d+)/.exec(out)?.[1]);
      assert.ok(port > 0);
      assert.equal(await greeting(port, 12, 30_000), 'RFB 003.008\n');
      v.child.kill('SIGTERM');
      assert.equal(await v.exited, 0, v.stderr());
    } finally {
      v.child.kill('SIGKILL');
    }
  });

  void it('guestinfo shows the OS from the agent, as text and as JSON; the viewer role may read it', async () => {
    const text = await keyvirt(['guestinfo', VM], viewerConfig);
    assert.equal(text.code, 0, shown(text));
    assert.match(text.stdout, /^OS: +.*\(id debian, /m);
    assert.match(text.stdout, /^File systems \(\d+\):/m);
    const json = await plugin(['guestinfo', VM, '-o', 'json']);
    assert.equal(json.code, 0, shown(json));
    const info = JSON.parse(json.stdout) as { kind: string; os?: { id?: string } };
    assert.equal(info.kind, 'VirtualMachineGuestInfo');
    assert.equal(info.os?.id, 'debian');
  });

  void it('port-forward listens locally; the simulated node serves no kubelet streaming, and the error names the launcher pod and the API server answer', async () => {
    const f = start('kubectl-keyvirt', ['--kubeconfig', userConfig, 'port-forward', VM, ':22'], env);
    try {
      const out = await f.until('stdout', /^Forwarding from 127\.0\.0\.1:\d+ -> 22$/m, 30_000);
      const port = Number(/127\.0\.0\.1:(\d+) -> 22/.exec(out)?.[1]);
      await new Promise<void>((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        socket.once('close', () => resolve());
        socket.once('error', () => resolve());
        socket.resume();
      });
      await f.until('stderr', /^port-forward: .*(Pod "launcher-plug-1"|pods\/portforward).*in namespace "[^"]+"/m, 30_000);
      f.child.kill('SIGTERM');
      assert.equal(await f.exited, 0, f.stderr());
    } finally {
      f.child.kill('SIGKILL');
    }
  });

  void it('pause → Paused and the guest counter stops; pausing again is refused; unpause → Running and it moves on', async () => {
    const bootId = (await readDiskRecords(image))[0]?.bootId ?? '';
    assert.notEqual(bootId, '');
    const p = await keyvirt(['pause', VM]);
    assert.equal(p.code, 0, shown(p));
    assert.match(p.stdout, /VirtualMachine "plug-1" in namespace "[^"]+": pause accepted/);
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Paused', (v) => v.status?.phase === 'Paused', 60_000);
    const again = await keyvirt(['pause', VM]);
    assert.equal(again.code, 5, shown(again));
    const pausedAt = await maxCounterOfBoot(image, bootId);
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await maxCounterOfBoot(image, bootId), pausedAt, 'the counter stood still while paused');
    const u = await keyvirt(['unpause', VM]);
    assert.equal(u.code, 0, shown(u));
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running again', (v) => v.status?.phase === 'Running', 60_000);
    await eventually('the counter moving again', async () => ((await maxCounterOfBoot(image, bootId)) > pausedAt ? true : undefined), 30_000);
  });

  void it('soft-reboot → a new boot id in the same launcher pod', async () => {
    const bootId = (await readDiskRecords(image))[0]?.bootId ?? '';
    const podBefore = launcherPods(cluster, s.namespace, VM)[0]?.metadata.uid;
    const r = await keyvirt(['soft-reboot', VM]);
    assert.equal(r.code, 0, shown(r));
    await eventually('records of a new boot', async () => ((await readDiskRecords(image)).some((rec) => rec.bootId !== bootId) ? true : undefined), 180_000);
    assert.equal(launcherPods(cluster, s.namespace, VM)[0]?.metadata.uid, podBefore, 'the same launcher pod');
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running with the agent after the reboot', (v) => v.status?.phase === 'Running', 120_000);
  });

  void it('migrate --wait → the VM runs on another node', async () => {
    const before = getVm(cluster, s.namespace, VM)?.status?.nodeName;
    assert.ok(before !== undefined);
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'LiveMigratable', (v) => v.status?.conditions?.find((c) => c.type === 'LiveMigratable')?.status === 'True', 120_000);
    const r = await keyvirt(['migrate', VM, '--wait', '--timeout', '600'], userConfig, 660_000);
    assert.equal(r.code, 0, shown(r));
    assert.match(r.stdout, /migration \S+ created/);
    assert.match(r.stdout, /migration \S+ succeeded, now on node \S+/);
    const vm = await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running on another node', (v) => v.status?.phase === 'Running' && v.status.nodeName !== before, 120_000);
    assert.notEqual(vm.status?.nodeName, before);
  });

  void it('stop --wait → Stopped; start --wait → Running; restart --wait → a new launcher pod, Running', async () => {
    const stop = await keyvirt(['stop', VM, '--wait', '--timeout', '240'], userConfig, 300_000);
    assert.equal(stop.code, 0, shown(stop));
    assert.match(stop.stdout, /stop requested\n.*: Stopped$/m);
    assert.equal(getVm(cluster, s.namespace, VM)?.spec.runStrategy, 'Halted');
    await eventually('launcher pod gone', () => (launcherPods(cluster, s.namespace, VM).length === 0 ? true : undefined), 60_000);
    const stopAgain = await keyvirt(['stop', VM]);
    assert.equal(stopAgain.code, 5, shown(stopAgain));
    assert.match(stopAgain.stderr, /is already stopped/);
    const restartHalted = await keyvirt(['restart', VM]);
    assert.equal(restartHalted.code, 5, shown(restartHalted));
    assert.match(restartHalted.stderr, /is Halted: start it instead of restarting/);

    const startRun = await keyvirt(['start', VM, '--wait', '--timeout', '300'], userConfig, 360_000);
    assert.equal(startRun.code, 0, shown(startRun));
    assert.equal(getVm(cluster, s.namespace, VM)?.spec.runStrategy, 'Always');
    const podBefore = launcherPods(cluster, s.namespace, VM)[0]?.metadata.uid;
    assert.ok(podBefore !== undefined);

    const restart = await keyvirt(['restart', VM, '--wait', '--timeout', '300'], userConfig, 360_000);
    assert.equal(restart.code, 0, shown(restart));
    const pods = launcherPods(cluster, s.namespace, VM).filter((p) => p.metadata.deletionTimestamp === undefined);
    assert.equal(pods.length, 1);
    assert.notEqual(pods[0]?.metadata.uid, podBefore, 'a new launcher pod');
  });
});
