// The node agent's held launchers (ADR 0134): for every launcher pod the API server
// places on this node that asks for it (label keyvirt.io/launcher-host=node-agent), the
// agent runs the launcher's work for the VM — QEMU's command line, QMP, the guest agent,
// the API in the pod's network namespace — while the pod's PID 1 holds QEMU (ADR 0131).
// Each pass lists the node's held pods; a pod whose PID 1 runs is started once. A run
// ends when its VM does; its pod then exits with the launcher's exit code.
// An agent that starts adopts the QEMUs a predecessor started in its node's held pods
// (ADR 0135), HA VMs among them (ADR 0136), and stops the runs of pods that are gone or
// being deleted. An agent that stops leaves its HA VMs' leases with a parting renewal
// for the next one (ADR 0138). Not yet (ADR 0130's order): migration targets, taps.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { z } from 'zod';
import { runHeldPod, type HeldPod, type HeldRun } from '@keyvirt/launcher/held';
import { LABEL_VM, LABEL_VM_UID, LAUNCHER_POD_SELECTOR } from '../../vm/names.ts';
import { CONFIG_FILE, STATE_DIR } from '../../vm/launcher-pod.ts';
import { LABEL_LAUNCHER_HOST, LAUNCHER_HOST_NODE_AGENT } from '../../vm/held-launcher.ts';
import { findHeldPodInits } from './held-pod-process.ts';

export interface HeldLauncherApi {
  listPods: (fieldSelector: string, labelSelector: string) => Promise<unknown>;
}

export interface HeldLauncherOptions {
  readonly api: HeldLauncherApi;
  readonly node: string;
  /** The node's procfs as the agent sees it. */
  readonly procRoot: string;
  readonly intervalMs: number;
  readonly log: Logger;
  /** Starts a pod's VM run (runHeldPod; tests hand in their own). */
  readonly runPod?: (held: HeldPod) => Promise<HeldPodRun>;
  /** Finds the pods' PID 1 in the node's procfs (findHeldPodInits; tests hand in their own). */
  readonly findInits?: (procRoot: string, podUids: readonly string[]) => Promise<Map<string, number>>;
}

/** What the agent does with a run: stop it, wait for its end, leave it to the next agent. */
export type HeldPodRun = Pick<HeldRun, 'stop' | 'exitCode' | 'part'>;

const HeldPodSchema = z.object({
  metadata: z.object({
    namespace: z.string().min(1),
    name: z.string().min(1),
    uid: z.string().min(1),
    labels: z.record(z.string(), z.string()).default({}),
    deletionTimestamp: z.unknown().optional(),
  }),
  spec: z.object({ nodeName: z.string().optional() }),
  status: z.object({ phase: z.string().optional() }).default({}),
});
const PodList = z.object({ items: z.array(z.unknown()) });

/** The selector of the held launcher pods. */
export const HELD_POD_SELECTOR = `${LAUNCHER_POD_SELECTOR},${LABEL_LAUNCHER_HOST}=${LAUNCHER_HOST_NODE_AGENT}`;

/** The runs of one agent, by pod UID; a UID stays known after its run ended (the pod never restarts). */
export class HeldLaunchers {
  readonly #o: HeldLauncherOptions;
  readonly #runs = new Map<string, HeldPodRun | 'ended' | 'refused'>();
  /** Runs told to stop here because their pod is gone or being deleted. */
  readonly #stopped = new Set<string>();

  constructor(options: HeldLauncherOptions) {
    this.#o = options;
  }

