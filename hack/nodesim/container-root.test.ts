// The container's own root, devices and privileges, on real namespaces: what a
// container sees of the node (only its mounts), what it may write (not its read-only
// volumes, not a read-only root, not /proc/sys), and what it may do (the capabilities
// its securityContext leaves, no_new_privs), and an image's directory bound at its
// image path (/opt/keyvirt) beside the node's own /opt.
/* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- client-node models are plain JSON data; literals are how the API is used */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { ContainerProcess } from './container-process.ts';
import { containerSecurity, ContainerSecurityError, DEFAULT_CAPABILITIES, rootAssemblyScript, setprivArgs, type NodeFs } from './container-root.ts';
import { prepareTerminationLog } from './termination-message.ts';
import { subPathSource, VolumeNotReadyError } from './volumes.ts';

const pod = (spec: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod => ({ spec: { containers: [], ...spec } });
const container = (securityContext: V1Container['securityContext']): V1Container => ({ name: 'c', securityContext });

void describe('container security settings', () => {
  void it('keeps the runtime\'s default capabilities, drops and adds as asked, and maps allowPrivilegeEscalation to no_new_privs', () => {
    assert.deepEqual(containerSecurity(pod(), container(undefined)).capabilities, DEFAULT_CAPABILITIES);
    const hardened = containerSecurity(pod(), container({ capabilities: { drop: ['ALL'], add: ['NET_ADMIN'] }, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true }));
    assert.deepEqual(hardened, { privileged: false, capabilities: ['net_admin'], noNewPrivs: true, readOnlyRoot: true, runAsUser: undefined, runAsGroup: undefined });
    assert.deepEqual(setprivArgs(hardened), ['--bounding-set=-all,+net_admin', '--inh-caps=-all,+net_admin', '--no-new-privs']);
    assert.deepEqual(containerSecurity(pod(), container({ capabilities: { drop: ['NET_RAW', 'CAP_KILL'] } })).capabilities?.includes('net_raw'), false);
    const privileged = containerSecurity(pod(), container({ privileged: true }));
    assert.equal(privileged.capabilities, undefined);
    assert.deepEqual(setprivArgs(privileged), []);
  });

  void it('runs as the user asked (container over pod) and refuses root under runAsNonRoot', () => {
    const user = containerSecurity(pod({ securityContext: { runAsUser: 107, runAsGroup: 107 } }), container({ runAsUser: 1000 }));
    assert.deepEqual([user.runAsUser, user.runAsGroup], [1000, 107]);
    assert.throws(() => containerSecurity(pod({ securityContext: { runAsNonRoot: true } }), container(undefined)), ContainerSecurityError);
  });

  void it('keeps a subPath inside its volume', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvt-subpath-'));
    after(() => { fs.rmSync(dir, { recursive: true, force: true }); });
    fs.mkdirSync(path.join(dir, 'vol/a'), { recursive: true });
    fs.symlinkSync('/etc', path.join(dir, 'vol/escape'));
    assert.equal(subPathSource(path.join(dir, 'vol'), 'a'), path.join(fs.realpathSync(dir), 'vol/a'));
    assert.equal(fs.statSync(subPathSource(path.join(dir, 'vol'), 'new/dir')).isDirectory(), true, 'a missing subPath is created as a directory');
    assert.throws(() => subPathSource(path.join(dir, 'vol'), '../x'), VolumeNotReadyError);
    assert.throws(() => subPathSource(path.join(dir, 'vol'), '/etc'), VolumeNotReadyError);
    assert.throws(() => subPathSource(path.join(dir, 'vol'), 'escape/passwd'), VolumeNotReadyError);
  });
});

/** A node of directories (listed with their entries) and files. */
const fakeNode = (dirs: Record<string, string[]>, files: readonly string[] = []): NodeFs => ({
  kind: (p) => (p in dirs ? 'dir' : files.includes(p) ? 'file' : 'missing'),
  readlink: () => { throw new Error('no symlinks'); },
  entries: (p) => dirs[p] ?? [],
});

