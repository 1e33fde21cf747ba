// The helpers tests use around the test guest: record parsing, disk images and seed
// ISOs made with the real tools (qemu-img, genisoimage, isoinfo).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import {
  createBlankDisk,
  counterContinuity,
  createSeedIso,
  dirtyMemoryCommand,
  parseCounterLine,
  parseCounterLines,
  parseDirtyStat,
  parseSeedReport,
  parseSeedTestValues,
  readDiskRecords,
} from '../support/guest.ts';

const run = promisify(execFile);

async function withTempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-guest-support-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function writeRecord(file: string, sector: number, text: string): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    const buf = Buffer.alloc(512);
    buf.write(text, 'latin1');
    await handle.write(buf, 0, 512, sector * 512);
  } finally {
    await handle.close();
  }
}

void test('serial lines: records are found amid console noise, other lines ignored', () => {
  assert.deepEqual(parseCounterLine('KV boot=0123456789abcdef n=42 t=1234\r'), { bootId: '0123456789abcdef', n: 42, uptimeMs: 1234 });
  assert.equal(parseCounterLine('keyvirt-guest: counter boot=0123456789abcdef disk=none'), undefined);
  assert.equal(parseCounterLine('KV boot=XYZ n=1 t=1'), undefined);
  const text = 'Booting from ROM..KV boot=aaaaaaaaaaaaaaaa n=1 t=10\r\n[ 1.0] noise\r\nKV boot=aaaaaaaaaaaaaaaa n=2 t=210\r\n';
  assert.deepEqual(
    parseCounterLines(text).map((r) => r.n),
    [1, 2],
  );
});

void test('counter continuity: boots, breaks and the longest stall', () => {
  const a = 'aaaaaaaaaaaaaaaa';
  const b = 'bbbbbbbbbbbbbbbb';
  const steady = parseCounterLines(`KV boot=${a} n=4 t=800\nKV boot=${a} n=5 t=1000\nKV boot=${a} n=6 t=1450\n`);
  assert.deepEqual(counterContinuity(steady), { bootIds: [a], breaks: [], maxGapMs: 450, first: steady[0], last: steady[2] });
  const broken = parseCounterLines(`KV boot=${a} n=1 t=200\nKV boot=${a} n=3 t=600\nKV boot=${b} n=1 t=100\n`);
  const c = counterContinuity(broken);
  assert.deepEqual(c.bootIds, [a, b]);
  assert.deepEqual(
    c.breaks.map((x) => [x.after.n, x.next.n]),
    [[1, 3]],
  );
  assert.equal(c.maxGapMs, 400);
  assert.deepEqual(counterContinuity([]), { bootIds: [], breaks: [], maxGapMs: 0, first: undefined, last: undefined });
});

void test('seed report and test values are parsed from the console', () => {
  const text = 'keyvirt-guest: seed instance-id=iid-1 hostname=web-1 device=/dev/sr0\r\nkeyvirt-guest: keyvirt-test-value: hello 42\r\n';
  assert.deepEqual(parseSeedReport(text), { instanceId: 'iid-1', hostname: 'web-1' });
  assert.deepEqual(parseSeedTestValues(text), ['hello 42']);
  assert.equal(parseSeedReport('nothing'), undefined);
});

void test('disk records are read back from raw and qcow2 images, grouped by boot', async (t) => {
  const dir = await withTempDir(t);
  const raw = await createBlankDisk(dir, { format: 'raw', sizeMiB: 8 });
  await writeRecord(raw, 3, 'KV boot=bbbbbbbbbbbbbbbb n=3 t=600\n');
  await writeRecord(raw, 1, 'KV boot=bbbbbbbbbbbbbbbb n=1 t=200\n');
  await writeRecord(raw, 2, 'KV boot=bbbbbbbbbbbbbbbb n=2 t=400\n');
  await writeRecord(raw, 9, 'KV boot=aaaaaaaaaaaaaaaa n=9 t=1800\n');
  await writeRecord(raw, 20, 'not a record\n');
  const fromRaw = await readDiskRecords(raw, 'raw');
  assert.deepEqual(
    fromRaw.map((r) => `${r.bootId.slice(0, 1)}${r.n}`),
    ['a9', 'b1', 'b2', 'b3'],
  );
  const qcow2 = path.join(dir, 'copy.qcow2');
  await run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  assert.deepEqual(await readDiskRecords(qcow2, 'qcow2'), fromRaw);
  const { stdout } = await run('qemu-img', ['info', '--output=json', qcow2]);
  assert.equal((JSON.parse(stdout) as { format: string }).format, 'qcow2');
});

