// The agent's passes over its node's held pods, with the pod listing, the procfs walk
// and the VM runs handed in: a pod is run once; a run whose pod is being deleted or is
// gone is stopped, once (ADR 0136: a pod deleted before its QEMU started has no script
// left to ask for the stop); pods of other nodes and finished pods are never run; an
// agent that stops leaves its running VMs to the next one (ADR 0138).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { HeldPod } from '@keyvirt/launcher/held';
import { HeldLaunchers, runHeldLaunchers, type HeldLauncherOptions, type HeldPodRun } from './held-launchers.ts';

interface FakeRun extends HeldPodRun {
  readonly held: HeldPod;
  readonly stops: string[];
  parted: number;
  end(code: number): void;
}

function pod(uid: string, o: { node?: string; deleting?: boolean; phase?: string } = {}): unknown {
  return {
    metadata: {
      namespace: 'prod', name: `launcher-${uid}`, uid,
      labels: { 'keyvirt.io/vm': `vm-${uid}`, 'keyvirt.io/vm-uid': `vm-uid-${uid}` },
      ...(o.deleting === true ? { deletionTimestamp: '2026-12-02T00:00:00Z' } : {}),
    },
    spec: { nodeName: o.node ?? 'node-1' },
    status: { phase: o.phase ?? 'Running' },
  };
}

function agent(): { held: HeldLaunchers; options: HeldLauncherOptions; listed: unknown[][]; runs: FakeRun[]; setPods: (pods: unknown[]) => void } {
  let pods: unknown[] = [];
  const listed: unknown[][] = [];
  const runs: FakeRun[] = [];
  const options: HeldLauncherOptions = {
    api: {
      listPods: (fieldSelector) => {
        assert.equal(fieldSelector, 'spec.nodeName=node-1');
        listed.push(pods);
        return Promise.resolve({ items: pods });
      },
    },
    node: 'node-1',
    procRoot: '/proc',
    intervalMs: 500,
    log: pino({ level: 'silent' }),
    findInits: (_root, uids) => Promise.resolve(new Map(uids.map((uid, i) => [uid, 1000 + i]))),
    runPod: (h) => {
      let end: (code: number) => void = () => undefined;
      const exitCode = new Promise<number>((resolve) => {
        end = resolve;
      });
      const stops: string[] = [];
      const run: FakeRun = {
        held: h, stops, exitCode, parted: 0,
        stop: (reason) => stops.push(reason),
        part: () => {
          run.parted++;
          return h.pod.uid === 'refusing' ? Promise.reject(new Error('lease I/O failed')) : Promise.resolve(true);
        },
        end: (code) => end(code),
      };
      runs.push(run);
      return Promise.resolve(run);
    },
  };
  return { held: new HeldLaunchers(options), options, listed, runs, setPods: (p) => (pods = p) };
}

void describe("the node agent's held launchers", () => {
  void it("runs each of its node's held pods once, as the pod (its UID and node for the lease)", async () => {
    const a = agent();
    a.setPods([pod('a'), pod('b', { node: 'node-2' }), pod('c', { phase: 'Failed' })]);
    await a.held.pass();
    await a.held.pass();
    assert.deepEqual(a.runs.map((r) => r.held.pod), [{ uid: 'a', node: 'node-1' }]);
    assert.deepEqual(a.runs[0]?.held.expect, { namespace: 'prod', vmName: 'vm-a', vmUid: 'vm-uid-a' });
    assert.equal(a.held.running, 1);
  });

  void it('stops a run once its pod is being deleted, and only once', async () => {
    const a = agent();
    a.setPods([pod('a')]);
    await a.held.pass();
    a.setPods([pod('a', { deleting: true })]);
    await a.held.pass();
    await a.held.pass();
    a.setPods([]);
    await a.held.pass();
    assert.deepEqual(a.runs[0]?.stops, ['the pod is being deleted']);
  });

  void it('stops a run whose pod is gone (deleted before its QEMU started: no stop request from the pod)', async () => {
    const a = agent();
    a.setPods([pod('a'), pod('b')]);
    await a.held.pass();
    a.setPods([pod('b')]);
    await a.held.pass();
    assert.deepEqual(a.runs.map((r) => [r.held.pod.uid, r.stops]), [['a', ['the pod is gone']], ['b', []]]);
    a.runs[0]?.end(0);
    await new Promise((r) => setImmediate(r));
    assert.equal(a.held.running, 1);
  });

  void it('never runs a pod again once its run ended (a pod never restarts)', async () => {
    const a = agent();
    a.setPods([pod('a')]);
    await a.held.pass();
    a.runs[0]?.end(0);
    await new Promise((r) => setImmediate(r));
    await a.held.pass();
    assert.equal(a.runs.length, 1);
    assert.equal(a.held.running, 0);
  });

  void it('parts every run still going when it stops — none that ended or that it stopped — and a failing one does not keep the others', async () => {
    const a = agent();
    a.setPods([pod('a'), pod('refusing'), pod('b'), pod('c')]);
    await a.held.pass();
    a.runs[2]?.end(0);
    await new Promise((r) => setImmediate(r));
    a.setPods([pod('a'), pod('refusing'), pod('b'), pod('c', { deleting: true })]);
    await a.held.pass();
    await a.held.part();
    assert.deepEqual(a.runs.map((r) => [r.held.pod.uid, r.parted]), [['a', 1], ['refusing', 1], ['b', 0], ['c', 0]]);
  });

  void it('parts the runs once the agent is told to stop (its SIGTERM), after its last pass', async () => {
    const a = agent();
    a.setPods([pod('a')]);
    const stop = new AbortController();
    const running = runHeldLaunchers(a.options, stop.signal);
    while (a.runs.length === 0) await new Promise((r) => setTimeout(r, 5));
    assert.equal(a.runs[0]?.parted, 0, 'nothing parted while the agent runs');
    stop.abort();
    await running;
    assert.equal(a.runs[0]?.parted, 1);
  });
});
