/* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- client-node models are plain JSON data; literals are how the API is used */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { checkStorageView, StorageViewError, throughStorageView } from './storage-view.ts';
import { materialiseVolumes } from './volumes.ts';

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

void describe('materialiseVolumes through a storage view', () => {
  void it('resolves hostPath volumes and hostPath PersistentVolumes under the root through the view, others as they are', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kv-view-'));
    try {
      const root = path.join(dir, 'shared');
      const mountPoint = path.join(dir, 'view');
      const other = path.join(dir, 'other');
      for (const d of [path.join(root, 'pv'), path.join(mountPoint, 'pv'), path.join(mountPoint, 'images'), other]) await mkdir(d, { recursive: true });
      const api = {
        readSecret: () => Promise.resolve(undefined),
        readConfigMap: () => Promise.resolve(undefined),
        readPersistentVolumeClaim: () => Promise.resolve({ spec: { volumeName: 'pv1' }, status: { phase: 'Bound' } }),
        readPersistentVolume: () => Promise.resolve({ spec: { hostPath: { path: path.join(root, 'pv') } } }),
        requestServiceAccountToken: () => Promise.resolve(''),
      };
      const pod = {
        metadata: { namespace: 'ns' },
        spec: {
          containers: [],
          volumes: [
            { name: 'images', hostPath: { path: path.join(root, 'images'), type: 'Directory' } },
            { name: 'claim', persistentVolumeClaim: { claimName: 'c' } },
            { name: 'other', hostPath: { path: other, type: 'Directory' } },
          ],
        },
      };
      const volumes = await materialiseVolumes(api, pod, path.join(dir, 'volumes'), { root, mountPoint });
      assert.equal(volumes.get('images')?.hostPath, path.join(mountPoint, 'images'));
      assert.equal(volumes.get('claim')?.hostPath, path.join(mountPoint, 'pv'));
      assert.equal(volumes.get('other')?.hostPath, other);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
