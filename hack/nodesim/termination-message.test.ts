import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { lastLines, MAX_LOG_FALLBACK_BYTES, MAX_TERMINATION_MESSAGE_BYTES, prepareTerminationLog, terminationMessage } from './termination-message.ts';

describe('termination messages', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvt-termmsg-'));
  after(() => { fs.rmSync(dir, { recursive: true, force: true }); });
  const logPath = path.join(dir, 'main.log');

  it('creates a fresh world-writable file at the default path, none for an empty path', () => {
    const first = prepareTerminationLog(path.join(dir, 'c1'), {});
    assert.equal(first?.containerPath, '/dev/termination-log');
    fs.writeFileSync(first?.hostPath ?? '', 'old run');
    const again = prepareTerminationLog(path.join(dir, 'c1'), { terminationMessagePath: '/tmp/msg' });
    assert.equal(again?.containerPath, '/tmp/msg');
    assert.equal(fs.readFileSync(again?.hostPath ?? '', 'utf8'), '');
    assert.equal(fs.statSync(again?.hostPath ?? '').mode & 0o777, 0o666);
    assert.equal(prepareTerminationLog(path.join(dir, 'c2'), { terminationMessagePath: '' }), undefined);
  });

  it('reports the file, keeping its last 4096 bytes', () => {
    const log = prepareTerminationLog(path.join(dir, 'c3'), {});
    assert.ok(log !== undefined);
    const run = { log, fallbackToLogs: false, logPath, logOffset: 0, exitCode: 0 };
    assert.equal(terminationMessage(run), undefined);
    fs.writeFileSync(log.hostPath, 'done\n');
    assert.equal(terminationMessage(run), 'done\n');
    fs.writeFileSync(log.hostPath, `${'a'.repeat(100)}${'b'.repeat(MAX_TERMINATION_MESSAGE_BYTES)}`);
    assert.equal(terminationMessage(run), 'b'.repeat(MAX_TERMINATION_MESSAGE_BYTES));
  });

  it('falls back to the tail of this run\'s log only on a failure with an empty file', () => {
    const log = prepareTerminationLog(path.join(dir, 'c4'), { terminationMessagePolicy: 'FallbackToLogsOnError' });
    assert.ok(log !== undefined);
    fs.writeFileSync(logPath, 'previous run\n');
    const logOffset = fs.statSync(logPath).size;
    fs.appendFileSync(logPath, Array.from({ length: 100 }, (_v, i) => `line ${i}`).join('\n') + '\n');
    const failed = { log, fallbackToLogs: true, logPath, logOffset, exitCode: 2 };
    const message = terminationMessage(failed) ?? '';
    assert.equal(message.split('\n')[0], 'line 20');
    assert.ok(message.endsWith('line 99\n'));
    assert.equal(terminationMessage({ ...failed, exitCode: 0 }), undefined);
    assert.equal(terminationMessage({ ...failed, fallbackToLogs: false }), undefined);
    fs.writeFileSync(log.hostPath, 'explicit');
    assert.equal(terminationMessage(failed), 'explicit');
    fs.writeFileSync(log.hostPath, '');
    fs.writeFileSync(logPath, `${'x'.repeat(5000)}\nend\n`);
    const long = terminationMessage({ ...failed, logOffset: 0 }) ?? '';
    assert.equal(Buffer.byteLength(long), MAX_LOG_FALLBACK_BYTES);
    assert.ok(long.endsWith('x\nend\n'));
  });

  it('takes the last lines of a text', () => {
    assert.equal(lastLines('a\nb\nc\n', 2), 'b\nc\n');
    assert.equal(lastLines('a\nb\nc', 2), 'b\nc');
    assert.equal(lastLines('a\n', 5), 'a\n');
  });
});
