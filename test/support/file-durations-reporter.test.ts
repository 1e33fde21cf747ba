import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { durationLines } from './file-durations-reporter.ts';

/** `seconds<TAB>path` lines → path → seconds. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [seconds, path] = line.split('\t');
    if (path !== undefined) out.set(path, Number(seconds));
  }
  return out;
}

void test('lines are longest first, ties in name order, seconds to a tenth', () => {
  const text = durationLines(new Map([['test/a.test.ts', 1234], ['crds/src/b.test.ts', 56_789], ['test/c.test.ts', 1234]])).join('');
  assert.equal(text, '56.8\tcrds/src/b.test.ts\n1.2\ttest/a.test.ts\n1.2\ttest/c.test.ts\n');
});

void test("node's runner through the reporter: one line per file, its wall time with its hooks", async () => {
  const dir = await mkdtemp(join(tmpdir(), 'keyvirt-file-durations-'));
  try {
    const body = (ms: number): string =>
      `import { before, test } from 'node:test';\nbefore(() => new Promise((r) => setTimeout(r, ${ms})));\ntest('t', () => {});\n`;
    await writeFile(join(dir, 'slow.test.mjs'), body(600));
    await writeFile(join(dir, 'quick.test.mjs'), body(0));
    const reporter = new URL('file-durations-reporter.ts', import.meta.url).pathname;
    const { stdout } = await promisify(execFile)(process.execPath, ['--test', `--test-reporter=${reporter}`, 'quick.test.mjs', 'slow.test.mjs'], {
      cwd: dir,
      // Without the test context this file runs in, the child is a runner of its own.
      env: Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_TEST_CONTEXT')),
    });
    const record = parse(stdout);
    assert.deepEqual([...record.keys()], ['slow.test.mjs', 'quick.test.mjs'], stdout);
    assert.ok((record.get('slow.test.mjs') ?? 0) >= 0.6, stdout);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
