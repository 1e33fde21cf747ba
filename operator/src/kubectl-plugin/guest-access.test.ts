// Pure parts of console, port-forward, ssh/scp, vnc and guestinfo.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderGuestInfo } from './action-verbs.ts';
import { splitAtEscape } from './console.ts';
import { UsageError } from './errors.ts';
import { GuestInfo } from './keyvirt-api.ts';
import { decodeChannelMessage, parsePortMapping } from './port-forward.ts';
import { parseScpOperands, parseSshTarget, scpArgs, sshArgs } from './ssh.ts';
import { findViewer } from './vnc.ts';

const ref = { namespace: 'prod', name: 'web-1' };

void describe('console escape', () => {
  void it('sends what precedes Ctrl+] and leaves', () => {
    assert.deepEqual(splitAtEscape(Buffer.from('ls\n')), { send: Buffer.from('ls\n'), escaped: false });
    assert.deepEqual(splitAtEscape(Buffer.from([0x61, 0x1d, 0x62])), { send: Buffer.from('a'), escaped: true });
    assert.deepEqual(splitAtEscape(Buffer.from([0x03])), { send: Buffer.from([0x03]), escaped: false }, 'Ctrl+C goes to the guest');
  });
});

void describe('port-forward', () => {
  const ok: [string, { local: number; guest: number }][] = [['8080:80', { local: 8080, guest: 80 }], ['22', { local: 22, guest: 22 }], [':5432', { local: 0, guest: 5432 }], ['0:22', { local: 0, guest: 22 }]];
  for (const [text, mapping] of ok) void it(`parses ${text}`, () => assert.deepEqual(parsePortMapping(text), mapping));
  for (const text of ['80:0', 'http', '1:2:3', '70000', '']) {
    void it(`refuses ${JSON.stringify(text)}`, () => assert.throws(() => parsePortMapping(text), UsageError));
  }
  void it('strips the port prefix of the first message of each channel only', () => {
    const seen = new Set<number>();
    assert.deepEqual(decodeChannelMessage(Buffer.from([0, 22, 0]), seen), { channel: 0, data: Buffer.alloc(0) });
    assert.deepEqual(decodeChannelMessage(Buffer.from([0, 0x53, 0x53, 0x48]), seen), { channel: 0, data: Buffer.from('SSH') });
    assert.deepEqual(decodeChannelMessage(Buffer.from([1, 22, 0, 0x65]), seen), { channel: 1, data: Buffer.from('e') });
  });
});

void describe('ssh and scp', () => {
  void it('parses [USER@]VM', () => {
    assert.deepEqual(parseSshTarget('debian@web-1', 'ssh'), { user: 'debian', vm: 'web-1' });
    assert.deepEqual(parseSshTarget('web-1', 'ssh'), { user: undefined, vm: 'web-1' });
    assert.throws(() => parseSshTarget('@web-1', 'ssh'), /empty user/);
    assert.throws(() => parseSshTarget('root@Web_1', 'ssh'), /"Web_1" is not a VirtualMachine name/);
  });
  void it('builds the ssh command line: port, host key alias, user, options after the host', () => {
    const args = sshArgs(ref, 40_022, { user: 'debian', guestPort: 22, identityFile: 'k', passThrough: ['-o', 'BatchMode=yes', 'uptime'], timeoutMs: 1 });
    assert.deepEqual(args, ['-p', '40022', '-o', 'HostKeyAlias=vm/web-1.prod', '-i', 'k', '-l', 'debian', '127.0.0.1', '-o', 'BatchMode=yes', 'uptime']);
  });
  void it('finds the remote operand of scp and rewrites it to the forwarded port', () => {
    const up = parseScpOperands('./app.tar', 'debian@web-1:/tmp/');
    assert.deepEqual(up, { target: { user: 'debian', vm: 'web-1' }, remoteIs: 'destination', remotePath: '/tmp/', localPath: './app.tar' });
    assert.deepEqual(scpArgs(ref, 5, { user: undefined, guestPort: 22, identityFile: undefined, recursive: true, passThrough: ['-q'], timeoutMs: 1 }, up), [
      '-P', '5', '-o', 'HostKeyAlias=vm/web-1.prod', '-r', '-q', './app.tar', 'debian@127.0.0.1:/tmp/',
    ]);
    const down = parseScpOperands('web-1:/var/log', '/tmp/logs');
    assert.equal(down.remoteIs, 'source');
    assert.throws(() => parseScpOperands('a:/x', 'b:/y'), /only one side may be VM:PATH/);
    assert.throws(() => parseScpOperands('./a', '/b'), /one of SOURCE and DESTINATION must be \[USER@\]VM:PATH/);
  });
});

void describe('vnc viewer', () => {
  void it('takes the first known viewer on PATH', () => {
    const found = findViewer('/a:/b', (f) => f === '/b/vncviewer' || f === '/a/xtigervncviewer');
    assert.equal(found?.file, '/b/vncviewer');
    assert.equal(found?.target('127.0.0.1', 5901), '127.0.0.1::5901');
    assert.equal(findViewer('/a', () => false), undefined);
  });
});

void describe('guestinfo text', () => {
  void it('shows OS, users, file systems, and escapes control characters from the guest', () => {
    const info = GuestInfo.parse({
      kind: 'VirtualMachineGuestInfo',
      hostname: 'web-1',
      os: { id: 'debian', prettyName: 'Debian GNU/Linux 12 (bookworm)', versionId: '12', kernelRelease: '6.1.0', machine: 'x86_64' },
      users: [{ user: 'root\u001b[2J', loginTime: 1_764_364_800.5 }],
      filesystems: [{ name: 'vda1', mountpoint: '/', type: 'ext4', usedBytes: 1_073_741_824, totalBytes: 4_294_967_296 }],
    });
    const text = renderGuestInfo(ref, info);
    assert.match(text, /^VirtualMachine "web-1" in namespace "prod"$/m);
    assert.match(text, /OS: +Debian GNU\/Linux 12 \(bookworm\) \(id debian, version 12\)/);
    assert.match(text, /root\\u001b\[2J +since 2025-11-28T21:20:00\.500Z/);
    assert.ok(!text.includes('\u001b'), 'no raw escape sequence reaches the terminal');
    assert.match(text, /\/ +ext4 +vda1 +1\.0 GiB +4\.0 GiB/);
  });
});
