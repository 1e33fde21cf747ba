// End to end on the local cluster: the real kube-apiserver with API aggregation, the
// real operator (shipped RBAC) serving subresources.keyvirt.io from the host, a real
// launcher running the test guest under QEMU (TCG here). Every request goes through
// the kube-apiserver with a ServiceAccount's token, as a user's would:
// discovery and Available → a user without RBAC gets 403, one bound to the chart's
// keyvirt.io:edit gets in → the serial console answers typed commands → an idle
// console survives 60 s → a second console is 409 → VNC speaks RFB 003.008 →
// guestinfo names the OS → pause stops the guest's counter, unpause resumes it →
// soft-reboot gives a new boot id → migrate moves it to the other node and the console
// follows → bad input answers with a Status naming it → the
// operator's port refuses anyone but the front proxy.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { maxCounterOfBoot, readDiskRecords, testGuest, type TestGuest } from '../support/guest.ts';
import { type OperatorProcess, startSubresourceOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, getVm, pvcDisk, scratch, type Scratch, testVm, waitVm } from '../operator/vm-fixtures.ts';
import { apiRequest, type ApiUser, chartUserRoles, collect, openWebSocket, serviceAccountUser, subresourcePath } from './api-user.ts';

const VM = 'sub-1';
const IDLE_MS = 60_000;

