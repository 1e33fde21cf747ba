import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { z } from 'zod';
import { buildImageArchive } from './real-node-images.ts';
import type { ImageRecipe } from './real-node-images.ts';

const indexSchema = z.object({
  manifests: z.array(z.object({ digest: z.string(), annotations: z.record(z.string(), z.string()) })).length(1),
});
const manifestSchema = z.object({
  config: z.object({ digest: z.string() }),
  layers: z.array(z.object({ digest: z.string(), size: z.number() })).length(1),
});
const configSchema = z.object({
  config: z.object({ Entrypoint: z.array(z.string()), User: z.string() }),
  rootfs: z.object({ diff_ids: z.array(z.string()) }),
});

function recipe(text: string, user = ''): ImageRecipe {
  return {
    repository: `keyvirt/unit-${process.pid}`,
    fill: (rootfs) => fs.writeFileSync(path.join(rootfs, 'hello.txt'), text),
    entrypoint: ['/hello'],
    user,
  };
}

function unpack(file: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keyvirt-image-test-'));
  execFileSync('tar', ['-xf', file, '-C', dir]);
  return dir;
}

describe('OCI image archives', () => {
  const made: string[] = [];
  const build = (r: ImageRecipe): ReturnType<typeof buildImageArchive> => {
    const image = buildImageArchive(r);
    made.push(image.file);
    return image;
  };
  after(() => {
    for (const file of made) fs.rmSync(file, { force: true });
  });

  it('are reproducible: the same recipe gives the same reference and bytes, whatever the build time', async () => {
    const first = build(recipe('hello'));
    fs.rmSync(first.file);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const second = build(recipe('hello'));
    assert.equal(second.ref, first.ref);
    assert.equal(second.sha256, first.sha256);
    assert.match(first.ref, /^localhost\/keyvirt\/unit-\d+:[0-9a-f]{16}$/);
  });

  for (const [what, other] of [['content', recipe('other')], ['config', recipe('hello', '65534')]] as const) {
    it(`take a new tag when the ${what} changes`, () => {
      assert.notEqual(build(other).ref, build(recipe('hello')).ref);
    });
  }

  it('hold one OCI image whose digests match its blobs, named for containerd', () => {
    const image = build(recipe('hello', '65534'));
    const dir = unpack(image.file);
    try {
      const blob = (digest: string): Buffer => fs.readFileSync(path.join(dir, 'blobs', 'sha256', digest.replace('sha256:', '')));
      const index = indexSchema.parse(JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8')));
      const entry = index.manifests[0];
      assert.ok(entry !== undefined);
      assert.equal(entry.annotations['io.containerd.image.name'], image.ref);
      const manifest = manifestSchema.parse(JSON.parse(blob(entry.digest).toString()));
      const config = configSchema.parse(JSON.parse(blob(manifest.config.digest).toString()));
      assert.deepEqual(config.config.Entrypoint, ['/hello']);
      assert.equal(config.config.User, '65534');
      const layer = manifest.layers[0];
      assert.ok(layer !== undefined);
      assert.equal(config.rootfs.diff_ids[0], layer.digest, 'uncompressed layer: diff id = digest');
      assert.equal(blob(layer.digest).length, layer.size);
      const listing = execFileSync('tar', ['-tvf', path.join(dir, 'blobs', 'sha256', layer.digest.replace('sha256:', ''))], { encoding: 'utf8' });
      assert.match(listing, /^-rw-r--r-- 0\/0 +5 1970-01-01 00:00 \.\/hello\.txt$/m, 'owner 0, time 0');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
