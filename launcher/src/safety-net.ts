// The launcher's last line of defence against its own bugs. QEMU runs as the launcher's
// child in the launcher's container: if the launcher exits, the guest dies with it. So
// while a guest runs, an error nobody caught (a throw in a callback, a rejected promise
// nobody awaited) is logged and counted, and the launcher carries on supervising QEMU —
// a launcher with one broken request path is worth more than a rebooted VM. Before QEMU
// runs and after it has ended there is no guest to protect: the error ends the process
// with the internal exit code, as Node would, so that the pod restarts clean.
// Request errors never get here: the HTTP server turns them into error answers.
import type { Logger } from 'pino';

/** The part of `process` the net listens on. */
export interface UncaughtErrorSource {
  on(event: 'uncaughtException', listener: (err: Error, origin: string) => void): unknown;
  on(event: 'unhandledRejection', listener: (reason: unknown) => void): unknown;
}

export interface SafetyNetOptions {
  source: UncaughtErrorSource;
  log: Logger;
  /** Whether a guest is running (QEMU spawned and not yet exited). */
  guestRunning: () => boolean;
  /** Ends the process; called only when no guest runs. */
  exit: (code: number) => void;
  exitCode: number;
  /** What is logged when an error is survived, and when it ends the process (the launcher's words by default). */
  messages?: { survived: string; exiting: string };
}

export interface SafetyNet {
  /** Errors logged and survived so far. */
  readonly survived: number;
}

export function installSafetyNet(options: SafetyNetOptions): SafetyNet {
  const { log } = options;
  const messages = options.messages ?? { survived: 'uncaught error; the guest keeps running', exiting: 'uncaught error with no guest running; exiting' };
  let survived = 0;
  const onError = (err: unknown, origin: string): void => {
    if (options.guestRunning()) {
      survived++;
      log.error({ err, origin, survived }, messages.survived);
      return;
    }
    log.fatal({ err, origin }, messages.exiting);
    options.exit(options.exitCode);
  };
  options.source.on('uncaughtException', (err, origin) => onError(err, origin));
  options.source.on('unhandledRejection', (reason) => onError(reason, 'unhandledRejection'));
  return {
    get survived(): number {
      return survived;
    },
  };
}