void describe('container root assembly', () => {
  const build = '/repo/hack/.cache/launcher-build/0123';
  const root = { dir: '/c/root', imagePaths: ['/repo'], hiddenPaths: ['/repo/hack/.cache'], revealedPaths: [build], imageBinds: [{ source: build, target: '/opt/keyvirt' }] };
  const dirs = { '/usr': [], '/etc': [], '/opt': ['containerd', 'node'], '/opt/containerd': [], '/opt/node': [], '/repo': [], '/repo/hack/.cache': [], [build]: [] };

  void it('binds an image\'s directory at its image path, read-only, after the revealed paths', () => {
    const lines = rootAssemblyScript(root, false, fakeNode(dirs));
    const revealed = lines.indexOf(`ro '${build}' '/c/root${build}'`);
    const bound = lines.indexOf(`ro '${build}' '/c/root/opt/keyvirt'`);
    assert.ok(revealed > 0, 'the build stays at its node path');
    assert.equal(lines[bound - 1], "/usr/bin/mkdir -p '/c/root/opt/keyvirt'");
    assert.ok(bound > revealed && lines.indexOf("/usr/bin/mkdir -p '/c/root/proc' '/c/root/sys' '/c/root/dev' '/c/root/tmp' '/c/root/run' '/c/root/root' '/c/root/var/tmp'") > bound);
  });

  void it('assembles a node directory entry by entry when the image binds at a path the node lacks in it', () => {
    const lines = rootAssemblyScript(root, false, fakeNode(dirs));
    assert.ok(!lines.includes("ro '/opt' '/c/root/opt'"), 'the node\'s /opt is not bound whole (the mount point cannot be made in it)');
    const opt = lines.indexOf("/usr/bin/mkdir -p '/c/root/opt'");
    assert.deepEqual(lines.slice(opt, opt + 5), [
      "/usr/bin/mkdir -p '/c/root/opt'",
      "/usr/bin/mkdir -p '/c/root/opt/containerd'", "ro '/opt/containerd' '/c/root/opt/containerd'",
      "/usr/bin/mkdir -p '/c/root/opt/node'", "ro '/opt/node' '/c/root/opt/node'",
    ]);
    const nodeHasIt = rootAssemblyScript(root, false, fakeNode({ ...dirs, '/opt/keyvirt': [] }));
    assert.ok(nodeHasIt.includes("ro '/opt' '/c/root/opt'"), 'a mount point the node has is bound over');
    const fileThere = rootAssemblyScript(root, false, fakeNode({ ...dirs, '/opt': ['keyvirt', 'node'] }, ['/opt/keyvirt']));
    assert.ok(!fileThere.some((l) => l.startsWith('/usr/bin/mkdir -p "$(/usr/bin/dirname \'/c/root/opt/keyvirt\')"')), 'a node entry at the target is left out');
    assert.deepEqual(rootAssemblyScript({ ...root, imageBinds: undefined }, false, fakeNode(dirs)).filter((l) => l.includes('keyvirt') && !l.includes('keyvirt-')), []);
  });
});

