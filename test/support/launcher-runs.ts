// What the launcher benchmarks share: the median of a series, and a launcher followed
// until its guest agent is connected.
import type { LauncherProcess } from './launcher-process.ts';

const AGENT_TIMEOUT_MS = 240_000;

/** Median of the finite values (a step missing from a log is NaN, and left out). */
export function median(values: readonly number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

/** Follows a launcher's event stream until its agent is connected: when (ms since spawn), QEMU's pid, the accelerator. */
export async function untilAgentConnected(launcher: LauncherProcess): Promise<{ ms: number; qemuPid: number; accel: string }> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), AGENT_TIMEOUT_MS);
  let qemuPid: number | undefined;
  let accel = '';
  try {
    for await (const event of launcher.client.events(ac.signal)) {
      if (event.type !== 'status') continue;
      qemuPid = event.status.qemu.pid ?? qemuPid;
      accel = event.status.accelerator;
      if (event.status.guestAgent.connected && qemuPid !== undefined) return { ms: Date.now() - launcher.startedAt, qemuPid, accel };
      if (event.status.phase === 'Failed') throw new Error(`launcher failed: ${event.status.message ?? ''}`);
    }
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  throw new Error(`launcher ${launcher.name}: the agent never connected`);
}
