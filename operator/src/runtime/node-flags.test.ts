import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { OPERATOR_NODE_FLAGS } from './node-flags.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..', '..');

describe('OPERATOR_NODE_FLAGS', () => {
  it("are the chart's default operator.nodeOptions", async () => {
    const values = await readFile(path.join(repoRoot, 'charts/keyvirt/values.yaml'), 'utf8');
    const m = /^ {2}nodeOptions: "([^"]*)"$/m.exec(values);
    assert.ok(m !== null, 'values.yaml has no operator.nodeOptions');
    assert.deepEqual(m[1]?.split(' '), OPERATOR_NODE_FLAGS);
  });

  it('are flags NODE_OPTIONS accepts', async () => {
    const { execFileSync } = await import('node:child_process');
    const out = execFileSync(process.execPath, ['-e', 'process.stdout.write("ok")'], { env: { ...process.env, NODE_OPTIONS: OPERATOR_NODE_FLAGS.join(' ') } });
    assert.equal(out.toString(), 'ok');
  });
});
