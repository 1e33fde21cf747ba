import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { BUNDLE_NODE_FLAGS, buildOperator, bundleOperator, OperatorBuildError } from './build-operator.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
const scratch = fs.mkdtempSync(path.join(tmpdir(), 'kv-operator-build-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Runs a bundle as the images do, with an argument its entry refuses: it must load every module first. */
function runRefused(entry: string, env: Record<string, string>): { status: number | null; stderr: string; stdout: string } {
  const run = spawnSync(process.execPath, [...BUNDLE_NODE_FLAGS, entry, '--no-such-flag'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, timeout: 60_000 });
  return { status: run.status, stderr: run.stderr, stdout: run.stdout };
}

void describe('operator build', () => {
  void it("bundles the repository's operator and node agent, which load every module without the TypeScript stripper", () => {
    const cache = path.join(repoRoot, 'hack', '.cache', 'operator-build');
    const build = buildOperator(repoRoot, cache);
    assert.equal(path.dirname(build.dir), cache);
    assert.ok(fs.existsSync(path.join(build.dir, 'api.proto')), 'the device plugin API beside the node agent');
    // Unchanged sources: the same build.
    assert.deepEqual(buildOperator(repoRoot, cache), build);
    const operator = runRefused(build.operator, {});
    // The operator's own settings error (exit 2, one line per problem): main ran, so every import resolved
    // (a .ts import fails with ERR_UNKNOWN_FILE_EXTENSION and exit 1).
    assert.equal(operator.status, 2, operator.stderr);
    assert.match(operator.stderr, /^keyvirt-operator: invalid settings:\n {2}Unknown option '--no-such-flag'$/m);
    assert.doesNotMatch(operator.stdout + operator.stderr, /ERR_UNKNOWN_FILE_EXTENSION|ERR_MODULE_NOT_FOUND/);
    const agent = runRefused(build.nodeAgent, {});
    assert.equal(agent.status, 1, agent.stderr);
    assert.match(agent.stdout, /NODE_NAME.*"msg":"node agent failed"/);
    for (const bundle of [build.operator, build.nodeAgent]) {
      const text = fs.readFileSync(bundle, 'utf8');
      assert.match(text, /^import .* from "pino";$/m, 'third-party packages stay in node_modules');
      assert.doesNotMatch(text, /from "@keyvirt\//, 'the workspaces are inside');
    }
  });

  void it('refuses a package imported but not declared (it would be bundled)', () => {
    const tree = path.join(scratch, 'undeclared');
    const write = (file: string, text: string): void => {
      fs.mkdirSync(path.dirname(path.join(tree, file)), { recursive: true });
      fs.writeFileSync(path.join(tree, file), text);
    };
    write('operator/package.json', JSON.stringify({ name: '@keyvirt/operator', type: 'module', dependencies: { pino: '1' } }));
    write('operator/src/main.ts', "import { z } from 'zod';\nconsole.log(z.string().parse('x'));\n");
    write('operator/src/node-agent/main.ts', "import { pino } from 'pino';\npino().info('x');\n");
    write('operator/src/node-agent/device-plugin/api.proto', 'syntax = "proto3";\n');
    for (const ws of ['launcher', 'crds']) write(`node_modules/@keyvirt/${ws}/package.json`, JSON.stringify({ name: `@keyvirt/${ws}` }));
    for (const pkg of ['zod', 'pino']) fs.symlinkSync(path.join(repoRoot, 'node_modules', pkg), path.join(tree, 'node_modules', pkg));
    assert.throws(() => bundleOperator(tree, path.join(tree, 'dist')), (err: unknown) => err instanceof OperatorBuildError && /node_modules\/zod/.test(err.message) && /not a source/.test(err.message));
  });
});
