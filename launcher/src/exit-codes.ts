// The launcher's process exit codes, for the launcher pod's restart policy and the
// operator (which reads the container's terminated state). See ADR 0044.
export const EXIT_CODES = {
  /** The VM stopped cleanly: guest power-off, a requested stop or shutdown, or it migrated away. */
  stopped: 0,
  /** The VM failed: QEMU crashed, was killed, or exited without the guest shutting down. */
  vmFailed: 1,
  /** The launcher configuration or the token file is invalid. Restarting will not help. */
  invalidConfig: 2,
  /** The VM could not be started: no usable accelerator, disk or seed problems, QEMU refused to start, port in use. */
  startFailed: 3,
  /** An unexpected launcher error. */
  internal: 70,
} as const;
