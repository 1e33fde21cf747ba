// What the work up to a burst's last launcher pod cost this machine, and what it asks of
// a machine: the CPU every process spent per VM (this benchmark's own process — the
// clients that create the VMs — set apart), how busy the cores were, and how many
// cores of this kind that work needs to fit in 60 s. A run whose cores were busy all
// along is paced by CPU: on this machine only less CPU per VM brings it sooner, and
// on another the same work takes about cluster CPU / cores.
import type { CpuWindow } from './process-cpu.ts';

/** The aim's window: every launcher pod within 60 s of the burst. */
const AIM_MS = 60_000;

/** The BENCH fields of a window that ended at the last launcher pod, each name prefixed with `prefix`. */
export function cpuBudgetFields(prefix: string, window: CpuWindow, vms: number, clientName = 'bench'): string {
  const client = window.ms.get(clientName) ?? 0;
  const cluster = window.machine.busyMs - client;
  const total = window.machine.busyMs + window.machine.idleMs;
  const byProcess = [...window.ms].map(([name, ms]) => `${name}=${(ms / vms).toFixed(1)}`).join(',');
  const busyPct = total > 0 ? ((window.machine.busyMs / total) * 100).toFixed(0) : 'n/a';
  return (
    ` ${prefix}cluster_cpu_ms_per_vm=${(cluster / vms).toFixed(1)} ${prefix}cpu_ms_per_vm=${byProcess} ` +
    `${prefix}machine_busy_pct=${busyPct} ${prefix}cores_for_60s=${(cluster / AIM_MS).toFixed(1)}`
  );
}