  /** The VM runs going on now. */
  get running(): number {
    return [...this.#runs.values()].filter((r) => typeof r !== 'string').length;
  }

  /** One pass over the node's held pods. */
  async pass(): Promise<void> {
    const { api, node, procRoot, log } = this.#o;
    const list = PodList.parse(await api.listPods(`spec.nodeName=${node}`, HELD_POD_SELECTOR));
    const seen = new Set<string>();
    const pods = list.items.flatMap((item) => HeldPodSchema.safeParse(item).data ?? []);
    const pending = pods.map((p) => p.metadata.uid).filter((uid) => !this.#runs.has(uid));
    // One walk of the node's processes for every pod not run yet.
    const inits = pending.length === 0 ? new Map<string, number>() : await (this.#o.findInits ?? findHeldPodInits)(procRoot, pending);
    for (const { metadata, spec, status } of pods) {
      seen.add(metadata.uid);
      if (this.#runs.has(metadata.uid) || spec.nodeName !== node || status.phase === 'Succeeded' || status.phase === 'Failed') continue;
      const vmName = metadata.labels[LABEL_VM];
      const vmUid = metadata.labels[LABEL_VM_UID];
      const podLog = log.child({ namespace: metadata.namespace, pod: metadata.name, podUid: metadata.uid });
      if (vmName === undefined || vmUid === undefined) {
        this.#runs.set(metadata.uid, 'refused');
        podLog.warn('held launcher pod without its VM labels: not started');
        continue;
      }
      const pid = inits.get(metadata.uid);
      if (pid === undefined) continue; // its container has not started yet
      try {
        const run = await (this.#o.runPod ?? runHeldPod)({
          procRoot, pid, configFile: CONFIG_FILE, stateDir: STATE_DIR,
          expect: { namespace: metadata.namespace, vmName, vmUid },
          pod: { uid: metadata.uid, node },
          logger: podLog.child({ vm: `${metadata.namespace}/${vmName}`, uid: vmUid }),
        });
        this.#runs.set(metadata.uid, run);
        podLog.info({ pid }, 'running the VM of a held launcher pod');
        void run.exitCode.then(
          (code) => podLog.info({ code }, "the held pod's VM ended"),
          (err: unknown) => podLog.error({ err }, "the held pod's VM run failed"),
        ).finally(() => {
          this.#runs.set(metadata.uid, 'ended');
          this.#stopped.delete(metadata.uid);
        });
      } catch (err) {
        this.#runs.set(metadata.uid, 'refused');
        podLog.error({ err, pid }, 'held launcher pod refused');
      }
    }
    this.#stopLeft(pods);
    for (const [uid, run] of this.#runs) if (!seen.has(uid) && typeof run === 'string') this.#runs.delete(uid);
  }

  /**
   * This agent stops (its pod is deleted or updated): every run's QEMU goes on in its pod
   * for the next agent to adopt (ADR 0135), an HA VM's lease with its parting renewal
   * (ADR 0138). Resolves once each is written or refused.
   */
  async part(): Promise<void> {
    const runs = [...this.#runs].flatMap(([uid, run]) => (typeof run === 'string' || this.#stopped.has(uid) ? [] : [{ uid, run }]));
    const parted = await Promise.all(
      runs.map(({ uid, run }) =>
        run.part().catch((err: unknown) => {
          this.#o.log.warn({ err, podUid: uid }, 'parting lease renewal failed');
          return false;
        }),
      ),
    );
    this.#o.log.info({ runs: runs.length, leasesParted: parted.filter(Boolean).length }, 'leaving the held VMs to the next agent');
  }

  /**
   * Stops the runs whose pod is gone or being deleted. A pod deleted before its QEMU
   * started has its script exit at once, with no stop request: its run would otherwise
   * wait on for a lease and keep its API listening (ADR 0136). A run already stopping
   * through its pod's request is not disturbed (a stop is asked once).
   */
  #stopLeft(pods: readonly z.infer<typeof HeldPodSchema>[]): void {
    const byUid = new Map(pods.map((p) => [p.metadata.uid, p]));
    for (const [uid, run] of this.#runs) {
      if (typeof run === 'string' || this.#stopped.has(uid)) continue;
      const pod = byUid.get(uid);
      if (pod !== undefined && pod.metadata.deletionTimestamp === undefined) continue;
      this.#stopped.add(uid);
      this.#o.log.info({ podUid: uid, pod: pod?.metadata.name }, pod === undefined ? 'held pod gone: stopping its VM run' : 'held pod being deleted: stopping its VM run');
      run.stop(pod === undefined ? 'the pod is gone' : 'the pod is being deleted');
    }
  }
}

/**
 * Runs passes until `signal` aborts; the VMs go on in their pods, HA ones under a parting
 * renewal of their leases (their fence or the next agent ends them).
 */
export async function runHeldLaunchers(o: HeldLauncherOptions, signal: AbortSignal, held = new HeldLaunchers(o)): Promise<void> {
  o.log.info({ node: o.node, intervalMs: o.intervalMs }, 'held launchers running');
  while (!signal.aborted) {
    try {
      await held.pass();
    } catch (err) {
      o.log.warn({ err }, 'held launcher pass failed');
    }
    await sleep(o.intervalMs, undefined, { signal }).catch(() => undefined);
  }
  await held.part();
}
