// start / stop / restart: the `keyvirt.io/request` annotation the operator consumes
// (ADR 0061). The checks and the "done" test are pure functions of the VM, tested by
// tables; `runRequest` does the I/O.
import { setTimeout as sleep } from 'node:timers/promises';
import { PluginError, StateError } from './errors.ts';
import type { KeyVirtApi, VmRef, VmView } from './keyvirt-api.ts';

export type RunRequest = 'start' | 'stop' | 'restart';

const RUNNING_PHASES = new Set(['Running', 'Paused', 'Migrating']);

function where(vm: VmView): string {
  return `VirtualMachine "${vm.metadata.name}" in namespace "${vm.metadata.namespace}"`;
}

/** Why the request makes no sense for this VM, or undefined when it may be sent. */
export function refuseRunRequest(vm: VmView, request: RunRequest): string | undefined {
  const phase = vm.status?.phase;
  const strategy = vm.spec.runStrategy;
  const pending = vm.metadata.annotations?.['keyvirt.io/request'];
  if (pending !== undefined) return `${where(vm)} already has a pending "${pending}" request; wait until the operator has taken it`;
  switch (request) {
    case 'start':
      if (phase !== undefined && RUNNING_PHASES.has(phase)) return `${where(vm)} is already running (phase ${phase})`;
      return undefined;
    case 'stop':
      if (phase === 'Stopped' || (strategy === 'Halted' && phase === undefined)) return `${where(vm)} is already stopped`;
      return undefined;
    case 'restart':
      if (strategy === 'Halted') return `${where(vm)} is Halted: start it instead of restarting`;
      return undefined;
  }
}

/** Whether the VM has reached what the request asked for. */
export function runRequestDone(vm: VmView, request: RunRequest): boolean {
  const annotations = vm.metadata.annotations ?? {};
  if (annotations['keyvirt.io/request'] !== undefined) return false;
  const phase = vm.status?.phase;
  switch (request) {
    case 'start':
      return phase === 'Running';
    case 'stop':
      return phase === 'Stopped';
    case 'restart':
      return annotations['keyvirt.io/restart-of'] === undefined && phase === 'Running';
  }
}

const PAST: Record<RunRequest, string> = { start: 'start requested', stop: 'stop requested', restart: 'restart requested' };
const GOAL: Record<RunRequest, string> = { start: 'Running', stop: 'Stopped', restart: 'Running in a new launcher pod' };

export interface WaitOptions {
  readonly wait: boolean;
  readonly timeoutSeconds: number;
  readonly pollMs?: number;
}

export async function runRequest(api: KeyVirtApi, ref: VmRef, request: RunRequest, options: WaitOptions, out: (line: string) => void): Promise<void> {
  const vm = await api.getVm(ref);
  const refusal = refuseRunRequest(vm, request);
  if (refusal !== undefined) throw new StateError(refusal);
  await api.requestRun(vm, request);
  out(`${where(vm)}: ${PAST[request]}`);
  if (!options.wait) return;
  const deadline = Date.now() + options.timeoutSeconds * 1000;
  let last = vm;
  while (Date.now() < deadline) {
    await sleep(options.pollMs ?? 1000);
    last = await api.getVm(ref);
    if (runRequestDone(last, request)) {
      out(`${where(vm)}: ${last.status?.phase ?? ''}`);
      return;
    }
  }
  throw new PluginError(
    `timed out after ${String(options.timeoutSeconds)} s waiting for ${where(vm)} to be ${GOAL[request]} (phase now: ${last.status?.phase ?? 'none'})`,
    1,
  );
}
