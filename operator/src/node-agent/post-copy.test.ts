import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { POSTCOPY_LABEL, POSTCOPY_REASON_ANNOTATION } from './node-label-keys.ts';
import { ensurePostCopy, postCopyNodeMetadata, postCopyVerdict, UNPRIVILEGED_USERFAULTFD } from './post-copy.ts';

void test('post-copy verdict for each sysctl value', () => {
  const cases: { name: string; value: string | Error; enable: boolean; writeError?: Error; capable: boolean; reason: RegExp }[] = [
    { name: 'already 1', value: '1', enable: false, capable: true, reason: /=1/ },
    { name: '0, not allowed to set', value: '0', enable: false, capable: false, reason: /not allowed to set it \(chart value nodeAgent\.postCopy/ },
    { name: '0 after a refused write', value: '0', enable: true, writeError: new Error('EROFS: read-only file system'), capable: false, reason: /setting it failed \(EROFS/ },
    { name: 'unreadable', value: new Error('ENOENT: no such file'), enable: true, capable: false, reason: /cannot be read \(ENOENT/ },
    { name: 'unknown value', value: '2', enable: true, capable: false, reason: /unexpected value "2"/ },
  ];
  for (const c of cases) {
    const got = postCopyVerdict(c.value, c.enable, c.writeError);
    assert.equal(got.capable, c.capable, c.name);
    assert.match(got.reason, c.reason, c.name);
  }
});

void test('the label and annotation publish the verdict', () => {
  const meta = postCopyNodeMetadata({ capable: true, reason: 'r' });
  assert.deepEqual(meta, { labels: { [POSTCOPY_LABEL]: 'true' }, annotations: { [POSTCOPY_REASON_ANNOTATION]: 'r' } });
});

void test('sets the sysctl only when allowed, and reads back what the kernel kept', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'keyvirt-postcopy-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, UNPRIVILEGED_USERFAULTFD);
  await writeFile(file, '0\n');

  assert.equal((await ensurePostCopy({ sysctlVmDir: dir, enable: false })).capable, false);
  assert.equal((await readFile(file, 'utf8')).trim(), '0', 'left alone when not allowed');

  assert.equal((await ensurePostCopy({ sysctlVmDir: dir, enable: true })).capable, true);
  assert.equal((await readFile(file, 'utf8')).trim(), '1');

});
