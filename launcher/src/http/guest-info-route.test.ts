// GET /v1/guest's reading of the agent: each part on its own, failures named, every
// string and list bounded whatever the guest answers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GUEST_INFO_LIMITS, GuestInfoReportSchema } from '../api/guest-info.ts';
import { readGuestInfo, type GuestInfoAgent } from './guest-info-route.ts';

const refuse = (): Promise<never> => Promise.reject(new Error('The command guest-get-users has been disabled'));

void test('renames the agent fields and keeps every part that answered', async () => {
  const agent: GuestInfoAgent = {
    osInfo: () => Promise.resolve({ id: 'debian', 'pretty-name': 'Debian GNU/Linux 12', 'kernel-release': '6.1.0', machine: 'x86_64' }),
    hostName: () => Promise.resolve('sub-1'),
    users: refuse,
    filesystems: () => Promise.resolve([{ name: 'vda', mountpoint: '/', type: 'ext4', 'used-bytes': 10, 'total-bytes': 100 }]),
  };
  const report = await readGuestInfo(agent);
  assert.deepEqual(report, {
    os: { id: 'debian', name: undefined, prettyName: 'Debian GNU/Linux 12', version: undefined, versionId: undefined, kernelRelease: '6.1.0', kernelVersion: undefined, machine: 'x86_64' },
    hostname: 'sub-1',
    users: [],
    filesystems: [{ name: 'vda', mountpoint: '/', type: 'ext4', usedBytes: 10, totalBytes: 100 }],
    unavailable: ['users'],
  });
});

void test('a hostile guest gets its lists cut and its strings clipped; the answer still parses', async () => {
  const huge = 'x'.repeat(100_000);
  const agent: GuestInfoAgent = {
    osInfo: () => Promise.resolve({ id: huge, name: huge }),
    hostName: () => Promise.resolve(huge),
    users: () => Promise.resolve(Array.from({ length: 10_000 }, (_, i) => ({ user: `${huge}${i}`, 'login-time': Number.NaN }))),
    filesystems: () => Promise.resolve(Array.from({ length: 10_000 }, () => ({ name: huge, mountpoint: huge, type: huge, 'used-bytes': -5, 'total-bytes': Number.POSITIVE_INFINITY }))),
  };
  const report = await readGuestInfo(agent);
  assert.equal(report.users.length, GUEST_INFO_LIMITS.users);
  assert.equal(report.filesystems.length, GUEST_INFO_LIMITS.filesystems);
  assert.equal(report.hostname?.length, GUEST_INFO_LIMITS.string);
  assert.equal(report.users[0]?.loginTime, 0);
  assert.equal(report.filesystems[0]?.usedBytes, undefined);
  assert.equal(report.filesystems[0]?.totalBytes, undefined);
  assert.ok(GuestInfoReportSchema.safeParse(report).success);
  assert.ok(JSON.stringify(report).length < 200_000, `report of ${JSON.stringify(report).length} characters`);
});

void test('an agent that answers nothing leaves every part unavailable', async () => {
  const agent: GuestInfoAgent = { osInfo: refuse, hostName: refuse, users: refuse, filesystems: refuse };
  assert.deepEqual((await readGuestInfo(agent)).unavailable, ['os', 'hostname', 'users', 'filesystems']);
});
