// The plugin's errors: each names what is wrong in words a user acts on and carries the
// process exit code (docs/adr/0068). `main.ts` prints `error: <message>` and exits with it.

/** Exit codes of `kubectl keyvirt`. */
export const EXIT = {
  ok: 0,
  /** Anything not covered below (the API server answered with an unexpected error). */
  failure: 1,
  /** Bad command line: unknown verb or flag, missing argument, bad value. */
  usage: 2,
  /** The VM (or its migration, its launcher pod, the subresource API) does not exist. */
  notFound: 3,
  /** Not authenticated, or RBAC denies the verb on the resource or subresource. */
  forbidden: 4,
  /** The VM is not in a state that allows the verb (not running, already paused, …). */
  conflict: 5,
  /** The API server (or the stream through it) could not be reached or broke. */
  unreachable: 6,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The base of every error the plugin reports; its message is shown as is. */
export class PluginError extends Error {
  override readonly name: string = 'PluginError';
  readonly exitCode: ExitCode;
  constructor(message: string, exitCode: ExitCode, options?: ErrorOptions) {
    super(message, options);
    this.exitCode = exitCode;
  }
}

/** The command line is wrong; `verb` names the verb whose help to point at. */
export class UsageError extends PluginError {
  override readonly name = 'UsageError';
  readonly verb: string | undefined;
  constructor(message: string, verb?: string) {
    super(message, EXIT.usage);
    this.verb = verb;
  }
}

export class NotFoundError extends PluginError {
  override readonly name = 'NotFoundError';
  constructor(message: string, options?: ErrorOptions) {
    super(message, EXIT.notFound, options);
  }
}

export class ForbiddenError extends PluginError {
  override readonly name = 'ForbiddenError';
  constructor(message: string, options?: ErrorOptions) {
    super(message, EXIT.forbidden, options);
  }
}

/** The VM's state does not allow the verb. */
export class StateError extends PluginError {
  override readonly name = 'StateError';
  constructor(message: string, options?: ErrorOptions) {
    super(message, EXIT.conflict, options);
  }
}

export class UnreachableError extends PluginError {
  override readonly name = 'UnreachableError';
  constructor(message: string, options?: ErrorOptions) {
    super(message, EXIT.unreachable, options);
  }
}

/** The kubeconfig is missing, unreadable or names a context that does not exist. */
export class KubeconfigError extends PluginError {
  override readonly name = 'KubeconfigError';
  constructor(message: string, options?: ErrorOptions) {
    super(message, EXIT.failure, options);
  }
}
