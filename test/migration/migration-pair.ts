// How the migration suites start: a fresh VM running under a source launcher in the
// root namespace (agent connected, counter going) and a peer network namespace, another
// "host", for the migration-target launcher. Everything is removed after the test.
import type { TestContext } from 'node:test';
import type { CounterRecord } from '../support/guest.ts';
import { createPeerHost, type PeerHost } from '../support/netns.ts';
import { createSharedVm, removeSharedVm, startLauncher, waitForCounter, waitForStatus, type LauncherProcess, type SharedVm } from '../support/launcher-process.ts';

export interface RunningSource {
  readonly vm: SharedVm;
  readonly peer: PeerHost;
  readonly source: LauncherProcess;
  /** The first `counters` records of the source's boot. */
  readonly records: readonly CounterRecord[];
  readonly bootId: string;
}

export interface RunningSourceOptions {
  /** The source launcher's name; `target` names the target launcher. */
  readonly name: string;
  readonly bootTimeoutMs: number;
  /** Counter records to wait for once the agent is connected. */
  readonly counters: number;
}

/** Starts the source of a migration and waits until its guest runs with its agent and counts. */
export async function runningSource(t: TestContext, o: RunningSourceOptions): Promise<RunningSource> {
  const vm = await createSharedVm();
  t.after(() => removeSharedVm(vm));
  const peer = await createPeerHost();
  t.after(() => peer.destroy());
  const source = await startLauncher({ vm, mode: 'run', address: peer.rootAddress, name: o.name });
  t.after(() => source.dispose());
  t.diagnostic(`accelerator=${(await source.client.info()).accelerator}`);
  await waitForStatus(source, (s) => s.phase === 'Running' && s.guestAgent.connected, o.bootTimeoutMs, 'Running with the agent connected');
  const records = await waitForCounter(source, o.counters, o.bootTimeoutMs);
  return { vm, peer, source, records, bootId: records[0]?.bootId ?? '' };
}

/** Starts a migration-target launcher of the source's VM inside the peer host. */
export async function peerTarget(t: TestContext, run: RunningSource, name: string): Promise<LauncherProcess> {
  const target = await startLauncher({ vm: run.vm, mode: 'migration-target', address: run.peer.address, netnsExec: run.peer.exec, name });
  t.after(() => target.dispose());
  return target;
}
