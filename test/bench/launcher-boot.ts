// Launcher boot overhead: "launcher start → guest agent connected" next to "bare QEMU
// start → guest agent connected" for the same test guest and the same QEMU command
// line, measured in the same run, interleaved, several repetitions; medians reported,
// the overhead as the median of each repetition's difference (launcher − bare, run back
// to back), which follows the machine's load better than a difference of medians.
//   npm run bench -- launcher-boot [--reps N]   (default 5)
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { GuestAgentClient } from '../../launcher/src/agent/client.ts';
import { chooseAccelerator } from '../../launcher/src/qemu/accelerator.ts';
import { buildQemuArgs } from '../../launcher/src/qemu/command-line.ts';
import type { Accelerator } from '../../launcher/src/qemu/command-line.ts';
import { createSharedVm, DEFAULT_VM_UID, removeSharedVm, startLauncher } from '../support/launcher-process.ts';
import { launcherMachinePlan } from '../support/launcher-machine-plan.ts';
import { testGuest } from '../support/guest.ts';

const AGENT_TIMEOUT_MS = 240_000;
const silent = pino({ level: 'silent' });

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? 'NaN');
  return kb / 1024;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

/** Bare QEMU: spawn, then retry guest-sync on the agent socket until the agent answers guest-info. */
async function bareRun(accelerator: Accelerator): Promise<{ ms: number; qemuRss: number }> {
  // The same guest and command line as the launcher run: a fresh raw-disk VM, planned as the launcher plans it.
  const vm = await createSharedVm({ diskFormat: 'raw', uid: DEFAULT_VM_UID });
  const plan = await launcherMachinePlan(vm, accelerator, vm.storageDir);
  const args = buildQemuArgs(plan);
  const agentSocket = plan.sockets.guestAgent;
  if (agentSocket === undefined) throw new Error('the test VM has no guest-agent channel');
  const started = Date.now();
  const qemu = spawn('qemu-system-x86_64', args, { stdio: 'ignore' });
  const exited = once(qemu, 'exit');
  try {
    for (;;) {
      if (Date.now() - started > AGENT_TIMEOUT_MS) throw new Error('bare QEMU: the agent never answered');
      if (qemu.exitCode !== null) throw new Error(`bare QEMU exited with ${qemu.exitCode}`);
      const client = new GuestAgentClient({ path: agentSocket, logger: silent, syncTimeoutMs: 2000 });
      try {
        await client.connect();
        await client.info();
        const ms = Date.now() - started;
        client.close();
        return { ms, qemuRss: await rssMiB(qemu.pid ?? -1) };
      } catch {
        client.close();
        await sleep(500);
      }
    }
  } finally {
    if (qemu.exitCode === null) {
      qemu.kill('SIGKILL');
      await exited;
    }
    await removeSharedVm(vm);
  }
}

/**
 * The launcher: spawn `node launcher/src/main.ts` (the clock starts at the spawn; the
 * disk and configuration are prepared before, as for the bare run), follow its event
 * stream until the agent is connected.
 */
async function launcherRun(): Promise<{ ms: number; toQemuMs: number; launcherRss: number; qemuRss: number; accel: string }> {
  const launcher = await startLauncher({ env: { KEYVIRT_LOG_LEVEL: 'info' } });
  const started = launcher.startedAt;
  try {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), AGENT_TIMEOUT_MS);
    let ms: number | undefined;
    let qemuPid: number | undefined;
    let accel = '';
    try {
      for await (const event of launcher.client.events(ac.signal)) {
        if (event.type !== 'status') continue;
        qemuPid = event.status.qemu.pid ?? qemuPid;
        accel = event.status.accelerator;
        if (event.status.guestAgent.connected) {
          ms = Date.now() - started;
          break;
        }
        if (event.status.phase === 'Failed') throw new Error(`launcher failed: ${event.status.message ?? ''}`);
      }
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
    if (ms === undefined || qemuPid === undefined) throw new Error('launcher: the agent never connected');
    const spawnedAt = launcher.logs().find((l) => l.msg === 'qemu spawned')?.time;
    const toQemuMs = typeof spawnedAt === 'number' ? spawnedAt - started : NaN;
    return { ms, toQemuMs, launcherRss: await rssMiB(launcher.process.pid ?? -1), qemuRss: await rssMiB(qemuPid), accel };
  } finally {
    await launcher.dispose();
  }
}

export async function main(args: readonly string[]): Promise<void> {
  const repsFlag = args.indexOf('--reps');
  const reps = repsFlag >= 0 ? Number(args[repsFlag + 1]) : 5;
  if (!Number.isInteger(reps) || reps < 1) throw new Error('--reps must be a positive integer');
  await testGuest(); // build before the clock starts
  const { accelerator } = await chooseAccelerator(true);
  const bare: number[] = [];
  const launched: number[] = [];
  const toQemu: number[] = [];
  const launcherRss: number[] = [];
  const qemuRss: number[] = [];
  let accel: string = accelerator;
  for (let i = 0; i < reps; i++) {
    const b = await bareRun(accelerator);
    bare.push(b.ms);
    const l = await launcherRun();
    launched.push(l.ms);
    toQemu.push(l.toQemuMs);
    launcherRss.push(l.launcherRss);
    qemuRss.push(l.qemuRss);
    accel = l.accel;
    process.stdout.write(`rep ${i + 1}/${reps}: bare_ms=${b.ms} launcher_ms=${l.ms} launcher_to_qemu_spawn_ms=${l.toQemuMs} launcher_rss_mib=${l.launcherRss.toFixed(1)} qemu_rss_mib=${l.qemuRss.toFixed(1)} (bare qemu_rss_mib=${b.qemuRss.toFixed(1)})\n`);
  }
  const bareMs = median(bare);
  // Load on a shared machine moves single boots by many seconds; the launcher's own share
  // before QEMU runs (node start, configuration, probes) is the steadier number.
  process.stdout.write(`launcher-boot: load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}; median launcher start → QEMU spawn ${Math.round(median(toQemu))} ms\n`);
  const launcherMs = median(launched);
  process.stdout.write(
    `BENCH launcher-boot bare_ms=${Math.round(bareMs)} launcher_ms=${Math.round(launcherMs)} overhead_ms=${Math.round(median(launched.map((l, i) => l - (bare[i] ?? NaN))))} ` +
      `launcher_rss_mib=${median(launcherRss).toFixed(1)} qemu_rss_mib=${median(qemuRss).toFixed(1)} accel=${accel}\n`,
  );
}
