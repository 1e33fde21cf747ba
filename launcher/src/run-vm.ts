// One VM from start to its exit code, as the launcher process runs it in its pod and as
// a node agent runs it for a pod that holds QEMU (ADRs 0131, 0134): launch, stop on
// request (a signal, or the pod's stop request when QEMU is held by the pod's PID 1),
// wait for the end, keep the API up for the final status, and hand the exit code to the
// pod's PID 1 when QEMU is held by it.
import type { Logger } from 'pino';
import type { LauncherConfig } from './api/config.ts';
import { EXIT_CODES } from './exit-codes.ts';
import { launch, type Launch, type LaunchOptions } from './launch.ts';
import { PodHost } from './pod/pod-host.ts';
import type { PodDirectory } from './pod/pod-root.ts';
import type { OutsidePod } from './pod/outside-view.ts';
import { terminate } from './termination.ts';

/** How long the API stays up after the VM has stopped, so the final status can be read. */
const FINAL_STATUS_LINGER_MS = 1000;

export interface RunVmOptions {
  readonly config: LauncherConfig;
  readonly token: string;
  readonly logger: Logger;
  /** The pod, when this runs outside it (a node agent). */
  readonly outside?: OutsidePod;
  /** The pod's QEMU already runs (an earlier agent started it): attach to it (ADR 0135). */
  readonly adopt?: boolean;
  /** The pod's lease identity when this runs outside it (its UID and node, ADR 0136). */
  readonly leaseEnv?: NodeJS.ProcessEnv;
  /** The metrics token's file as this process reads it (outside the pod: none unless given). */
  readonly metricsTokenFile?: string;
  /** Overrides the final-status linger (tests). */
  readonly lingerMs?: number;
}

/** A VM run: `exitCode` settles once the VM has ended and the pod was told. */
export class VmRun {
  readonly #o: RunVmOptions;
  readonly #log: Logger;
  #launched: Launch | undefined;
  #stopping = false;
  #terminating: Promise<void> | undefined;
  readonly #podWatch = new AbortController();
  /** Aborts a wait before QEMU starts (the lease) once the VM is to stop. */
  readonly #stopWait = new AbortController();
  readonly exitCode: Promise<number>;

  constructor(options: RunVmOptions) {
    this.#o = options;
    this.#log = options.logger;
    this.exitCode = this.#run();
  }

  /** The launched VM, once QEMU answers. */
  get launched(): Launch | undefined {
    return this.#launched;
  }

  /** Shuts the VM down within its grace period (the pod's deletion); again is a no-op. */
  stop(reason: string): void {
    // A signal is logged as `signal`, as the launcher always has; any other cause as `reason`.
    this.#log.info(/^SIG[A-Z]+$/.test(reason) ? { signal: reason } : { reason }, 'termination requested; shutting the VM down');
    this.#stopping = true;
    this.#stopWait.abort(new Error('termination requested before the VM started'));
    const launched = this.#launched;
    if (launched === undefined || this.#terminating !== undefined) return;
    const { supervisor, migration } = launched;
    this.#terminating = terminate({
      vm: supervisor,
      migrations: migration,
      gracePeriodMs: this.#o.config.terminationGracePeriodSeconds * 1000,
      logger: this.#log,
    }).catch((err: unknown) => this.#log.error({ err }, 'termination failed'));
  }

  /**
   * The node agent running this VM stops, and QEMU runs on in its pod for the next agent
   * (ADR 0135): an HA VM's lease gets its parting renewal (ADR 0138). Resolves with
   * whether it was written; nothing else changes (the process is about to end).
   */
  async part(): Promise<boolean> {
    const lease = this.#launched?.lease;
    if (lease === undefined || this.#stopping) return false;
    return lease.part();
  }

  async #podHost(): Promise<{ pod: PodHost | undefined; held: PodDirectory | undefined }> {
    const { config, outside } = this.#o;
    if (config.qemu.host !== 'pod') return { pod: undefined, held: undefined };
    // Outside the pod the state directory is held, never named by path (ADR 0132).
    const held = outside === undefined ? undefined : await outside.root.directory(config.stateDir);
    return { pod: new PodHost({ stateDir: held?.descriptorPath ?? config.stateDir, logger: this.#log }), held };
  }

  async #run(): Promise<number> {
    const { config, token, outside } = this.#o;
    const log = this.#log;
    const { pod, held } = await this.#podHost();
    const podExit = async (code: number): Promise<number> => {
      this.#podWatch.abort();
      await pod?.exitWith(code).catch((err: unknown) => log.warn({ err }, "could not pass the exit code to the pod's process"));
      await held?.close();
      return code;
    };
    // QEMU held by the pod (ADR 0131): the pod's SIGTERM arrives as its stop request.
    void pod?.stopRequested(this.#podWatch.signal).then(
      () => this.stop('the pod is terminating'),
      () => undefined,
    );
    const options: LaunchOptions = {
      config, token, logger: log,
      ...(pod === undefined ? {} : { podHost: pod }),
      ...(outside === undefined ? {} : { outside }),
      ...(this.#o.adopt === true ? { adopt: true } : {}),
      ...(this.#o.leaseEnv === undefined ? {} : { leaseEnv: this.#o.leaseEnv }),
      stopSignal: this.#stopWait.signal,
      ...(this.#o.metricsTokenFile === undefined ? {} : { metricsTokenFile: this.#o.metricsTokenFile }),
    };
    try {
      this.#launched = await launch(options);
    } catch (err) {
      // An adopted QEMU that cannot be followed (its lease lost, QMP silent) is ended:
      // nothing would supervise it (ADRs 0135, 0136).
      if (this.#o.adopt === true) await pod?.send('kill').catch((why: unknown) => log.warn({ err: why }, 'could not ask the pod to kill the adopted QEMU'));
      // Terminated before QEMU ran (e.g. while waiting for a storage lease): nothing failed.
      if (this.#stopping) {
        log.info({ err }, 'terminated before the VM started');
        return podExit(EXIT_CODES.stopped);
      }
      log.fatal({ err }, 'the VM could not be started');
      return podExit(EXIT_CODES.startFailed);
    }
    if (this.#stopping) this.stop('termination requested while starting');
    const final = await this.#launched.supervisor.finished();
    log.info({ phase: final.phase, reason: final.reason, message: final.message }, 'vm ended');
    await new Promise((resolve) => setTimeout(resolve, this.#o.lingerMs ?? FINAL_STATUS_LINGER_MS));
    await this.#launched.server.close();
    return podExit(final.phase === 'Stopped' ? EXIT_CODES.stopped : EXIT_CODES.vmFailed);
  }
}
