// The error of a lifecycle action that does not fit the VM's current state (HTTP 409).

/** The action does not fit the current phase (HTTP 409). */
export class ActionConflictError extends Error {
  override name = 'ActionConflictError';
}
