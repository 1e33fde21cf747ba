import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OperatorBuild } from '../operator-build/build-operator.ts';
import { containerArgv, imageRepository, resolveImage, UnknownImageError, type LauncherImage } from './images.ts';

const options = { repoRoot: '/repo', stateDir: '/state', nodeBinary: '/opt/node/bin/node' };

describe('image table', () => {
  it('reduces references to their repository', () => {
    assert.equal(imageRepository('keyvirt/launcher:0.1.0'), 'keyvirt/launcher');
    assert.equal(imageRepository('ghcr.io/keyvirt/launcher@sha256:abc'), 'keyvirt/launcher');
    assert.equal(imageRepository('localhost:5000/keyvirt/operator:dev'), 'keyvirt/operator');
    assert.equal(imageRepository('docker.io/library/busybox:1.36'), 'busybox');
    assert.equal(imageRepository('busybox'), 'busybox');
  });
  it('runs KeyVirt images from this repository on the pinned Node.js', () => {
    const launcherImage = (repoRoot: string): LauncherImage => ({ dir: `${repoRoot}/hack/.cache/launcher-build/0123`, entry: `${repoRoot}/hack/.cache/launcher-build/0123/launcher/src/main.js`, nodeFlags: ['--lite-mode'] });
    const entry = resolveImage('keyvirt/launcher:latest', { ...options, launcherImage });
    assert.deepEqual(entry.entrypoint, ['/opt/node/bin/node', '--lite-mode', '/repo/hack/.cache/launcher-build/0123/launcher/src/main.js']);
    assert.ok(entry.hiddenPaths.includes('/repo/hack/.cache'), 'the build cache is hidden…');
    assert.deepEqual(entry.revealedPaths, ['/repo/hack/.cache/launcher-build/0123'], '…but for the launcher build the image carries');
    assert.deepEqual(entry.imageBinds, [{ source: '/repo/hack/.cache/launcher-build/0123', target: '/opt/keyvirt' }], 'the build is also where the real image has it');
    const dir = '/repo/hack/.cache/operator-build/4567';
    const operatorBuild = (): OperatorBuild => ({ dir, operator: `${dir}/operator.mjs`, nodeAgent: `${dir}/node-agent.mjs`, hash: '4567' });
    const operator = resolveImage('keyvirt/operator', { ...options, operatorBuild });
    assert.deepEqual(operator.entrypoint, ['/opt/node/bin/node', '--no-experimental-strip-types', `${dir}/operator.mjs`]);
    assert.deepEqual(operator.revealedPaths, [dir]);
    assert.equal(operator.imageBinds, undefined, 'the operator build is only the image\'s operator/dist');
    assert.deepEqual(resolveImage('keyvirt/node-agent', { ...options, operatorBuild }).entrypoint, ['/opt/node/bin/node', '--no-experimental-strip-types', `${dir}/node-agent.mjs`]);
  });
  it('rejects images it does not know', () => {
    assert.throws(() => resolveImage('nginx:1.27', options), UnknownImageError);
  });
  it('follows ENTRYPOINT/CMD rules for command and args', () => {
    const entry = { entrypoint: ['/bin/app'], cmd: ['--default'], pathPrefix: [], rootPaths: [], hiddenPaths: [], revealedPaths: [] };
    assert.deepEqual(containerArgv(entry, undefined, undefined), ['/bin/app', '--default']);
    assert.deepEqual(containerArgv(entry, undefined, ['--x']), ['/bin/app', '--x']);
    assert.deepEqual(containerArgv(entry, ['sh', '-c'], ['echo']), ['sh', '-c', 'echo']);
  });
});
