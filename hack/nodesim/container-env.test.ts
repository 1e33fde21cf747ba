import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { expandReferences } from './container-env.ts';
import { initScript } from './container-process.ts';

describe('container environment', () => {
  it('expands $(VAR) references and keeps unknown ones and $$ escapes', () => {
    const env = { A: 'x', B: 'y z' };
    assert.equal(expandReferences('$(A)-$(B)', env), 'x-y z');
    assert.equal(expandReferences('$(MISSING)', env), '$(MISSING)');
    assert.equal(expandReferences('$$(A)', env), '$(A)');
  });
});

describe('container init script', () => {
  it('joins cgroups, bind-mounts volumes (read-only when asked) and quotes paths', () => {
    const script = initScript({
      cgroupProcFiles: ['/sys/fs/cgroup/memory/keyvirt/n/p/c/cgroup.procs'],
      hostname: 'pod-1',
      workingDir: '/',
      mounts: [{ source: "/state/it's", target: '/data', readOnly: true }],
      root: { dir: '/state/root', imagePaths: [], hiddenPaths: [], revealedPaths: [] },
      security: { privileged: false, capabilities: ['chown'], noNewPrivs: true, readOnlyRoot: false, runAsUser: undefined, runAsGroup: undefined },
    });
    assert.match(script, /echo \$\$ > '\/sys\/fs\/cgroup\/memory\/keyvirt\/n\/p\/c\/cgroup.procs'/);
    assert.match(script, /\/usr\/bin\/mount --bind '\/state\/it'\\''s' '\/state\/root\/data'/);
    assert.match(script, /\/usr\/bin\/mount -o remount,bind,ro '\/state\/root\/data'/);
    assert.match(script, /\/usr\/sbin\/pivot_root \. \.keyvirt-old-root/);
    assert.ok(script.trimEnd().endsWith(`exec /usr/bin/setpriv '--bounding-set=-all,+chown' '--inh-caps=-all,+chown' '--no-new-privs' -- "$@"`));
  });
});
