// Live-migration benchmark: for an idle and a memory-dirtying test guest, KeyVirt
// migration (launcher to launcher, each hop crossing between the root and a peer
// network namespace) next to bare QEMU migration of the same guest (a plain QMP
// script on the identical machine plan, same hops). Both VMs of a scenario run side by
// side and their migrations alternate, so they share the machine's load; medians over
// the repetitions.
//   npm run bench -- migration [--reps N]
// Settings: KeyVirt's default policy (downtime schedule from 100 ms, unlimited
// bandwidth; auto-converge on for the dirtying guest); the bare script uses the same
// first downtime limit, unlimited bandwidth and the same auto-converge setting.
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import type { MigrationPolicyInput } from '../../launcher/src/api/index.ts';
import { chooseAccelerator } from '../../launcher/src/qemu/accelerator.ts';
import type { Accelerator, MachinePlan } from '../../launcher/src/qemu/command-line.ts';
import { bareMigrate, startBareQemu, type BareQemu } from '../migration/bare-qemu.ts';
import { createSharedVm, removeSharedVm, startLauncher, startMigration, waitForCounter, waitForStatus, type LauncherProcess, type SharedVm } from '../support/launcher-process.ts';
import { parseCounterLines } from '../support/guest.ts';
import { launcherMachinePlan } from '../support/launcher-machine-plan.ts';
import { createPeerHost, type PeerHost } from '../support/netns.ts';

const BOOT_TIMEOUT_MS = 240_000;
const MIGRATION_TIMEOUT_MS = 180_000;
const DIRTY_USER_DATA = '#!/bin/sh\nexec /bin/dirty 100000 64 >/dev/console 2>&1\n';
const silent = pino({ level: 'silent' });

interface Sample {
  readonly totalMs: number | null;
  readonly downtimeMs: number | null;
  readonly pauseMs: number | null;
  readonly converged: boolean;
}

interface Scenario {
  readonly name: 'idle' | 'dirty';
  readonly userData?: string;
  readonly policy: MigrationPolicyInput;
}

function median(values: readonly (number | null)[]): number | null {
  const v = values.filter((x): x is number => x !== null).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? (v[mid] ?? null) : ((v[mid - 1] ?? 0) + (v[mid] ?? 0)) / 2;
}

function fmt(v: number | null): string {
  return v === null ? 'NaN' : String(Math.round(v * 10) / 10);
}

async function waitForWorkload(serialLog: string, scenario: Scenario): Promise<void> {
  const deadline = Date.now() + BOOT_TIMEOUT_MS;
  for (;;) {
    const text = await readFile(serialLog, 'utf8').catch(() => '');
    if (parseCounterLines(text).length >= 3 && (scenario.userData === undefined || text.includes('dirty: pid='))) return;
    if (Date.now() > deadline) throw new Error(`guest workload not up within ${BOOT_TIMEOUT_MS} ms (${serialLog})`);
    await sleep(250);
  }
}

/** One VM under KeyVirt: a launcher chain hopping root ⇄ peer namespace. */
class KeyVirtChain {
  #current: LauncherProcess | undefined;
  #inPeer = false;
  #hop = 0;
  readonly vm: SharedVm;
  readonly peer: PeerHost;
  readonly scenario: Scenario;
  constructor(vm: SharedVm, peer: PeerHost, scenario: Scenario) {
    this.vm = vm;
    this.peer = peer;
    this.scenario = scenario;
  }

