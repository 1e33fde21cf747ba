// Typed failures of the guest-agent channel.

export class AgentError extends Error {
  override name = 'AgentError';
}

/** guest-sync-delimited got no matching answer: no agent is listening, or the channel is stuck. */
export class AgentSyncError extends AgentError {
  override name = 'AgentSyncError';
}

/** The agent answered with an error object. */
export class AgentCommandError extends AgentError {
  override name = 'AgentCommandError';
  readonly command: string;
  readonly errorClass: string;
  constructor(command: string, errorClass: string, desc: string) {
    super(`guest agent command ${command} failed: ${errorClass}: ${desc}`);
    this.command = command;
    this.errorClass = errorClass;
  }
}

/** No answer within the timeout; the channel is then closed and must be re-synchronised. */
export class AgentTimeoutError extends AgentError {
  override name = 'AgentTimeoutError';
}

/** The channel is closed. */
export class AgentDisconnectedError extends AgentError {
  override name = 'AgentDisconnectedError';
}

/** An answer did not have the documented shape. */
export class AgentProtocolError extends AgentError {
  override name = 'AgentProtocolError';
}

/**
 * The agent sent a line longer than the client accepts (a hostile or broken guest). The
 * request waiting for it fails with this; the client discards bytes up to the next
 * newline or 0xFF delimiter and carries on from there.
 */
export class AgentLineTooLongError extends AgentProtocolError {
  override name = 'AgentLineTooLongError';
  readonly limitBytes: number;
  constructor(limitBytes: number) {
    super(`guest agent sent a line longer than ${limitBytes} bytes`);
    this.limitBytes = limitBytes;
  }
}
