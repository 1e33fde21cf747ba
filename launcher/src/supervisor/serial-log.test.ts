import assert from 'node:assert/strict';
import { open, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { SerialLogRotator } from './serial-log.ts';

void test('a log written through an O_APPEND descriptor (as QEMU writes it) stays bounded and keeps its newest output', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-serial-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'serial.log');
  const writer = await open(file, 'a');
  t.after(() => writer.close());
  const rotator = new SerialLogRotator({ path: file, log: pino({ level: 'silent' }), maxBytes: 64 * 1024 });
  let largest = 0;
  for (let i = 0; i < 200; i++) {
    await writer.write(`line ${i} ${'x'.repeat(4000)}\n`);
    if (i % 10 === 9) await rotator.check();
    largest = Math.max(largest, (await stat(file)).size);
  }
  await rotator.check();
  await writer.write('the last line\n');
  assert.ok(rotator.rotations >= 10, `${rotator.rotations} rotations`);
  assert.ok(largest <= 64 * 1024 + 10 * 4010, `the log reached ${largest} bytes`);
  const current = await readFile(file, 'utf8');
  assert.ok(!current.includes('\0') && current.length < 64 * 1024, 'appends after the truncation land at offset 0 (no hole of zeros)');
  assert.match(current, /the last line\n$/);
  const previous = await readFile(`${file}.1`, 'utf8');
  assert.ok(previous.length > 64 * 1024 && previous.startsWith('line '));
  assert.deepEqual((await readdir(dir)).sort(), ['serial.log', 'serial.log.1'], 'the copy aside is renamed into place');
});

void test('a missing log is no error', async () => {
  const rotator = new SerialLogRotator({ path: '/nonexistent/serial.log', log: pino({ level: 'silent' }), maxBytes: 1 });
  await rotator.check();
  assert.equal(rotator.rotations, 0);
});

void test('a link planted as the log is neither read through nor truncated', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-serial-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const outside = path.join(dir, 'a-file-of-the-node');
  await writeFile(outside, 'x'.repeat(4096));
  const file = path.join(dir, 'serial.log');
  await symlink(outside, file);
  const rotator = new SerialLogRotator({ path: file, log: pino({ level: 'silent' }), maxBytes: 16 });
  await rotator.check();
  assert.equal(rotator.rotations, 0);
  assert.equal((await stat(outside)).size, 4096);
  assert.deepEqual((await readdir(dir)).sort(), ['a-file-of-the-node', 'serial.log']);
});
