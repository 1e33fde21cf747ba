// The launcher process (loaded by main.ts): one VM per launcher pod. Reads its
// configuration, starts QEMU under supervision, serves the HTTP API, and exits with a
// code the pod's restart policy can act on once the VM has stopped (see exit-codes.ts).
import { pino } from 'pino';
import type { Logger } from 'pino';
import { configPathFrom, ConfigError, loadLauncherConfig } from './config.ts';
import { EXIT_CODES } from './exit-codes.ts';
import { readToken, TokenFileError } from './http/auth.ts';
import { launch } from './launch.ts';
import { PodHost } from './pod/pod-host.ts';
import type { Launch } from './launch.ts';
import { installSafetyNet } from './safety-net.ts';
import { terminate } from './termination.ts';

/** How long the API stays up after the VM has stopped, so the final status can be read. */
const FINAL_STATUS_LINGER_MS = 1000;

async function run(logger: Logger): Promise<number> {
  let configPath: string;
  let token: string;
  let config;
  try {
    configPath = configPathFrom(process.argv.slice(2), process.env);
    config = await loadLauncherConfig(configPath);
    token = await readToken(config.tokenFile);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof TokenFileError) {
      logger.fatal({ err }, 'invalid configuration');
      return EXIT_CODES.invalidConfig;
    }
    throw err;
  }
  const log = logger.child({ vm: `${config.vm.namespace}/${config.vm.name}`, uid: config.vm.uid });
  let launched: Launch | undefined;
  installSafetyNet({
    source: process,
    log: log.child({ component: 'safety-net' }),
    guestRunning: () => launched !== undefined && launched.supervisor.status.qemu.pid !== undefined && !['Stopped', 'Failed'].includes(launched.supervisor.phase),
    exit: (code) => process.exit(code),
    exitCode: EXIT_CODES.internal,
  });
  let stopping = false;
  let terminating: Promise<void> | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    log.info({ signal }, 'termination requested; shutting the VM down');
    stopping = true;
    if (launched === undefined || terminating !== undefined) return;
    const { supervisor, migration } = launched;
    terminating = terminate({ vm: supervisor, migrations: migration, gracePeriodMs: config.terminationGracePeriodSeconds * 1000, logger: log }).catch(
      (err: unknown) => log.error({ err }, 'termination failed'),
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // QEMU held by the pod (ADR 0131): the pod's SIGTERM arrives as its stop request, and
  // the pod's PID 1 exits with the code this launcher would have exited with.
  const pod = config.qemu.host === 'pod' ? new PodHost({ stateDir: config.stateDir, logger: log }) : undefined;
  const podWatch = new AbortController();
  const podExit = async (code: number): Promise<number> => {
    podWatch.abort();
    await pod?.exitWith(code).catch((err: unknown) => log.warn({ err }, "could not pass the exit code to the pod's process"));
    return code;
  };
  if (pod !== undefined) {
    void pod.stopRequested(podWatch.signal).then(
      () => onSignal('SIGTERM'),
      () => undefined,
    );
  }
  try {
    launched = await launch({ config, token, logger: log, ...(pod === undefined ? {} : { podHost: pod }) });
  } catch (err) {
    // Terminated before QEMU ran (e.g. while waiting for a storage lease): nothing failed.
    if (stopping) {
      log.info({ err }, 'terminated before the VM started');
      return podExit(EXIT_CODES.stopped);
    }
    log.fatal({ err }, 'the VM could not be started');
    return podExit(EXIT_CODES.startFailed);
  }
  if (stopping) onSignal('SIGTERM');
  const final = await launched.supervisor.finished();
  log.info({ phase: final.phase, reason: final.reason, message: final.message }, 'vm ended');
  await new Promise((resolve) => setTimeout(resolve, FINAL_STATUS_LINGER_MS));
  await launched.server.close();
  return podExit(final.phase === 'Stopped' ? EXIT_CODES.stopped : EXIT_CODES.vmFailed);
}

const logger = pino({ name: 'keyvirt-launcher', level: process.env.KEYVIRT_LOG_LEVEL ?? 'info' });
run(logger).then(
  (code) => {
    process.exitCode = code;
    // Pending timers (agent polls) must not keep a finished launcher alive.
    setImmediate(() => process.exit(code));
  },
  (err: unknown) => {
    logger.fatal({ err }, 'launcher failed');
    process.exit(EXIT_CODES.internal);
  },
);
