import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseMountInfo } from './storage-views.ts';

void describe('parseMountInfo', () => {
  void it('reads mount point, FUSE connection number and type, unescaping octal', () => {
    const text = [
      '22 1 0:21 / /sys rw,nosuid shared:7 - sysfs sysfs rw',
      '812 29 0:63 / /run/keyvirt-storage-views/abc/node\\040a rw,nosuid,nodev,relatime - fuse keyvirt-view-node-a rw,user_id=0,group_id=0,allow_other',
      '',
      'garbage',
    ].join('\n');
    assert.deepEqual(parseMountInfo(text), [
      { mountPoint: '/sys', minor: 21, fsType: 'sysfs' },
      { mountPoint: '/run/keyvirt-storage-views/abc/node a', minor: 63, fsType: 'fuse' },
    ]);
  });
});