void describe('container root on real namespaces', () => {
  void it('sees only its mounts, its own /dev and /proc, cannot write read-only volumes or its root, and runs without capabilities under no_new_privs', { timeout: 60_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvt-root-'));
    const optHadKeyvirt = fs.existsSync('/opt/keyvirt');
    after(() => { fs.rmSync(dir, { recursive: true, force: true }); });
    const secret = path.join(dir, 'not-mounted');
    fs.mkdirSync(secret);
    fs.writeFileSync(path.join(secret, 'other-tenant.qcow2'), 'x');
    const volume = path.join(dir, 'volume');
    fs.mkdirSync(path.join(volume, 'mine'), { recursive: true });
    fs.writeFileSync(path.join(volume, 'mine/disk.img'), 'mine');
    fs.writeFileSync(path.join(volume, 'template'), 'template');
    const image = path.join(dir, 'image');
    fs.mkdirSync(path.join(image, 'launcher/pod'), { recursive: true });
    fs.writeFileSync(path.join(image, 'launcher/pod/vm-pod.sh'), 'echo from the image\n');
    const log = prepareTerminationLog(path.join(dir, 'c'), {});
    assert.ok(log !== undefined);
    const script = [
      'echo "written in the container" > /dev/termination-log',
      `[ ! -e ${secret} ] && [ ! -e ${volume} ] || exit 11`,
      '[ "$(cat /data/mine/disk.img)" = mine ] && echo more >> /data/mine/disk.img || exit 12',
      '! (echo x > /data/template) 2>/dev/null || exit 13',
      '[ "$(cat /data/template)" = template ] || exit 14',
      'grep -q "^NoNewPrivs:[[:space:]]*1$" /proc/self/status || exit 15',
      'grep -q "^CapEff:[[:space:]]*0000000000000000$" /proc/self/status || exit 16',
      'grep -q "^CapBnd:[[:space:]]*0000000000000000$" /proc/self/status || exit 17',
      '! (: > /written-to-root) 2>/dev/null || exit 18',
      '[ -z "$(find /dev -type b)" ] && [ ! -e /dev/kvm ] && [ -c /dev/null ] && [ -c /dev/urandom ] || exit 19',
      'v=$(cat /proc/sys/vm/swappiness); ! (echo "$v" > /proc/sys/vm/swappiness) 2>/dev/null || exit 20',
      '[ "$(awk \'$5 == "/sys" { print substr($6, 1, 3) }\' /proc/self/mountinfo)" = "ro," ] || exit 21',
      '[ "$(cat /proc/1/cmdline | tr "\\0" " ")" != "" ] && [ "$(ls /proc | grep -c "^[0-9]")" -lt 10 ] || exit 22',
      'echo scratch > /tmp/x 2>/dev/null && exit 23 || true',
      '[ "$(/bin/sh /opt/keyvirt/launcher/pod/vm-pod.sh)" = "from the image" ] || exit 24',
      '! (: > /opt/keyvirt/x) 2>/dev/null || exit 25',
      `for e in ${fs.readdirSync('/opt').join(' ')}; do [ -e "/opt/$e" ] || exit 26; done`,
    ].join('\n');
    const proc = new ContainerProcess({
      argv: ['/bin/sh', '-c', script], env: { PATH: '/usr/bin:/bin' }, workingDir: '/', hostname: 'rooted', netns: undefined,
      mounts: [
        { source: path.join(volume, 'mine'), target: '/data/mine', readOnly: false },
        { source: path.join(volume, 'template'), target: '/data/template', readOnly: true },
        { source: log.hostPath, target: log.containerPath, readOnly: false },
      ],
      root: { dir: path.join(dir, 'c/root'), imagePaths: [], hiddenPaths: [], revealedPaths: [], imageBinds: [{ source: image, target: '/opt/keyvirt' }] },
      security: containerSecurity(pod(), container({ capabilities: { drop: ['ALL'] }, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true })),
      cgroupProcFiles: [], scriptPath: path.join(dir, 'init.sh'), logPath: path.join(dir, 'out.log'),
    });
    fs.mkdirSync(path.join(dir, 'c/root'), { recursive: true });
    const exit = await proc.exited;
    assert.equal(exit.exitCode, 0, fs.readFileSync(path.join(dir, 'out.log'), 'utf8'));
    assert.equal(fs.readFileSync(log.hostPath, 'utf8'), 'written in the container\n');
    assert.equal(fs.readFileSync(path.join(volume, 'mine/disk.img'), 'utf8'), 'minemore\n');
    assert.equal(fs.readFileSync(path.join(volume, 'template'), 'utf8'), 'template');
    assert.deepEqual(fs.readdirSync(path.join(dir, 'c/root')), [], 'the root was assembled inside the container\'s mount namespace only');
    assert.ok(!fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(path.join(dir, 'c/root')), 'the mounts stayed inside the container');
    assert.equal(fs.existsSync('/opt/keyvirt'), optHadKeyvirt, 'the image\'s mount point was not made in the node\'s /opt');
  });
});