  async boot(): Promise<void> {
    this.#current = await startLauncher({ vm: this.vm, mode: 'run', address: this.peer.rootAddress, name: `kv-${this.scenario.name}-0` });
    await waitForStatus(this.#current, (s) => s.phase === 'Running', BOOT_TIMEOUT_MS, 'Running');
    await waitForCounter(this.#current, 3, BOOT_TIMEOUT_MS);
    await waitForWorkload(this.#current.serialLog, this.scenario);
  }

  async migrateOnce(): Promise<Sample> {
    const source = this.#current;
    if (source === undefined) throw new Error('not booted');
    const toPeer = !this.#inPeer;
    const target = await startLauncher({
      vm: this.vm,
      mode: 'migration-target',
      name: `kv-${this.scenario.name}-${++this.#hop}`,
      ...(toPeer ? { address: this.peer.address, netnsExec: this.peer.exec } : { address: this.peer.rootAddress }),
    });
    try {
      await startMigration(source, target, this.scenario.policy);
      for await (const event of source.migration.events(AbortSignal.timeout(MIGRATION_TIMEOUT_MS))) {
        if (event.type !== 'result') continue;
        const r = event.result;
        if (r.phase !== 'Succeeded') {
          await target.dispose();
          return { totalMs: null, downtimeMs: null, pauseMs: null, converged: false };
        }
        await source.exited;
        await source.dispose();
        this.#current = target;
        this.#inPeer = toPeer;
        return { totalMs: r.totalTimeMs, downtimeMs: r.downtimeMs, pauseMs: r.guestPauseMs, converged: true };
      }
      throw new Error('migration event stream ended without a result');
    } catch (err) {
      await target.dispose();
      throw err;
    }
  }

  async dispose(): Promise<void> {
    await this.#current?.dispose();
  }
}

/** The same VM under bare QEMU: QEMU processes hopping root ⇄ peer namespace, driven by a plain QMP script. */
class BareChain {
  #current: BareQemu | undefined;
  #inPeer = false;
  #plan: MachinePlan | undefined;
  readonly vm: SharedVm;
  readonly peer: PeerHost;
  readonly scenario: Scenario;
  readonly accelerator: Accelerator;
  constructor(vm: SharedVm, peer: PeerHost, scenario: Scenario, accelerator: Accelerator) {
    this.vm = vm;
    this.peer = peer;
    this.scenario = scenario;
    this.accelerator = accelerator;
  }

  async boot(): Promise<void> {
    this.#plan = await launcherMachinePlan(this.vm, this.accelerator, this.vm.storageDir);
    this.#current = await startBareQemu({ plan: this.#plan, logger: silent });
    await waitForWorkload(this.#current.serialLog, this.scenario);
  }

  async migrateOnce(): Promise<Sample> {
    const source = this.#current;
    const plan = this.#plan;
    if (source === undefined || plan === undefined) throw new Error('not booted');
    const toPeer = !this.#inPeer;
    const target = await startBareQemu({ plan, incoming: true, logger: silent, ...(toPeer ? { netnsExec: this.peer.exec } : {}) });
    const r = await bareMigrate(source.qmp, target.qmp, {
      host: toPeer ? this.peer.address : this.peer.rootAddress,
      downtimeLimitMs: 100,
      autoConverge: this.scenario.policy.autoConverge ?? false,
      timeoutMs: MIGRATION_TIMEOUT_MS,
    });
    if (r.status !== 'completed') {
      await target.stop();
      return { totalMs: null, downtimeMs: null, pauseMs: null, converged: false };
    }
    await source.stop();
    this.#current = target;
    this.#inPeer = toPeer;
    return { totalMs: r.totalTimeMs, downtimeMs: r.downtimeMs, pauseMs: r.pauseMs, converged: true };
  }

  async dispose(): Promise<void> {
    await this.#current?.stop();
  }
}

function line(label: string, s: Sample): string {
  return `${label} converged=${s.converged} total_ms=${fmt(s.totalMs)} downtime_ms=${fmt(s.downtimeMs)} pause_ms=${fmt(s.pauseMs)}`;
}

async function runScenario(scenario: Scenario, reps: number, peer: PeerHost, accelerator: Accelerator): Promise<{ bare: Sample[]; keyvirt: Sample[] }> {
  const vmOptions = scenario.userData === undefined ? {} : { userData: scenario.userData };
  const vms = [await createSharedVm(vmOptions), await createSharedVm(vmOptions)] as const;
  const bare = new BareChain(vms[0], peer, scenario, accelerator);
  const keyvirt = new KeyVirtChain(vms[1], peer, scenario);
  const out = { bare: [] as Sample[], keyvirt: [] as Sample[] };
  try {
    await Promise.all([bare.boot(), keyvirt.boot()]);
    for (let i = 0; i < reps; i++) {
      const b = await bare.migrateOnce();
      out.bare.push(b);
      process.stdout.write(`${line(`${scenario.name} bare rep=${i + 1}`, b)}\n`);
      const k = await keyvirt.migrateOnce();
      out.keyvirt.push(k);
      process.stdout.write(`${line(`${scenario.name} keyvirt rep=${i + 1}`, k)}\n`);
    }
  } finally {
    await Promise.allSettled([bare.dispose(), keyvirt.dispose()]);
    await Promise.allSettled(vms.map(removeSharedVm));
  }
  return out;
}

function medians(samples: readonly Sample[]): { total: number | null; downtime: number | null; pause: number | null } {
  return {
    total: median(samples.map((s) => s.totalMs)),
    downtime: median(samples.map((s) => s.downtimeMs)),
    pause: median(samples.map((s) => s.pauseMs)),
  };
}

export async function main(args: readonly string[]): Promise<void> {
  const repsFlag = args.indexOf('--reps');
  const reps = repsFlag >= 0 ? Math.max(1, Number(args[repsFlag + 1] ?? 5)) : 5;
  const accelerator = (await chooseAccelerator(true)).accelerator;
  const peer = await createPeerHost();
  try {
    const idle = await runScenario({ name: 'idle', policy: {} }, reps, peer, accelerator);
    const dirty = await runScenario({ name: 'dirty', userData: DIRTY_USER_DATA, policy: { autoConverge: true } }, reps, peer, accelerator);
    const [bi, ki, bd, kd] = [medians(idle.bare), medians(idle.keyvirt), medians(dirty.bare), medians(dirty.keyvirt)];
    const dirtyConverged = dirty.keyvirt.every((s) => s.converged);
    process.stdout.write(
      `dirty medians: bare_downtime_ms=${fmt(bd.downtime)} downtime_ms=${fmt(kd.downtime)} bare_pause_ms=${fmt(bd.pause)} pause_ms=${fmt(kd.pause)} bare_total_ms=${fmt(bd.total)} total_ms=${fmt(kd.total)} bare_converged=${dirty.bare.every((s) => s.converged)}\n`,
    );
    process.stdout.write(
      `BENCH migration bare_downtime_ms=${fmt(bi.downtime)} downtime_ms=${fmt(ki.downtime)} bare_pause_ms=${fmt(bi.pause)} pause_ms=${fmt(ki.pause)} bare_total_ms=${fmt(bi.total)} total_ms=${fmt(ki.total)} dirty_converged=${dirtyConverged} boot=disk accel=${accelerator}\n`,
    );
  } finally {
    await peer.destroy();
  }
}
