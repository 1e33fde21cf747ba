import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { expandReferences } from './container-env.ts';
import { childPids, initScript } from './container-process.ts';

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

describe('container init script as its PID namespace\'s init', () => {
  it('ends on a SIGTERM that arrives while the container is being set up', async () => {
    const script = initScript({
      cgroupProcFiles: [], hostname: 'pod-1', workingDir: '/', mounts: [],
      root: { dir: '/state/root', imagePaths: [], hiddenPaths: [], revealedPaths: [] },
      security: { privileged: false, capabilities: [], noNewPrivs: true, readOnlyRoot: false, runAsUser: undefined, runAsGroup: undefined },
    });
    // The script's own prologue (its traps), then set-up steps that take a while, then the exec.
    const prologue = script.split('\n').filter((l) => l.startsWith('trap ')).join('\n');
    const child = spawn('/usr/bin/unshare', ['--pid', '--fork', '--kill-child=SIGKILL', '--', '/bin/sh', '-c', `${prologue}\n/bin/sleep 0.5\n/bin/sleep 0.5\nexec /bin/sleep 30`]);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await new Promise((r) => setTimeout(r, 200));
    const init = childPids(child.pid ?? 0)[0];
    assert.ok(init !== undefined, 'the namespace init runs');
    process.kill(init, 'SIGTERM');
    const started = Date.now();
    const code = await exited;
    assert.ok(Date.now() - started < 5000, 'ended during set-up, not after the container ran');
    assert.equal(code, 143);
  });
});
