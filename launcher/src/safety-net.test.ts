import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { pino } from 'pino';
import { installSafetyNet, type UncaughtErrorSource } from './safety-net.ts';

function fakeProcess(): EventEmitter & UncaughtErrorSource {
  return new EventEmitter();
}

const cases: { name: string; guest: boolean; event: 'uncaughtException' | 'unhandledRejection'; exits: boolean }[] = [
  { name: 'a throw while the guest runs is survived', guest: true, event: 'uncaughtException', exits: false },
  { name: 'a rejection while the guest runs is survived', guest: true, event: 'unhandledRejection', exits: false },
  { name: 'a throw with no guest ends the process', guest: false, event: 'uncaughtException', exits: true },
  { name: 'a rejection with no guest ends the process', guest: false, event: 'unhandledRejection', exits: true },
];

for (const c of cases) {
  void test(c.name, () => {
    const source = fakeProcess();
    const exits: number[] = [];
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
    const net = installSafetyNet({ source, log, guestRunning: () => c.guest, exit: (code) => exits.push(code), exitCode: 70 });
    const err = new TypeError('boom');
    if (c.event === 'uncaughtException') source.emit(c.event, err, 'uncaughtException');
    else source.emit(c.event, err, Promise.resolve());
    assert.deepEqual(exits, c.exits ? [70] : []);
    assert.equal(net.survived, c.exits ? 0 : 1);
    const logged = JSON.parse(lines[0] ?? '{}') as { err?: { message?: string }; level?: number };
    assert.equal(logged.err?.message, 'boom', 'the error is logged under err');
    assert.equal(logged.level, c.exits ? 60 : 50);
  });
}

void test('the guest stopping turns the net off', () => {
  const source = fakeProcess();
  let running = true;
  const exits: number[] = [];
  installSafetyNet({ source, log: pino({ level: 'silent' }), guestRunning: () => running, exit: (code) => exits.push(code), exitCode: 70 });
  source.emit('uncaughtException', new Error('one'), 'uncaughtException');
  running = false;
  source.emit('uncaughtException', new Error('two'), 'uncaughtException');
  assert.deepEqual(exits, [70]);
});
