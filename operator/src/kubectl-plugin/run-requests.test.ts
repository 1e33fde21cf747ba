import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { VmView } from './keyvirt-api.ts';
import { refuseRunRequest, runRequestDone, type RunRequest } from './run-requests.ts';

function vm(runStrategy: string, phase: string | undefined, annotations?: Record<string, string>): VmView {
  return {
    metadata: { name: 'web-1', namespace: 'prod', uid: 'u', ...(annotations !== undefined ? { annotations } : {}) },
    spec: { runStrategy },
    ...(phase !== undefined ? { status: { phase } } : {}),
  };
}

void describe('run requests', () => {
  const refusals: { request: RunRequest; vm: VmView; refused: RegExp | undefined }[] = [
    { request: 'start', vm: vm('Halted', 'Stopped'), refused: undefined },
    { request: 'start', vm: vm('Always', 'Running'), refused: /^VirtualMachine "web-1" in namespace "prod" is already running \(phase Running\)$/ },
    { request: 'start', vm: vm('Manual', 'Paused'), refused: /already running \(phase Paused\)/ },
    { request: 'start', vm: vm('RerunOnFailure', 'Stopped'), refused: undefined },
    { request: 'stop', vm: vm('Always', 'Running'), refused: undefined },
    { request: 'stop', vm: vm('Halted', 'Stopped'), refused: /is already stopped/ },
    { request: 'stop', vm: vm('Halted', undefined), refused: /is already stopped/ },
    { request: 'stop', vm: vm('Manual', 'Starting'), refused: undefined },
    { request: 'restart', vm: vm('Always', 'Running'), refused: undefined },
    { request: 'restart', vm: vm('Halted', 'Stopped'), refused: /is Halted: start it instead of restarting/ },
    { request: 'stop', vm: vm('Always', 'Running', { 'keyvirt.io/request': 'restart' }), refused: /already has a pending "restart" request/ },
  ];
  for (const c of refusals) {
    void it(`${c.request} on ${String(c.vm.spec.runStrategy)}/${c.vm.status?.phase ?? 'no phase'}${c.vm.metadata.annotations !== undefined ? ' with a pending request' : ''}: ${c.refused === undefined ? 'sent' : 'refused'}`, () => {
      const out = refuseRunRequest(c.vm, c.request);
      if (c.refused === undefined) assert.equal(out, undefined);
      else assert.match(out ?? '', c.refused);
    });
  }

  const done: { request: RunRequest; vm: VmView; done: boolean }[] = [
    { request: 'start', vm: vm('Always', 'Running'), done: true },
    { request: 'start', vm: vm('Always', 'Starting'), done: false },
    { request: 'start', vm: vm('Halted', 'Running', { 'keyvirt.io/request': 'start' }), done: false },
    { request: 'stop', vm: vm('Halted', 'Stopped'), done: true },
    { request: 'stop', vm: vm('Halted', 'Stopping'), done: false },
    { request: 'restart', vm: vm('Always', 'Running', { 'keyvirt.io/restart-of': 'pod-uid' }), done: false },
    { request: 'restart', vm: vm('Always', 'Running', { 'keyvirt.io/request': 'restart' }), done: false },
    { request: 'restart', vm: vm('Always', 'Starting'), done: false },
    { request: 'restart', vm: vm('Always', 'Running'), done: true },
  ];
  for (const c of done) {
    void it(`${c.request} done when ${c.vm.status?.phase ?? ''} ${JSON.stringify(c.vm.metadata.annotations ?? {})}: ${String(c.done)}`, () => {
      assert.equal(runRequestDone(c.vm, c.request), c.done);
    });
  }
});