void describe('subresources.keyvirt.io through the kube-apiserver', { timeout: 15 * 60_000 }, () => {
  let cluster: TestCluster;
  let guest: TestGuest;
  let s: Scratch;
  let operator: OperatorProcess & { subresourcePort: number };
  let image: string;
  let allowed: ApiUser;
  let stranger: ApiUser;

  before(async () => {
    cluster = await ensureCluster();
    guest = await testGuest();
    s = await scratch(cluster, 'kv-e2e-sub');
    image = await pvcDisk(cluster, s, 'sub-1-data');
    operator = await startSubresourceOperator(cluster, s, 'sub');
    cluster.kubectl(['apply', '--server-side', '--field-manager=keyvirt-tests', '-f', '-'], chartUserRoles());
    allowed = await serviceAccountUser(cluster, s.namespace, 'vm-user');
    stranger = await serviceAccountUser(cluster, s.namespace, 'stranger');
    cluster.kubectl(['create', 'rolebinding', 'vm-user-edit', '-n', s.namespace, '--clusterrole=keyvirt.io:edit', `--serviceaccount=${s.namespace}:vm-user`]);
    apply(cluster, testVm(s, guest, { name: VM, claimName: 'sub-1-data' }));
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running with the agent', (v) => v.status?.phase === 'Running' && v.status.guestOSInfo !== undefined);
  });

  after(async () => {
    await stopOperator(operator);
    await s.cleanup();
  });

  void it('discovery lists the subresources and RBAC answers can-i for them', async () => {
    const list = await apiRequest(allowed, 'GET', '/apis/subresources.keyvirt.io/v1alpha1');
    assert.equal(list.status, 200, list.body);
    assert.match(list.body, /"virtualmachines\/console"/);
    assert.match(list.body, /"virtualmachines\/soft-reboot"/);
    const canI = (who: ApiUser): string =>
      spawnSync(cluster.kubectlPath, ['--kubeconfig', cluster.kubeconfig, 'auth', 'can-i', 'get', 'virtualmachines.subresources.keyvirt.io', '--subresource=console', '-n', s.namespace, `--as=${who.name}`], { encoding: 'utf8' }).stdout.trim();
    assert.equal(canI(allowed), 'yes');
    assert.equal(canI(stranger), 'no');
    // The subresource group does not take over the name: plain `virtualmachines` is still keyvirt.io's.
    assert.match(cluster.kubectl(['get', 'virtualmachines', '-n', s.namespace, '-o', 'name']), /virtualmachine\.keyvirt\.io\/sub-1/);
  });

  void it('a user without RBAC on virtualmachines/console gets 403; one with it gets in', async () => {
    const denied = await openWebSocket(stranger, subresourcePath(s.namespace, VM, 'console'));
    assert.equal(denied.ok, false);
    if (!denied.ok) {
      assert.equal(denied.status, 403);
      assert.match(denied.body, /virtualmachines\/console/);
    }
    const pause = await apiRequest(stranger, 'PUT', subresourcePath(s.namespace, VM, 'pause'));
    assert.equal(pause.status, 403, pause.body);
    const open = await openWebSocket(allowed, subresourcePath(s.namespace, VM, 'console'));
    assert.equal(open.ok, true, open.ok ? '' : `${open.status} ${open.body}`);
    if (open.ok) {
      assert.equal(open.protocol, 'plain.keyvirt.io');
      open.ws.close();
    }
  });

  void it('the serial console answers what is typed, stays open 60 s idle, and is one session at a time', async () => {
    const open = await openWebSocket(allowed, subresourcePath(s.namespace, VM, 'console'));
    assert.ok(open.ok, open.ok ? '' : `${open.status} ${open.body}`);
    const { ws } = open;
    let closed = false;
    ws.once('close', () => (closed = true));
    const out = collect(ws);
    // The first Enter starts the guest's root shell (hack/guest/rootfs/etc/keyvirt/console-shell).
    ws.send(Buffer.from('\n'));
    await new Promise((r) => setTimeout(r, 1000));
    ws.send(Buffer.from('echo kv-$((6*7))-first\n'));
    await out.until(/kv-42-first/, 30_000);
    const second = await openWebSocket(allowed, subresourcePath(s.namespace, VM, 'console'));
    assert.equal(second.ok, false, 'a second console session is refused');
    if (!second.ok) {
      assert.equal(second.status, 409);
      assert.match(second.body, /in use/);
    }
    const idleFrom = Date.now();
    await new Promise((r) => setTimeout(r, IDLE_MS));
    assert.equal(closed, false, `the console closed after ${Date.now() - idleFrom} ms idle`);
    ws.send(Buffer.from('echo kv-$((7*8))-after-idle\n'));
    await out.until(/kv-56-after-idle/, 30_000);
    ws.close();
    await eventually('the console free again', async () => {
      const again = await openWebSocket(allowed, subresourcePath(s.namespace, VM, 'console'));
      if (!again.ok) return undefined;
      again.ws.close();
      return true;
    }, 30_000, 1000);
  });

  void it('VNC yields an RFB handshake from the guest display', async () => {
    const open = await openWebSocket(allowed, subresourcePath(s.namespace, VM, 'vnc'));
    assert.ok(open.ok, open.ok ? '' : `${open.status} ${open.body}`);
    const out = collect(open.ws);
    const greeting = await out.until(/RFB \d{3}\.\d{3}\n/, 30_000);
    assert.match(greeting, /^RFB 003\.008\n/);
    open.ws.close();
  });

  void it('guestinfo returns the OS, users and file systems from the agent', async () => {
    const r = await apiRequest(allowed, 'GET', subresourcePath(s.namespace, VM, 'guestinfo'));
    assert.equal(r.status, 200, r.body);
    const info = r.json() as { kind: string; os?: { id?: string }; users: unknown[]; filesystems: unknown[] };
    assert.equal(info.kind, 'VirtualMachineGuestInfo');
    assert.equal(info.os?.id, 'debian');
    assert.ok(Array.isArray(info.users) && Array.isArray(info.filesystems));
  });

  void it('pause → Paused and the guest counter stops; unpause → Running and it moves on', async () => {
    const bootId = (await readDiskRecords(image))[0]?.bootId ?? '';
    assert.notEqual(bootId, '');
    const r = await apiRequest(allowed, 'PUT', subresourcePath(s.namespace, VM, 'pause'));
    assert.equal(r.status, 202, r.body);
    assert.equal((r.json() as { kind: string }).kind, 'VirtualMachineActionResult');
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Paused', (v) => v.status?.phase === 'Paused', 60_000);
    const twice = await apiRequest(allowed, 'PUT', subresourcePath(s.namespace, VM, 'pause'));
    assert.equal(twice.status, 409, twice.body);
    const pausedAt = await maxCounterOfBoot(image, bootId);
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await maxCounterOfBoot(image, bootId), pausedAt, 'the counter stood still while paused');
    const u = await apiRequest(allowed, 'PUT', subresourcePath(s.namespace, VM, 'unpause'));
    assert.equal(u.status, 202, u.body);
    await waitVm(cluster, { namespace: s.namespace, name: VM }, 'Running again', (v) => v.status?.phase === 'Running', 60_000);
    await eventually('the counter moving again', async () => ((await maxCounterOfBoot(image, bootId)) > pausedAt ? true : undefined), 30_000);
  });

  void it('soft-reboot → a new boot id', async () => {
    const bootId = (await readDiskRecords(image))[0]?.bootId ?? '';
    const r = await apiRequest(allowed, 'PUT', subresourcePath(s.namespace, VM, 'soft-reboot'), '{}');
    assert.equal(r.status, 202, r.body);
    await eventually('records of a new boot', async () => ((await readDiskRecords(image)).some((rec) => rec.bootId !== bootId) ? true : undefined), 180_000);
  });

  void it('migrate --to-node creates a VirtualMachineMigration that moves the VM there', async () => {
    const from = getVm(cluster, s.namespace, VM)?.status?.nodeName;
    const to = cluster.defaultNodes.find((n) => n !== from);
    assert.ok(from !== undefined && to !== undefined, `nodes: ${from ?? '?'} → ${to ?? '?'}`);
    const r = await apiRequest(allowed, 'PUT', subresourcePath(s.namespace, VM, 'migrate'), JSON.stringify({ targetNode: to }));
    assert.equal(r.status, 201, r.body);
    const result = r.json() as { kind: string; migrationName: string };
    assert.equal(result.kind, 'VirtualMachineMigrateResult');
    const migration = JSON.parse(cluster.kubectl(['get', 'virtualmachinemigration', result.migrationName, '-n', s.namespace, '-o', 'json'])) as {
      metadata: { annotations?: Record<string, string> };
      spec: { vmName: string; targetNodeSelector?: Record<string, string> };
    };
    assert.equal(migration.spec.vmName, VM);
    assert.deepEqual(migration.spec.targetNodeSelector, { 'kubernetes.io/hostname': to });
    assert.equal(migration.metadata.annotations?.['keyvirt.io/requested-by'], allowed.name);
    const final = await eventually(
      'the migration finished',
      () => {
        const out = cluster.kubectl(['get', 'virtualmachinemigration', result.migrationName, '-n', s.namespace, '-o', 'jsonpath={.status.phase} {.status.failureReason} {.status.conditions[*].message}']).trim();
        return /^(Succeeded|Failed|Cancelled)\b/.test(out) ? out : undefined;
      },
      180_000,
      1000,
    );
    assert.match(final, /^Succeeded/);
    await waitVm(cluster, { namespace: s.namespace, name: VM }, `Running on ${to}`, (v) => v.status?.phase === 'Running' && v.status.nodeName === to, 60_000);
    const cancel = await apiRequest(allowed, 'PUT', subresourcePath(s.namespace, VM, 'migrate-cancel'));
    assert.equal(cancel.status, 404, 'nothing left to cancel');
    // The console follows the VM to its new launcher.
    const open = await openWebSocket(allowed, subresourcePath(s.namespace, VM, 'console'));
    assert.ok(open.ok, open.ok ? '' : `${open.status} ${open.body}`);
    const out = collect(open.ws);
    open.ws.send(Buffer.from('\n'));
    await new Promise((r) => setTimeout(r, 1000));
    open.ws.send(Buffer.from('echo kv-$((8*8))-moved\n'));
    await out.until(/kv-64-moved/, 30_000);
    open.ws.close();
  });

  void it('bad requests answer with a Status that names what is wrong', async () => {
    const cases: { method: string; sub: string; body?: string; status: number; message: RegExp }[] = [
      { method: 'PUT', sub: 'migrate', body: '{"targetNode":"x","speed":1}', status: 400, message: /speed/ },
      { method: 'PUT', sub: 'migrate', body: '{"targetNode":"Not_A_Node"}', status: 400, message: /targetNode/ },
      { method: 'PUT', sub: 'migrate-cancel', status: 404, message: /no migration in progress/ },
    ];
    for (const c of cases) {
      const r = await apiRequest(allowed, c.method, subresourcePath(s.namespace, VM, c.sub), c.body);
      assert.equal(r.status, c.status, `${c.method} ${c.sub}: ${r.body}`);
      const status = r.json() as { kind: string; message: string };
      assert.equal(status.kind, 'Status');
      assert.match(status.message, c.message);
    }
    // An unknown subresource: RBAC at the kube-apiserver refuses it to this user (403);
    // a cluster admin gets through to the server, which names the known ones.
    const unknown = await apiRequest(allowed, 'GET', subresourcePath(s.namespace, VM, 'reboot-now'));
    assert.equal(unknown.status, 403, unknown.body);
    const asAdmin = spawnSync(cluster.kubectlPath, ['--kubeconfig', cluster.kubeconfig, 'get', '--raw', subresourcePath(s.namespace, VM, 'reboot-now')], { encoding: 'utf8' });
    assert.notEqual(asAdmin.status, 0);
    assert.match(asAdmin.stderr, /NotFound.*no subresource "reboot-now"; known: console, vnc/);
    // The kube-apiserver authorises the verb of the method first: GET on an update-only subresource never reaches the server.
    const wrongVerb = await apiRequest(allowed, 'GET', subresourcePath(s.namespace, VM, 'pause'));
    assert.equal(wrongVerb.status, 403, wrongVerb.body);
    const missing = await apiRequest(allowed, 'GET', subresourcePath(s.namespace, 'no-such-vm', 'guestinfo'));
    assert.equal(missing.status, 404, missing.body);
    assert.match(missing.body, /no-such-vm not found/);
  });

  void it('the operator port serves nobody but the front proxy', async () => {
    const admin = {
      ca: await readFile(path.join(cluster.layout.pkiDir, 'ca.crt')),
      cert: await readFile(path.join(cluster.layout.pkiDir, 'admin.crt')),
      key: await readFile(path.join(cluster.layout.pkiDir, 'admin.key')),
    };
    const direct = (tls: { cert?: Buffer; key?: Buffer }): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const req = https.request({
          host: cluster.apiServer.host, port: operator.subresourcePort, path: subresourcePath(s.namespace, VM, 'guestinfo'), method: 'GET',
          rejectUnauthorized: false, headers: { 'x-remote-user': 'system:admin', 'x-remote-group': 'system:masters' }, ...tls,
        });
        req.once('error', reject);
        req.once('response', (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.end();
      });
    for (const tls of [{}, { cert: admin.cert, key: admin.key }]) {
      const r = await direct(tls);
      assert.equal(r.status, 401, r.body);
      assert.match(r.body, /proxied by the kube-apiserver/);
    }
  });
});
