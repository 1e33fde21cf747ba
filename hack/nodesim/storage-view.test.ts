import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkStorageView, StorageViewError, throughStorageView } from './storage-view.ts';

const view = { root: '/srv/shared', mountPoint: '/run/kv/views/node-a' };

void describe('throughStorageView', () => {
  const cases: readonly { name: string; input: string; want: string }[] = [
    { name: 'the root itself', input: '/srv/shared', want: '/run/kv/views/node-a' },
    { name: 'a directory below the root', input: '/srv/shared/images/ns/vm', want: '/run/kv/views/node-a/images/ns/vm' },
    { name: 'an unnormalised path below the root', input: '/srv/shared//leases/./ns', want: '/run/kv/views/node-a/leases/ns' },
    { name: 'a sibling sharing the prefix', input: '/srv/shared-other/x', want: '/srv/shared-other/x' },
    { name: 'a path outside', input: '/var/lib/keyvirt/x', want: '/var/lib/keyvirt/x' },
    { name: 'a path escaping with ..', input: '/srv/shared/../etc', want: '/srv/shared/../etc' },
  ];
  for (const c of cases) {
    void it(c.name, () => assert.equal(throughStorageView(view, c.input), c.want));
  }
  void it('leaves every path alone without a view', () => assert.equal(throughStorageView(undefined, '/srv/shared/a'), '/srv/shared/a'));
});

void describe('checkStorageView', () => {
  void it('accepts distinct absolute directories', () => assert.deepEqual(checkStorageView(view), view));
  const bad: readonly { name: string; view: { root: string; mountPoint: string }; field: RegExp }[] = [
    { name: 'relative root', view: { root: 'srv', mountPoint: '/m' }, field: /root srv/ },
    { name: 'root /', view: { root: '/', mountPoint: '/m' }, field: /root \//u },
    { name: 'trailing slash', view: { root: '/srv/', mountPoint: '/m' }, field: /root \/srv\// },
    { name: 'mount point inside the root', view: { root: '/srv', mountPoint: '/srv/view' }, field: /must not contain each other/ },
    { name: 'root inside the mount point', view: { root: '/m/srv', mountPoint: '/m' }, field: /must not contain each other/ },
  ];
  for (const c of bad) {
    void it(`refuses ${c.name}`, () => assert.throws(() => checkStorageView(c.view), (err: unknown) => err instanceof StorageViewError && c.field.test(err.message)));
  }
});
