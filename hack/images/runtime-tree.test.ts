import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { LAUNCHER_NODE_FLAGS } from '../launcher-build/build-launcher.ts';
import { BUNDLE_NODE_FLAGS, NODE_AGENT_BUNDLE, OPERATOR_BUNDLE } from '../operator-build/build-operator.ts';
import { productionClosure, RuntimeTreeError } from './runtime-tree.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');

// A lock's `packages` in miniature: the root (with dev tools), two workspaces, a link.
const lock = {
  '': { dependencies: {}, devDependencies: { typescript: '5' } },
  operator: { dependencies: { '@keyvirt/crds': '0.1.0', a: '1', p: '1' } },
  crds: { dependencies: { zod: '4' } },
  'node_modules/@keyvirt/crds': { link: true, resolved: 'crds' },
  'node_modules/zod': { version: '4.0.0' },
  'node_modules/a': { version: '1.0.0', dependencies: { b: '2' }, optionalDependencies: { fsevents: '2', native: '1' } },
  'node_modules/a/node_modules/b': { version: '2.0.0' },
  'node_modules/b': { version: '1.0.0' },
  'node_modules/fsevents': { version: '2.0.0' },
  'node_modules/native': { version: '1.0.0' },
  'node_modules/p': { version: '1.0.0', peerDependencies: { q: '1', r: '1' }, peerDependenciesMeta: { r: { optional: true } } },
  'node_modules/q': { version: '1.0.0' },
  'node_modules/r': { version: '1.0.0' },
  'node_modules/typescript': { version: '5.0.0' },
};

void describe('productionClosure', () => {
  const cases: { name: string; workspaces: string[]; installed: (key: string) => boolean; want: string[] }[] = [
    {
      name: 'follows links, resolves nested copies first, takes installed optionals and required peers only',
      workspaces: ['operator'],
      installed: (key) => key !== 'node_modules/fsevents',
      want: ['node_modules/a', 'node_modules/a/node_modules/b', 'node_modules/native', 'node_modules/p', 'node_modules/q', 'node_modules/zod'],
    },
    { name: 'a workspace alone', workspaces: ['crds'], installed: () => true, want: ['node_modules/zod'] },
    { name: 'no devDependencies of the root', workspaces: [], installed: () => true, want: [] },
  ];
  for (const c of cases) {
    void it(c.name, () => {
      assert.deepEqual(productionClosure(lock, c.workspaces, c.installed), c.want);
    });
  }

  void it('names a dependency the lock does not hold', () => {
    assert.throws(() => productionClosure({ ...lock, crds: { dependencies: { missing: '1' } } }, ['crds'], () => true), (err: unknown) => err instanceof RuntimeTreeError && /crds needs missing/.test(err.message));
  });

  void it("finds the repository's own dependencies (pino, zod for the launcher)", () => {
    const parsed = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package-lock.json'), 'utf8')) as { packages: Parameters<typeof productionClosure>[0] };
    const keys = productionClosure(parsed.packages, ['launcher', 'crds'], (key) => fs.existsSync(path.join(repoRoot, key)));
    for (const want of ['node_modules/pino', 'node_modules/zod']) assert.ok(keys.includes(want), want);
    assert.ok(!keys.includes('node_modules/typescript'), 'no dev tool');
  });
});

void describe('launcher Containerfile', () => {
  void it('starts the built launcher with the Node flags the node simulator uses', () => {
    const file = fs.readFileSync(path.join(repoRoot, 'launcher/Containerfile'), 'utf8');
    const entry = /^ENTRYPOINT (\[.*\])$/m.exec(file);
    assert.ok(entry?.[1] !== undefined, 'an exec-form ENTRYPOINT');
    assert.deepEqual(JSON.parse(entry[1]), ['/usr/local/bin/node', ...LAUNCHER_NODE_FLAGS, '/opt/keyvirt/launcher/src/main.js']);
  });
});

void describe('operator and node-agent Containerfiles', () => {
  const entrypoint = (file: string): unknown => {
    const entry = /^ENTRYPOINT (\[.*\])$/m.exec(fs.readFileSync(path.join(repoRoot, file), 'utf8'));
    assert.ok(entry?.[1] !== undefined, `${file}: an exec-form ENTRYPOINT`);
    return JSON.parse(entry[1]);
  };
  void it('start the bundles the runtime tree carries, with the bundles\' Node flags', () => {
    assert.deepEqual(entrypoint('operator/Containerfile'), ['/usr/local/bin/node', ...BUNDLE_NODE_FLAGS, `/opt/keyvirt/operator/dist/${OPERATOR_BUNDLE}`]);
    assert.deepEqual(entrypoint('operator/src/node-agent/Containerfile'), ['/usr/local/bin/node', ...BUNDLE_NODE_FLAGS, `/opt/keyvirt/operator/dist/${NODE_AGENT_BUNDLE}`]);
  });
});
