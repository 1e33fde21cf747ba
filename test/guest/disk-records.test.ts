// The test guest's counter records survive a hard kill of QEMU, and the guest never
// writes over a disk that holds anything but its own records: on a pc machine booted
// from its read-only disk, with a foreign-data virtio-blk disk and a blank virtio-scsi
// disk, it skips the boot and foreign disks and stores its records on the blank one; a NoCloud seed on a read-only virtio disk is read
// and left alone.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  createBlankDisk,
  createSeedIso,
  parseCounterLines,
  parseSeedReport,
  parseSeedTestValues,
  readDiskRecords,
  testGuest,
} from '../support/guest.ts';
import { bootGuest, type BootedGuest } from './qemu-boot.ts';

async function sha256(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}

void describe('test guest disk records (pc machine, virtio-blk + virtio-scsi)', { timeout: 15 * 60_000 }, () => {
  let dir = '';
  let foreign = '';
  let foreignHash = '';
  let blank = '';
  let vm: BootedGuest | undefined;

  before(async () => {
    await testGuest();
    dir = await mkdtemp(path.join(tmpdir(), 'kv-guest-disk-'));
    foreign = path.join(dir, 'foreign.raw');
    await writeFile(foreign, randomBytes(1024 * 1024));
    foreignHash = await sha256(foreign);
    blank = await createBlankDisk(dir, { format: 'raw', sizeMiB: 16, name: 'blank.raw' });
    const seed = await createSeedIso(dir, { instanceId: 'iid-kv-guest-disk', hostname: 'kv-guest-b', testValue: 'on-virtio-blk' });
    vm = await bootGuest({
      machine: 'pc',
      network: false,
      disks: [
        { path: foreign, format: 'raw', bus: 'virtio-blk' },
        { path: blank, format: 'raw', bus: 'virtio-scsi' },
      ],
      seedIso: seed,
      seedBus: 'virtio-blk',
    });
  });

  after(async () => {
    await vm?.dispose();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  void it('skips the disk holding other data and records on the blank SCSI disk', async () => {
    const started = await vm!.waitForSerial(/keyvirt-guest: counter boot=\S+ disk=(\S+)/, 240_000);
    assert.equal(started[1], '/dev/sda');
    const serial = await vm!.readSerial();
    assert.match(serial, /disk \/dev\/vda (not writable|holds other data)/, 'the read-only boot disk is left alone');
    assert.match(serial, /disk \/dev\/vdb holds other data/);
    assert.match(serial, /disk \/dev\/vdc (not writable|holds other data)/, 'the seed disk is left alone');
  });

  void it('reads a NoCloud seed attached as a read-only virtio disk', async () => {
    const serial = await vm!.readSerial();
    assert.deepEqual(parseSeedReport(serial), { instanceId: 'iid-kv-guest-disk', hostname: 'kv-guest-b' });
    assert.deepEqual(parseSeedTestValues(serial), ['on-virtio-blk']);
  });

  void it('keeps every printed record on the disk when QEMU is killed with SIGKILL', async () => {
    await vm!.waitForSerial(/KV boot=\S+ n=15 /, 120_000);
    vm!.process.kill('SIGKILL');
    const exit = await vm!.waitForExit(30_000);
    assert.equal(exit.signal, 'SIGKILL');
    const printed = parseCounterLines(await vm!.readSerial());
    const last = printed.at(-1)!;
    const stored = (await readDiskRecords(blank, 'raw')).filter((r) => r.bootId === last.bootId);
    assert.ok(stored.length > 0);
    assert.ok(stored.at(-1)!.n >= last.n, `disk has n=${stored.at(-1)!.n}, console showed n=${last.n}`);
    stored.forEach((r, i) => assert.equal(r.n, i + 1, 'no record missing'));
    assert.equal(await sha256(foreign), foreignHash, 'the foreign disk is untouched');
  });
});