void test('a seed ISO carries the cidata label and the NoCloud files', async (t) => {
  const dir = await withTempDir(t);
  const iso = await createSeedIso(dir, { instanceId: 'iid-7', hostname: 'db-1', testValue: 'v7', networkConfig: 'version: 2\n' });
  const { stdout: pvd } = await run('isoinfo', ['-d', '-i', iso]);
  assert.match(pvd, /Volume id: cidata/);
  const { stdout: meta } = await run('isoinfo', ['-R', '-i', iso, '-x', '/meta-data']);
  assert.equal(meta, 'instance-id: iid-7\nlocal-hostname: db-1\n');
  const { stdout: user } = await run('isoinfo', ['-R', '-i', iso, '-x', '/user-data']);
  assert.equal(user, '#cloud-config\nhostname: db-1\nkeyvirt-test-value: v7\n');
  const { stdout: files } = await run('isoinfo', ['-R', '-f', '-i', iso]);
  assert.deepEqual(files.trim().split('\n').sort(), ['/meta-data', '/network-config', '/user-data']);
});

void test('the dirty workload status file', () => {
  assert.deepEqual(parseDirtyStat('123 64 64 192 3004\n'), { pid: 123, rateMiBs: 64, workingSetMiB: 64, dirtiedMiB: 192, elapsedMs: 3004 });
  assert.equal(parseDirtyStat('123 64 64 192\n'), undefined);
});

void test('the dirty workload command line', () => {
  assert.deepEqual(dirtyMemoryCommand(64), { path: '/bin/dirty', arg: ['64'] });
  assert.deepEqual(dirtyMemoryCommand(200.4, 96), { path: '/bin/dirty', arg: ['200', '96'] });
});

void test('the guest reads network-config v1 and v2 (static address, gateway, DNS) and falls back to DHCP', async (t) => {
  const dir = await withTempDir(t);
  const parser = path.join(import.meta.dirname, '..', '..', 'hack', 'guest', 'rootfs', 'etc', 'keyvirt', 'network-config.awk');
  const plan = async (doc: string): Promise<string> => {
    const file = path.join(dir, 'network-config');
    await writeFile(file, doc);
    const { stdout } = await run('busybox', ['awk', '-f', parser, file]);
    return stdout.trim();
  };
  const v2Inline = 'version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: "52:54:00:12:34:56"\n    addresses: [10.0.2.20/24]\n    gateway4: 10.0.2.2\n    nameservers:\n      addresses: [10.0.2.3, 1.1.1.1]\n';
  assert.equal(await plan(v2Inline), 'static 10.0.2.20/24 10.0.2.2 10.0.2.3 1.1.1.1');
  const v2Lists =
    'network:\n  version: 2\n  ethernets:\n    enp1s0:\n      addresses:\n        - 10.0.2.21/24\n      routes:\n        - to: default\n          via: 10.0.2.2\n      nameservers:\n        addresses:\n          - 10.0.2.3\n';
  assert.equal(await plan(v2Lists), 'static 10.0.2.21/24 10.0.2.2 10.0.2.3');
  const v1 =
    'version: 1\nconfig:\n  - type: physical\n    name: eth0\n    subnets:\n      - type: static\n        address: 10.0.2.22\n        netmask: 255.255.255.128\n        gateway: 10.0.2.1\n        dns_nameservers:\n          - 10.0.2.3\n';
  assert.equal(await plan(v1), 'static 10.0.2.22/25 10.0.2.1 10.0.2.3');
  assert.equal(await plan('version: 2\nethernets:\n  eth0:\n    dhcp4: true\n'), 'dhcp');
  assert.equal(await plan('version: 1\nconfig:\n  - type: physical\n    name: eth0\n    subnets:\n      - type: dhcp\n'), 'dhcp');
});
