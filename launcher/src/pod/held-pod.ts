// A VM run for a pod whose PID 1 holds QEMU, from outside the pod (a node agent: ADR
// 0134). The pod is named by its PID 1 as the node's procfs shows it; its configuration
// and token are read from the pod's own Secret volume through its held root (ADR 0132),
// so the agent needs no access to Secrets, and they are checked against the pod the API
// server placed on the node before anything starts.
import path from 'node:path';
import type { Logger } from 'pino';
import { LEASE_HOLDER_ENV, LEASE_NODE_ENV, type LauncherConfig } from '../api/config.ts';
import { ConfigError, parseLauncherConfig } from '../config.ts';
import { MAX_TOKEN_CHARS, tokenLengthProblem } from '../http/auth.ts';
import { EXIT_CODES } from '../exit-codes.ts';
import { VmRun } from '../run-vm.ts';
import { POD_FILES, PodHost, readPodFile } from './pod-host.ts';
import { PodSecretError, readPodSecretFile } from './pod-secret.ts';
import { PodRoot } from './pod-root.ts';

/** The largest launcher configuration read from a pod (a VM spec is bounded well below). */
const MAX_CONFIG_BYTES = 1024 * 1024;

export interface HeldPod {
  /** The node's procfs as this process sees it (`/proc`, or the host's mounted elsewhere). */
  readonly procRoot: string;
  /** The pod's PID 1 in that procfs. */
  readonly pid: number;
  /** The launcher configuration's path in the pod. */
  readonly configFile: string;
  /** The state directory's path in the pod, where a refused pod is told to exit. */
  readonly stateDir: string;
  /** What the API server says of the pod: the configuration must be this VM's. */
  readonly expect: { readonly namespace: string; readonly vmName: string; readonly vmUid: string };
  /** The pod's UID and node as the API server has them: an HA VM's lease identity (ADR 0136). */
  readonly pod: { readonly uid: string; readonly node: string };
  readonly logger: Logger;
}

async function readSecret(root: PodRoot, podPath: string, maxBytes: number): Promise<string> {
  const dir = await root.directory(path.posix.dirname(podPath));
  try {
    return (await readPodSecretFile(dir, path.posix.basename(podPath), maxBytes)).toString('utf8');
  } finally {
    await dir.close();
  }
}

/** The pod's configuration, read and checked against the pod the API server placed. */
async function readConfig(root: PodRoot, held: HeldPod): Promise<{ config: LauncherConfig; token: string }> {
  const text = await readSecret(root, held.configFile, MAX_CONFIG_BYTES);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`the pod's ${held.configFile} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  const config = parseLauncherConfig(json, `the pod's ${held.configFile}`);
  const { namespace, vmName, vmUid } = held.expect;
  if (config.vm.namespace !== namespace || config.vm.name !== vmName || config.vm.uid !== vmUid) {
    throw new ConfigError(`the pod's configuration names VM ${config.vm.namespace}/${config.vm.name} (${config.vm.uid}), not ${namespace}/${vmName} (${vmUid})`);
  }
  if (config.qemu.host !== 'pod') throw new ConfigError("the pod's configuration does not hold QEMU in the pod (qemu.host must be \"pod\")");
  const token = (await readSecret(root, config.tokenFile, MAX_TOKEN_CHARS + 16)).trim();
  const problem = tokenLengthProblem(token);
  if (problem !== undefined) throw new ConfigError(`the token in the pod's ${config.tokenFile} is ${problem}`);
  return { config, token };
}

export type HeldRun = VmRun;

export class HeldPodError extends Error {
  override name = 'HeldPodError';
}

/** Tells a pod to exit with `code`, its QEMU killed first when `kill`. */
async function endPod(root: PodRoot, held: HeldPod, code: number, kill: boolean): Promise<void> {
  const state = await root.directory(held.stateDir);
  try {
    const pod = new PodHost({ stateDir: state.descriptorPath, logger: held.logger });
    if (kill) await pod.send('kill');
    await pod.exitWith(code);
  } finally {
    await state.close();
  }
}

/** How long a pod's script, found running, may take to open its FIFO. */
const POD_READY_TIMEOUT_MS = 10_000;

/** What a pod's state directory says of its QEMU: never started, running, or ended. */
export type HeldQemu = 'none' | 'running' | 'ended';

/**
 * Waits for the pod's script to read its FIFO (the agent may find it a moment after it
 * started), then says whether QEMU was started in this pod before (by an earlier agent):
 * running while its pid is written and no exit, ended once its exit is.
 */
async function earlierQemu(root: PodRoot, held: HeldPod): Promise<HeldQemu> {
  const state = await root.directory(held.stateDir);
  try {
    await new PodHost({ stateDir: state.descriptorPath, logger: held.logger }).ready(POD_READY_TIMEOUT_MS);
    if ((await readPodFile(state.entry(POD_FILES.exit))) !== undefined) return 'ended';
    return (await readPodFile(state.entry(POD_FILES.pid))) !== undefined ? 'running' : 'none';
  } finally {
    await state.close();
  }
}

/**
 * Starts the VM run of a held pod. Rejects when its configuration is unusable: nothing
 * started, and the pod told to exit with the launcher's invalid-configuration code.
 */
export async function runHeldPod(held: HeldPod): Promise<HeldRun> {
  const proc = path.join(held.procRoot, String(held.pid));
  const root = await PodRoot.open(path.join(proc, 'root'));
  let started = false;
  let earlier: HeldQemu = 'none';
  try {
    // An agent that restarts finds the QEMUs its predecessor started (ADR 0135): a running
    // one is adopted; one that ended while no agent watched it is ended Failed, since
    // nobody saw why it ended.
    earlier = await earlierQemu(root, held);
    const { config, token } = await readConfig(root, held);
    if (earlier === 'ended') throw new HeldPodError('QEMU ended in this pod while no node agent followed it: the VM is ended');
    const adopt = earlier === 'running';
    if (adopt) held.logger.info("adopting the QEMU an earlier node agent started in this pod");
    const run = new VmRun({
      config, token, logger: held.logger,
      outside: { root, netns: path.join(proc, 'ns', 'net') },
      leaseEnv: { [LEASE_HOLDER_ENV]: held.pod.uid, [LEASE_NODE_ENV]: held.pod.node },
      ...(adopt ? { adopt } : {}),
    });
    started = true;
    void run.exitCode.finally(() => root.close()).catch(() => undefined);
    return run;
  } catch (err) {
    const code = earlier === 'ended' ? EXIT_CODES.vmFailed : err instanceof ConfigError || err instanceof PodSecretError ? EXIT_CODES.invalidConfig : EXIT_CODES.startFailed;
    // A QEMU left running is killed with the refused pod: nothing would follow it.
    await endPod(root, held, code, earlier !== 'none').catch((why: unknown) => held.logger.warn({ err: why }, 'could not tell the refused pod to exit'));
    throw err;
  } finally {
    if (!started) await root.close();
  }
}
