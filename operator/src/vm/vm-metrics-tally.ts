// The VM gauges' figures, kept on change: VMs per phase and each running launcher's memory
// overhead, updated by the VM and launcher-pod informers' events. A scrape reads them
// as they are and walks no cache, so with nothing changing it costs the same at 10 VMs
// and at 10,000, and an idle operator does no work per VM.
import type { VirtualMachine } from '@keyvirt/crds';
import type { VmPhaseSource } from '../metrics.ts';
import type { Pod } from '../runtime/core-schemas.ts';
import type { InformerHandlers } from '../runtime/informer.ts';
import { keyOf } from '../runtime/resource.ts';
import { ANNOTATION_MEMORY_OVERHEAD, LABEL_VM } from './names.ts';

/** What one running launcher pod contributes: its VM's key and the overhead it requests. */
interface LauncherOverhead {
  vm: string;
  bytes: number;
}

export class VmMetricsTally implements VmPhaseSource {
  readonly #phaseOf = new Map<string, string>();
  readonly #phases = new Map<string, number>();
  readonly #pods = new Map<string, LauncherOverhead>();
  /** Per VM, its running launchers' overheads by pod (two while a migration runs). */
  readonly #podsOfVm = new Map<string, Map<string, number>>();
  readonly #overheads = new Map<string, number>();
  #revision = 0;

  readonly vmHandlers: InformerHandlers<VirtualMachine> = {
    onAdd: (vm) => this.#setPhase(keyOf(vm.metadata), vm.status?.phase ?? 'Unknown'),
    onUpdate: (_old, vm) => this.#setPhase(keyOf(vm.metadata), vm.status?.phase ?? 'Unknown'),
    onDelete: (vm) => this.#setPhase(keyOf(vm.metadata), undefined),
  };

  readonly podHandlers: InformerHandlers<Pod> = {
    onAdd: (pod) => this.#setPod(keyOf(pod.metadata), overheadOf(pod)),
    onUpdate: (_old, pod) => this.#setPod(keyOf(pod.metadata), overheadOf(pod)),
    onDelete: (pod) => this.#setPod(keyOf(pod.metadata), undefined),
  };

  phaseCounts(): ReadonlyMap<string, number> {
    return this.#phases;
  }

  launcherOverheads(): ReadonlyMap<string, number> {
    return this.#overheads;
  }

  overheadRevision(): number {
    return this.#revision;
  }

  #setPhase(key: string, phase: string | undefined): void {
    const was = this.#phaseOf.get(key);
    if (was === phase) return;
    if (was !== undefined) {
      const n = (this.#phases.get(was) ?? 1) - 1;
      if (n === 0) this.#phases.delete(was);
      else this.#phases.set(was, n);
    }
    if (phase === undefined) {
      this.#phaseOf.delete(key);
      return;
    }
    this.#phaseOf.set(key, phase);
    this.#phases.set(phase, (this.#phases.get(phase) ?? 0) + 1);
  }

  #setPod(podKey: string, now: LauncherOverhead | undefined): void {
    const was = this.#pods.get(podKey);
    if (was?.vm === now?.vm && was?.bytes === now?.bytes) return;
    if (was !== undefined) {
      this.#pods.delete(podKey);
      const of = this.#podsOfVm.get(was.vm);
      of?.delete(podKey);
      if (of?.size === 0) this.#podsOfVm.delete(was.vm);
      this.#refresh(was.vm);
    }
    if (now !== undefined) {
      this.#pods.set(podKey, now);
      const of = this.#podsOfVm.get(now.vm) ?? new Map<string, number>();
      of.set(podKey, now.bytes);
      this.#podsOfVm.set(now.vm, of);
      this.#refresh(now.vm);
    }
    this.#revision += 1;
  }

  /** A VM's figure is the largest its running launchers request (both pods of a migration ask about the same). */
  #refresh(vm: string): void {
    const of = this.#podsOfVm.get(vm);
    if (of === undefined) this.#overheads.delete(vm);
    else this.#overheads.set(vm, Math.max(...of.values()));
  }
}

function overheadOf(pod: Pod): LauncherOverhead | undefined {
  const annotation = pod.metadata.annotations?.[ANNOTATION_MEMORY_OVERHEAD];
  const vm = pod.metadata.labels?.[LABEL_VM];
  if (annotation === undefined || vm === undefined || pod.status?.phase !== 'Running') return undefined;
  const bytes = Number(annotation);
  return Number.isFinite(bytes) ? { vm: keyOf({ namespace: pod.metadata.namespace, name: vm }), bytes } : undefined;
}
