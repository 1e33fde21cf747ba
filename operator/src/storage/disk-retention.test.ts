import assert from 'node:assert/strict';
import { test } from 'node:test';
import { holdAll, listedVerdict, retention, type ListedDisk, type OwnerLookup, type Retention } from './disk-retention.ts';

const disk = (vmUid?: string): ListedDisk => ({ namespace: 'prod', vmName: 'web-1', diskName: 'root', size: '10Gi', ...(vmUid === undefined ? {} : { vmUid }) });
const KEY = 'prod/web-1/root';

void test('from the cache alone a listed disk is only ever kept or looked up', () => {
  const cases: [string, ListedDisk, Map<string, string | undefined>, ReturnType<typeof listedVerdict>][] = [
    ['wanted by the same VM', disk('u1'), new Map([[KEY, 'u1']]), { action: 'keep-in-use' }],
    ['an entry without a UID is adopted by the VM that wants it', disk(), new Map([[KEY, 'u1']]), { action: 'keep-in-use', adoptUid: 'u1' }],
    ['nobody in the cache wants it (relabelled, unparsable, deleted, detached)', disk('u1'), new Map(), { action: 'look-up' }],
    ['a VM of another UID holds the name (deleted and recreated)', disk('u1'), new Map([[KEY, 'u2']]), { action: 'look-up' }],
  ];
  for (const [name, d, wanting, expected] of cases) assert.deepEqual(listedVerdict(d, wanting), expected, name);
});

void test('an image goes only when its VM is gone and no pod of that VM still runs', () => {
  const present = (uid: string | undefined, schemaProblem?: string): OwnerLookup => ({ kind: 'present', uid, schemaProblem });
  const cases: [string, ListedDisk, OwnerLookup, string[], Retention['action'], string?][] = [
    ['the VM exists (outside the selector, or the disk left its spec)', disk('u1'), present('u1'), [], 'keep', 'Detached'],
    ['the VM exists and a launcher runs: the disk left a running VM', disk('u1'), present('u1'), ['launcher-web-1'], 'keep', 'Detached'],
    ['the VM fails the schema', disk('u1'), present('u1', 'spec.runStrategy: bad'), [], 'keep', 'OwnerUnparsable'],
    ['the VM fails the schema even under another UID', disk('u1'), present('u2', 'spec.runStrategy: bad'), [], 'keep', 'OwnerUnparsable'],
    ['an entry without a UID while a VM has the name', disk(), present('u9'), [], 'keep', 'Detached'],
    ['the lookup failed', disk('u1'), { kind: 'failed', message: 'timeout' }, [], 'keep', 'OwnerLookupFailed'],
    ['the VM is gone but its launcher has not finished', disk('u1'), { kind: 'absent' }, ['launcher-web-1'], 'keep', 'LauncherRunning'],
    ['the VM is gone', disk('u1'), { kind: 'absent' }, [], 'delete'],
    ['an entry without a UID and the VM gone', disk(), { kind: 'absent' }, [], 'delete'],
    ['a VM of another UID has the name, the old launcher is still stopping', disk('u1'), present('u2'), ['launcher-web-1'], 'keep', 'LauncherRunning'],
    ['a VM of another UID has the name', disk('u1'), present('u2'), [], 'delete'],
  ];
  for (const [name, d, owner, launchers, action, reason] of cases) {
    const r = retention({ disk: d, owner, activeLaunchers: launchers });
    assert.equal(r.action, action, name);
    if (r.action === 'keep') assert.equal(r.reason, reason, name);
  }
});

void test('one VM that fails the schema holds every deletion on the domain', () => {
  const decisions = new Map<string, Retention>([
    ['a', { action: 'delete' }],
    ['b', { action: 'keep', reason: 'OwnerUnparsable', message: 'VirtualMachine prod/b does not match' }],
    ['c', { action: 'keep', reason: 'Detached', message: 'x' }],
  ]);
  const held = holdAll(decisions);
  assert.deepEqual(held.get('a'), { action: 'keep', reason: 'DomainHeld', message: 'no disk is deleted while VirtualMachine prod/b does not match' });
  assert.equal(held.get('c')?.action, 'keep');
  const clean = holdAll(new Map<string, Retention>([['a', { action: 'delete' }]]));
  assert.deepEqual(clean.get('a'), { action: 'delete' });
});
