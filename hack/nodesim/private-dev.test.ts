import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ContainerProcess } from './container-process.ts';
import { devSubmounts, needsPrivateDev, nodeDevSubmounts } from './private-dev.ts';
import { prepareTerminationLog } from './termination-message.ts';

const mountinfo = [
  '24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw',
  '25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw',
  '26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw',
  '29 26 0:26 / /dev/pts rw,relatime - devpts devpts rw',
  '31 24 0:28 / /dev/hugepages/x rw,relatime - tmpfs tmpfs rw',
  '32 31 0:29 / /dev/hugepages/x/y rw,relatime - tmpfs tmpfs rw',
  '33 27 0:30 / /devices rw - tmpfs tmpfs rw',
  '34 24 0:31 / /dev/with\\040space rw - tmpfs tmpfs rw',
].join('\n');

describe('private /dev', () => {
  it('lists the outermost mounts below /dev once each', () => {
    assert.deepEqual(devSubmounts(mountinfo), ['/dev/hugepages/x', '/dev/pts', '/dev/shm', '/dev/with space']);
  });

  it('is needed only for a mount point that does not exist under /dev', () => {
    const exists = (p: string): boolean => p === '/dev/kvm';
    assert.equal(needsPrivateDev(['/dev/termination-log'], exists), true);
    assert.equal(needsPrivateDev(['/dev/kvm', '/tmp/x'], exists), false);
    assert.equal(needsPrivateDev(['/devices/x'], exists), false);
  });

  void it('gives a container its own /dev: the message file is mounted there, devices work, the node\'s /dev is untouched', { timeout: 60_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvt-privdev-'));
    after(() => { fs.rmSync(dir, { recursive: true, force: true }); });
    const target = `/dev/keyvirt-test-${path.basename(dir)}`;
    const log = prepareTerminationLog(path.join(dir, 'c'), { terminationMessagePath: target });
    assert.ok(log !== undefined);
    const stageDir = path.join(dir, 'c', 'dev');
    fs.mkdirSync(stageDir);
    const script = [
      `echo "written in the container" > ${target}`,
      'head -c 8 /dev/urandom > /dev/null || exit 11',
      'echo scratch > /dev/keyvirt-scratch || exit 12',
      '[ -d /dev/pts ] && [ -e /dev/null ] || exit 13',
      `grep -q ' /dev/shm ' /proc/self/mountinfo || exit 14`,
      `! grep -q ' ${stageDir}[ /]' /proc/self/mountinfo || exit 15`,
    ].join('\n');
    const proc = new ContainerProcess({
      argv: ['/bin/sh', '-c', script], env: { PATH: '/usr/bin:/bin' }, workingDir: '/', hostname: 'privdev', netns: undefined,
      mounts: [{ source: log.hostPath, target, readOnly: false }],
      privateDev: { stageDir, submounts: nodeDevSubmounts() },
      cgroupProcFiles: [], scriptPath: path.join(dir, 'init.sh'), logPath: path.join(dir, 'out.log'),
    });
    const exit = await proc.exited;
    assert.equal(exit.exitCode, 0, fs.readFileSync(path.join(dir, 'out.log'), 'utf8'));
    assert.equal(fs.readFileSync(log.hostPath, 'utf8'), 'written in the container\n');
    assert.equal(fs.existsSync(target), false, 'nothing was created in the node\'s /dev');
    assert.equal(fs.existsSync('/dev/keyvirt-scratch'), false);
    assert.ok(!fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(stageDir), 'the mounts stayed inside the container');
  });
});
