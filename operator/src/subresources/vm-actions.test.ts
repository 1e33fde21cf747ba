import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LauncherHttpError, LauncherUnreachableError } from '@keyvirt/launcher/api';
import { SubresourceError } from './errors.ts';
import { chooseLauncherPod, tokenOfOwnSecret, type SubresourceVm } from './launcher-endpoint.ts';
import { EmptyBodySchema, launcherFailure, MigrateBodySchema, migrationObject, parseActionBody, unfinishedMigrations } from './vm-actions.ts';

const vm: SubresourceVm = {
  metadata: { name: 'vm-1', namespace: 'ns-1', uid: 'uid-1', labels: { 'keyvirt.io/test-run': 'r1' } },
  status: { phase: 'Running', launcherPod: 'launcher-vm-1' },
};

void test('migrate creates a migration with the VM labels, the requester and the target node as a selector', () => {
  assert.deepEqual(migrationObject(vm, { targetNode: 'node-2' }, 'alice', 'x7k2p'), {
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachineMigration',
    metadata: {
      name: 'vm-1-migrate-x7k2p',
      namespace: 'ns-1',
      labels: { 'keyvirt.io/test-run': 'r1', 'keyvirt.io/vm': 'vm-1' },
      annotations: { 'keyvirt.io/requested-by': 'alice' },
    },
    spec: { vmName: 'vm-1', targetNodeSelector: { 'kubernetes.io/hostname': 'node-2' } },
  });
  const anywhere = migrationObject(vm, {}, 'alice', 'abcde') as { spec: Record<string, unknown> };
  assert.deepEqual(anywhere.spec, { vmName: 'vm-1' });
});

const bodies: { name: string; text: string; want?: unknown; message?: RegExp }[] = [
  { name: 'empty', text: '', want: {} },
  { name: 'target node', text: '{"targetNode":"node-2"}', want: { targetNode: 'node-2' } },
  { name: 'unknown field named', text: '{"targetNode":"n","speed":1}', message: /unknown field speed/ },
  { name: 'bad node name', text: '{"targetNode":"Node_2"}', message: /targetNode: targetNode must be a node name/ },
  { name: 'wrong type', text: '{"targetNode":2}', message: /targetNode/ },
  { name: 'not JSON', text: '{', message: /not valid JSON/ },
  { name: 'not an object', text: '[]', message: /body/ },
];
for (const b of bodies) {
  void test(`migrate body: ${b.name}`, () => {
    if (b.want !== undefined) {
      assert.deepEqual(parseActionBody(MigrateBodySchema, b.text), b.want);
      return;
    }
    assert.throws(() => parseActionBody(MigrateBodySchema, b.text), (err: unknown) => err instanceof SubresourceError && err.code === 400 && (b.message?.test(err.message) ?? false));
  });
}

void test('actions without fields refuse any field', () => {
  assert.deepEqual(parseActionBody(EmptyBodySchema, '{}'), {});
  assert.throws(() => parseActionBody(EmptyBodySchema, '{"force":true}'), /unknown field force/);
});

void test('migrate-cancel picks the unfinished migrations of this VM only', () => {
  const m = (name: string, vmName: string, phase?: string): { metadata: { name: string }; spec: { vmName: string }; status?: { phase?: string } } => ({
    metadata: { name },
    spec: { vmName },
    ...(phase === undefined ? {} : { status: { phase } }),
  });
  const items = [m('b', 'vm-1', 'Running'), m('a', 'vm-1'), m('c', 'vm-1', 'Succeeded'), m('d', 'vm-2', 'Running'), m('e', 'vm-1', 'Cancelled'), m('f', 'vm-1', 'Failed')];
  assert.deepEqual(unfinishedMigrations('vm-1', items), ['a', 'b']);
});

const failures: { name: string; err: unknown; code: number; message: RegExp }[] = [
  { name: 'launcher conflict', err: new LauncherHttpError('POST', '/v1/actions/pause', 409, { error: { code: 'Conflict', message: 'VM is Paused' } }), code: 409, message: /ns-1\/vm-1: cannot pause: VM is Paused/ },
  { name: 'launcher not found', err: new LauncherHttpError('GET', '/v1/vnc', 404, { error: { code: 'NotFound', message: 'this VM has no display' } }), code: 404, message: /no display/ },
  { name: 'launcher 500', err: new LauncherHttpError('POST', '/v1/actions/pause', 500, undefined), code: 503, message: /launcher failed/ },
  { name: 'unreachable', err: new LauncherUnreachableError('ECONNREFUSED'), code: 503, message: /did not answer/ },
  { name: 'anything else', err: new Error('boom'), code: 500, message: /pause failed/ },
];
for (const f of failures) {
  void test(`launcher failure → Status: ${f.name}`, () => {
    const got = launcherFailure(vm, 'pause', f.err);
    assert.equal(got.code, f.code);
    assert.match(got.message, f.message);
  });
}

const pod = (name: string, uid: string, phase: string, ip?: string): Parameters<typeof chooseLauncherPod>[1][number] => ({
  metadata: { name, namespace: 'ns-1', labels: { 'keyvirt.io/vm-uid': uid } },
  spec: { containers: [] },
  status: { phase, ...(ip === undefined ? {} : { podIP: ip }) },
});

const choices: { name: string; vm: SubresourceVm; pods: Parameters<typeof chooseLauncherPod>[1]; ip?: string; why?: RegExp }[] = [
  { name: 'the named, running pod', vm, pods: [pod('launcher-vm-1', 'uid-1', 'Running', '10.0.0.5')], ip: '10.0.0.5' },
  { name: 'a stopped VM', vm: { ...vm, status: { phase: 'Stopped' } }, pods: [], why: /is not running \(phase Stopped\)/ },
  { name: 'pod gone', vm, pods: [], why: /launcher pod launcher-vm-1 is gone/ },
  { name: 'another VM of the same name', vm, pods: [pod('launcher-vm-1', 'uid-0', 'Running', '10.0.0.5')], why: /not this VM's launcher/ },
  { name: 'pod pending', vm, pods: [pod('launcher-vm-1', 'uid-1', 'Pending')], why: /not running yet: its launcher pod launcher-vm-1 is Pending/ },
  { name: 'a migration target is not the launcher', vm, pods: [pod('launcher-vm-1-abc', 'uid-1', 'Running', '10.0.0.6')], why: /is gone/ },
];
for (const c of choices) {
  void test(`launcher pod: ${c.name}`, () => {
    const got = chooseLauncherPod(c.vm, c.pods);
    if (c.ip !== undefined) assert.equal('ip' in got ? got.ip : undefined, c.ip);
    else assert.match('why' in got ? got.why : '', c.why ?? /never/);
  });
}

void test('the token is used only from a Secret this VM controls', () => {
  const secret = (uid: string, kind = 'VirtualMachine'): Parameters<typeof tokenOfOwnSecret>[0] => ({
    metadata: { name: 'launcher-vm-1', ownerReferences: [{ apiVersion: 'keyvirt.io/v1alpha1', kind, name: 'vm-1', uid, controller: true }] },
    data: { token: Buffer.from('t0ken-of-vm-1').toString('base64') },
  });
  assert.equal(tokenOfOwnSecret(secret('uid-1'), vm), 't0ken-of-vm-1');
  assert.equal(tokenOfOwnSecret(secret('uid-0'), vm), undefined);
  assert.equal(tokenOfOwnSecret(secret('uid-1', 'Pod'), vm), undefined);
  assert.equal(tokenOfOwnSecret({ metadata: { name: 'launcher-vm-1' }, data: { token: 'eA==' } }, vm), undefined);
});
