// The launcher process (loaded by main.ts): one VM per launcher pod. Reads its
// configuration and runs the VM (run-vm.ts: QEMU under supervision, the HTTP API), and
// exits with a code the pod's restart policy can act on once the VM has stopped
// (see exit-codes.ts).
import { pino } from 'pino';
import type { Logger } from 'pino';
import { configPathFrom, ConfigError, loadLauncherConfig } from './config.ts';
import { EXIT_CODES } from './exit-codes.ts';
import { readToken, TokenFileError } from './http/auth.ts';
import { VmRun } from './run-vm.ts';
import { installSafetyNet } from './safety-net.ts';

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
  const run = new VmRun({ config, token, logger: log });
  installSafetyNet({
    source: process,
    log: log.child({ component: 'safety-net' }),
    guestRunning: () => {
      const launched = run.launched;
      return launched !== undefined && launched.supervisor.status.qemu.pid !== undefined && !['Stopped', 'Failed'].includes(launched.supervisor.phase);
    },
    exit: (code) => process.exit(code),
    exitCode: EXIT_CODES.internal,
  });
  const onSignal = (signal: NodeJS.Signals): void => run.stop(signal);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return run.exitCode;
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
