// The node agent's safety net (ADR 0139): an error nobody caught is survived while a held
// VM run goes on, and ends the process with the internal exit code when none does. The
// last test runs it in a real Node process, on the process's own events, with the agent's
// held launchers (the pod listing and the runs handed in).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import type { UncaughtErrorSource } from '@keyvirt/launcher/held';
import { guardHeldVms } from './held-safety-net.ts';

function fakeProcess(): EventEmitter & UncaughtErrorSource {
  return new EventEmitter();
}

void describe("the node agent's safety net", () => {
  void it('survives while a held run goes on, and exits with 70 once none does', () => {
    const source = fakeProcess();
    const held = { running: 2 };
    const exits: number[] = [];
    const lines: string[] = [];
    const net = guardHeldVms(held, pino({}, { write: (l: string) => lines.push(l) }), source, (code) => exits.push(code));
    source.emit('uncaughtException', new Error('in a callback'), 'uncaughtException');
    source.emit('unhandledRejection', new Error('nobody awaited'), Promise.resolve());
    assert.deepEqual([net.survived, exits], [2, []]);
    held.running = 0;
    source.emit('uncaughtException', new Error('after the last run'), 'uncaughtException');
    assert.deepEqual(exits, [70]);
    const logged = lines.map((l) => JSON.parse(l) as { msg: string; err: { message: string } });
    assert.deepEqual(logged.map((l) => [l.msg, l.err.message]), [
      ["uncaught error; the node's held VMs keep running", 'in a callback'],
      ["uncaught error; the node's held VMs keep running", 'nobody awaited'],
      ['uncaught error with no held VM running; exiting', 'after the last run'],
    ]);
  });

  void it('an agent that holds no launchers exits as Node would', () => {
    const source = fakeProcess();
    const exits: number[] = [];
    guardHeldVms(undefined, pino({ level: 'silent' }), source, (code) => exits.push(code));
    source.emit('unhandledRejection', new Error('boom'), Promise.resolve());
    assert.deepEqual(exits, [70]);
  });

  void it('in a real process: a throw and a rejection nobody handles leave the held run going; after its end a throw exits 70', () => {
    const here = (f: string): string => pathToFileURL(new URL(f, import.meta.url).pathname).href;
    const script = `
      import { pino } from 'pino';
      import { HeldLaunchers } from ${JSON.stringify(here('./held-launchers.ts'))};
      import { guardHeldVms } from ${JSON.stringify(here('./held-safety-net.ts'))};
      let end;
      const exitCode = new Promise((resolve) => { end = resolve; });
      const pod = { metadata: { namespace: 'prod', name: 'launcher-a', uid: 'a', labels: { 'keyvirt.io/vm': 'a', 'keyvirt.io/vm-uid': 'u' } }, spec: { nodeName: 'n' }, status: { phase: 'Running' } };
      const held = new HeldLaunchers({
        api: { listPods: async () => ({ items: [pod] }) }, node: 'n', procRoot: '/proc', intervalMs: 100, log: pino({ level: 'silent' }),
        findInits: async (_root, uids) => new Map(uids.map((uid) => [uid, 1])),
        runPod: async () => ({ exitCode, stop: () => undefined, part: async () => true }),
      });
      const net = guardHeldVms(held, pino({ level: 'silent' }));
      await held.pass();
      setTimeout(() => { throw new Error('a throw in a callback'); }, 10);
      setTimeout(() => { void Promise.reject(new Error('a rejection nobody awaits')); }, 20);
      setTimeout(async () => {
        console.log('alive running=' + held.running + ' survived=' + net.survived);
        end(0);
        await exitCode;
        setTimeout(() => { throw new Error('with no held run'); }, 10);
      }, 200);
      setTimeout(() => console.log('still alive: wrong'), 5000);
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000, cwd: new URL('.', import.meta.url).pathname });
    assert.equal(r.status, 70, r.stdout + r.stderr);
    assert.equal(r.stdout, 'alive running=1 survived=2\n', r.stderr);
  });
});
