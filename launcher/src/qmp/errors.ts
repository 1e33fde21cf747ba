// Typed failures of a QMP session, one class per way a session can go wrong.

/** Base class so callers can catch every QMP failure at once. */
export class QmpError extends Error {
  override name = 'QmpError';
}

/** The first message on the socket was not a QMP greeting (or never came). */
export class QmpGreetingError extends QmpError {
  override name = 'QmpGreetingError';
}

/** `qmp_capabilities` was refused or failed. */
export class QmpNegotiationError extends QmpError {
  override name = 'QmpNegotiationError';
}

/** QEMU answered a command with an error object. */
export class QmpExecuteError extends QmpError {
  override name = 'QmpExecuteError';
  readonly errorClass: string;
  readonly command: string;
  readonly arguments: Readonly<Record<string, unknown>> | undefined;

  constructor(command: string, args: Readonly<Record<string, unknown>> | undefined, errorClass: string, desc: string) {
    super(`QMP command ${command} failed: ${errorClass}: ${desc}`);
    this.command = command;
    this.arguments = args;
    this.errorClass = errorClass;
  }
}

/** The session ended (socket closed or errored); pending and later calls fail with it. */
export class QmpDisconnectedError extends QmpError {
  override name = 'QmpDisconnectedError';
}

/** A command got no reply within its timeout. */
export class QmpTimeoutError extends QmpError {
  override name = 'QmpTimeoutError';
  readonly command: string;
  constructor(command: string, timeoutMs: number) {
    super(`QMP command ${command} got no reply within ${timeoutMs} ms`);
    this.command = command;
  }
}

/** A reply arrived but its `return` value did not have the expected shape. */
export class QmpProtocolError extends QmpError {
  override name = 'QmpProtocolError';
}
