import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { buildLauncher, LauncherBuildError, LAUNCHER_NODE_FLAGS } from './build-launcher.ts';

const scratch = fs.mkdtempSync(path.join(tmpdir(), 'kv-launcher-build-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** A repository in miniature: the launcher's entry, a module, a JSON import, the crds package. */
function miniRepo(name: string): string {
  const root = path.join(scratch, name);
  const files: Record<string, string> = {
    'launcher/package.json': '{ "name": "@keyvirt/launcher", "version": "9.9.9", "type": "module" }\n',
    'crds/package.json': '{ "name": "@keyvirt/crds", "type": "module", "exports": { ".": "./src/index.ts" } }\n',
    'launcher/src/main.ts': "await import('./launcher-main.ts');\n",
    'launcher/src/launcher-main.ts': [
      "import type { Shape } from './shape.ts';",
      "import { area } from './shape.ts';",
      "import { unit } from '@keyvirt/crds';",
      "import pkg from '../package.json' with { type: 'json' };",
      'const s: Shape = { side: 3 };',
      'process.stdout.write(`${pkg.version} ${area(s)} ${unit}\\n`);',
      '',
    ].join('\n'),
    'launcher/src/shape.ts': 'export interface Shape { side: number }\nexport function area(s: Shape): number {\n  return s.side * s.side;\n}\n',
    'launcher/src/shape.test.ts': "import './does-not-exist.ts';\n",
    'launcher/src/unused.ts': 'export const unused: number = 1;\n',
    'crds/src/index.ts': "export { unit } from './units.ts';\n",
    'crds/src/units.ts': "export const unit: string = 'm²';\n",
    'launcher/pod/vm-pod.sh': '#!/bin/bash\necho pod\n',
  };
  for (const [rel, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), content);
  }
  return root;
}

describe('launcher build', () => {
  it('bundles the reachable modules into one CommonJS file that runs under the launcher flags', () => {
    const repo = miniRepo('runs');
    const build = buildLauncher(repo, path.join(repo, 'cache'));
    assert.equal(build.built, true);
    const out = execFileSync(process.execPath, [...LAUNCHER_NODE_FLAGS, build.entry], { encoding: 'utf8' });
    assert.equal(out, '9.9.9 9 m²\n');
    assert.deepEqual(fs.readdirSync(path.join(build.dir, 'launcher', 'src')).sort(), ['launcher.js', 'main.js'], 'one bundle and its entry');
    const main = fs.readFileSync(path.join(build.dir, 'launcher', 'src', 'launcher.js'), 'utf8');
    assert.doesNotMatch(main, /unused/, 'only reachable modules are bundled');
    assert.doesNotMatch(main, /: Shape/);
    assert.doesNotMatch(main, /\bimport\s/, 'no ESM import: builtins are required, not imported');
    assert.match(main, /function area\(/, 'names are kept');
    // The pod's PID 1 (ADR 0131) ships beside the bundle, executable.
    const script = path.join(build.dir, 'launcher', 'pod', 'vm-pod.sh');
    assert.equal(execFileSync(script, { encoding: 'utf8' }), 'pod\n');
    assert.doesNotMatch(main, /[^\x00-\x7f]/, 'ASCII only');
  });

  it('loads node:http without undici, which an ESM import of it evaluates', () => {
    const repo = miniRepo('http');
    fs.writeFileSync(
      path.join(repo, 'launcher/src/launcher-main.ts'),
      "import http from 'node:http';\nprocess.stdout.write(`${typeof http.createServer} ${process.moduleLoadList.some((m) => m.includes('undici'))}\\n`);\n",
    );
    const build = buildLauncher(repo, path.join(repo, 'cache'));
    assert.equal(execFileSync(process.execPath, [...LAUNCHER_NODE_FLAGS, build.entry], { encoding: 'utf8' }), 'function false\n');
  });

  it('carries a code cache that V8 accepts under the launcher flags, in a copy of the build elsewhere', () => {
    const repo = miniRepo('code-cache');
    const build = buildLauncher(repo, path.join(repo, 'cache'));
    const moved = path.join(repo, 'moved');
    fs.cpSync(build.dir, moved, { recursive: true });
    const cacheFiles = (): string[] => fs.readdirSync(path.join(moved, 'launcher', 'compile-cache'), { recursive: true, encoding: 'utf8' }).sort();
    const before = cacheFiles();
    assert.ok(before.length > 0, 'the build made a code cache');
    const run = spawnSync(process.execPath, [...LAUNCHER_NODE_FLAGS, path.join(moved, 'launcher', 'src', 'main.js')], {
      encoding: 'utf8',
      env: { ...process.env, NODE_DEBUG_NATIVE: 'COMPILE_CACHE' },
    });
    assert.equal(run.stdout, '9.9.9 9 m²\n');
    assert.match(run.stderr, /V8 code cache for CommonJS \S+launcher\.js was accepted/);
    assert.deepEqual(cacheFiles(), before, 'an accepted cache is not rewritten');
    const otherFlags = spawnSync(process.execPath, [path.join(moved, 'launcher', 'src', 'main.js')], { encoding: 'utf8' });
    assert.equal(otherFlags.stdout, '9.9.9 9 m²\n', 'under other flags (another cache key) the bundle runs compiled anew');
  });

  it('reuses a build while the sources are unchanged and builds anew after a change', () => {
    const repo = miniRepo('cache');
    const cache = path.join(repo, 'cache');
    const first = buildLauncher(repo, cache);
    const again = buildLauncher(repo, cache);
    assert.equal(again.built, false);
    assert.equal(again.dir, first.dir);
    fs.writeFileSync(path.join(repo, 'launcher/src/shape.ts'), 'export function area(s: { side: number }): number {\n  return 4 * s.side;\n}\n');
    const changed = buildLauncher(repo, cache);
    assert.equal(changed.built, true);
    assert.notEqual(changed.dir, first.dir);
    assert.equal(execFileSync(process.execPath, [changed.entry], { encoding: 'utf8' }), '9.9.9 12 m²\n');
  });

  it('refuses an import from outside the sources its hash covers', () => {
    const repo = miniRepo('outside');
    fs.mkdirSync(path.join(repo, 'operator/src'), { recursive: true });
    fs.writeFileSync(path.join(repo, 'operator/src/inside.ts'), 'export const x: number = 1;\n');
    fs.writeFileSync(path.join(repo, 'launcher/src/shape.ts'), "export { x as area } from '../../operator/src/inside.ts';\n");
    assert.throws(() => buildLauncher(repo, path.join(repo, 'cache')), (err: unknown) => err instanceof LauncherBuildError && err.message.includes('operator/src/inside.ts'));
  });

  it('names a missing import', () => {
    const repo = miniRepo('missing');
    fs.writeFileSync(path.join(repo, 'launcher/src/shape.ts'), "export { area } from './gone.ts';\n");
    assert.throws(() => buildLauncher(repo, path.join(repo, 'cache')), (err: unknown) => err instanceof LauncherBuildError && err.message.includes('launcher/src/shape.ts') && err.message.includes('./gone.ts'));
  });
});
