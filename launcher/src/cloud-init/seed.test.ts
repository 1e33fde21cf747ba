import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { buildNoCloudSeed, metaDataDocument, SeedBuildError } from './seed.ts';

const run = promisify(execFile);

async function isoFile(image: string, name: string): Promise<string> {
  return (await run('isoinfo', ['-R', '-i', image, '-x', `/${name}`])).stdout;
}

async function volumeLabel(image: string): Promise<string> {
  const fh = await open(image, 'r');
  try {
    const buf = Buffer.alloc(32);
    await fh.read(buf, 0, 32, 0x8028); // primary volume descriptor, volume identifier
    return buf.toString('ascii').trim();
  } finally {
    await fh.close();
  }
}

void test('builds a cidata ISO with meta-data, user-data and network-config', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-seed-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const image = await buildNoCloudSeed(
    { instanceId: 'uid-1', hostname: 'web-1', userData: '#cloud-config\nhostname: web-1\n', networkData: 'version: 2\n' },
    dir,
  );
  assert.equal(await volumeLabel(image), 'cidata');
  assert.equal(await isoFile(image, 'meta-data'), 'instance-id: "uid-1"\nlocal-hostname: "web-1"\n');
  assert.equal(await isoFile(image, 'user-data'), '#cloud-config\nhostname: web-1\n');
  assert.equal(await isoFile(image, 'network-config'), 'version: 2\n');
});

void test('without network data the seed has no network-config', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-seed-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const image = await buildNoCloudSeed({ instanceId: 'i', hostname: 'h' }, dir);
  const listing = (await run('isoinfo', ['-R', '-f', '-i', image])).stdout;
  assert.deepEqual(listing.trim().split('\n').sort(), ['/meta-data', '/user-data']);
});

void test('meta-data quotes hostile values', () => {
  assert.equal(metaDataDocument({ instanceId: 'a: b', hostname: 'x\ny' }), 'instance-id: "a: b"\nlocal-hostname: "x\\ny"\n');
});

void test('a missing genisoimage is a SeedBuildError', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-seed-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await assert.rejects(buildNoCloudSeed({ instanceId: 'i', hostname: 'h' }, dir, '/nonexistent/genisoimage'), SeedBuildError);
});
