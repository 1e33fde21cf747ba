// The node agent's last line of defence against its own bugs (ADR 0139). The agent runs
// the launchers of every held pod of its node in one process: an error nobody caught in
// one of them (a throw in a callback, a rejected promise nobody awaited) would end the
// process, and with it the supervision, API and lease renewals of every VM on the node —
// each HA VM fenced unless the next agent is back within its lease's F. So while a held
// VM run goes on, such an error is logged and counted and the agent carries on, as a
// launcher does for its one guest (launcher/src/safety-net.ts). With no held run there is
// nothing to protect: the error ends the process with the internal exit code, as Node
// would, and the container restarts clean.
import type { Logger } from 'pino';
import { EXIT_CODES, installSafetyNet, type SafetyNet, type UncaughtErrorSource } from '@keyvirt/launcher/held';

/** What the net asks of the held launchers: whether any run goes on. */
export interface HeldRunCount {
  readonly running: number;
}

/** Installs the net on `source` (the process); `held` is absent when the agent holds no launchers. */
export function guardHeldVms(
  held: HeldRunCount | undefined,
  log: Logger,
  source: UncaughtErrorSource = process,
  exit: (code: number) => void = (code) => process.exit(code),
): SafetyNet {
  return installSafetyNet({
    source,
    log,
    guestRunning: () => (held?.running ?? 0) > 0,
    exit,
    exitCode: EXIT_CODES.internal,
    messages: { survived: "uncaught error; the node's held VMs keep running", exiting: 'uncaught error with no held VM running; exiting' },
  });
}
