// What the work up to a burst's last launcher pod cost this machine, and what it asks of
// a machine: the CPU every process spent per VM (this benchmark's own process — the
// clients that create the VMs — set apart), how busy the cores were, and how many
// cores of this kind that work needs to fit in 60 s. A run whose cores were busy all
// along is paced by CPU: on this machine only less CPU per VM brings it sooner, and
// on another the same work takes about cluster CPU / cores.
import { setTimeout as sleep } from 'node:timers/promises';
import { machineCpu, type CpuWindow } from './process-cpu.ts';

/** The aim's window: every launcher pod within 60 s of the burst. */
const AIM_MS = 60_000;

/** The BENCH fields of a window that ended at the last launcher pod, each name prefixed with `prefix`. */
export function cpuBudgetFields(prefix: string, window: CpuWindow, vms: number, clientName = 'bench'): string {
  const client = window.ms.get(clientName) ?? 0;
  const cluster = window.machine.busyMs - client;
  const total = window.machine.busyMs + window.machine.idleMs;
  const byProcess = [...window.ms].map(([name, ms]) => `${name}=${(ms / vms).toFixed(1)}`).join(',');
  const busyPct = total > 0 ? ((window.machine.busyMs / total) * 100).toFixed(0) : 'n/a';
  // What no measured process spent: the kernel's own work (loopback traffic's softirqs)
  // and any other process on the machine. More than a few ms per VM is other work in
  // the run's window, and the run's cluster figure carries it.
  const measured = [...window.ms.values()].reduce((a, b) => a + b, 0);
  return (
    ` ${prefix}cluster_cpu_ms_per_vm=${(cluster / vms).toFixed(1)} ${prefix}cpu_ms_per_vm=${byProcess} ` +
    `${prefix}unmeasured_cpu_ms_per_vm=${((window.machine.busyMs - measured) / vms).toFixed(1)} ` +
    `${prefix}machine_busy_pct=${busyPct} ${prefix}cores_for_60s=${(cluster / AIM_MS).toFixed(1)}`
  );
}

/**
 * Waits until the machine is quiet — under `maxPct` % of one core busy over a `windowMs`
 * window — so that a run does not share its cores with the tail of other work (a
 * cluster that just came up, an earlier run's deletions). Gives up after `timeoutMs` and
 * says so; returns how long it waited and how busy the last window was.
 */
export async function untilMachineQuiet(
  say: (line: string) => void,
  { maxPct = 15, windowMs = 5_000, timeoutMs = 300_000 }: { maxPct?: number; windowMs?: number; timeoutMs?: number } = {},
): Promise<{ waitedMs: number; busyPct: number }> {
  const started = Date.now();
  for (;;) {
    const from = await machineCpu();
    await sleep(windowMs);
    const busyPct = (((await machineCpu()).busyMs - from.busyMs) / windowMs) * 100;
    const waitedMs = Date.now() - started;
    if (busyPct < maxPct) return { waitedMs, busyPct };
    if (waitedMs >= timeoutMs) {
      say(`the machine is still ${busyPct.toFixed(0)} % of a core busy after ${(waitedMs / 1000).toFixed(0)} s: the run shares its cores with other work`);
      return { waitedMs, busyPct };
    }
  }
}
