// Container termination messages as the kubelet delivers them: a fresh per-container
// file in the pod's state directory, bind-mounted at the container's
// terminationMessagePath; after the container exits, the file's last 4096 bytes become
// `state.terminated.message`. Under FallbackToLogsOnError an empty file and a non-zero
// exit code bring in the tail of this run's log instead (last 80 lines, at most 2048
// bytes).
import fs from 'node:fs';
import path from 'node:path';

export const DEFAULT_TERMINATION_MESSAGE_PATH = '/dev/termination-log';
/** The kubelet's limit on a termination message read from the file. */
export const MAX_TERMINATION_MESSAGE_BYTES = 4096;
/** The kubelet's limits on a termination message taken from the log. */
export const MAX_LOG_FALLBACK_LINES = 80;
export const MAX_LOG_FALLBACK_BYTES = 2048;

export interface TerminationMessageSpec {
  readonly terminationMessagePath?: string | undefined;
  readonly terminationMessagePolicy?: string | undefined;
}

/** Where the container's message file sits on the node and where the container sees it. */
export interface TerminationLog {
  readonly hostPath: string;
  readonly containerPath: string;
}

/**
 * Creates an empty, world-writable message file for one run of a container (as the
 * kubelet does, so non-root containers can write it); undefined when the container
 * asks for none (an empty terminationMessagePath).
 */
export function prepareTerminationLog(containerDir: string, spec: TerminationMessageSpec): TerminationLog | undefined {
  const containerPath = spec.terminationMessagePath ?? DEFAULT_TERMINATION_MESSAGE_PATH;
  if (containerPath === '') return undefined;
  fs.mkdirSync(containerDir, { recursive: true });
  const hostPath = path.join(containerDir, 'termination-log');
  fs.rmSync(hostPath, { force: true });
  fs.writeFileSync(hostPath, '', { mode: 0o666 });
  fs.chmodSync(hostPath, 0o666);
  return { hostPath, containerPath };
}

/** The last `maxBytes` bytes of `file` from `offset` on (empty when it is missing). */
export function readTail(file: string, maxBytes: number, offset = 0): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    if (err instanceof Error && 'code' in err && err.code === 'ENOENT') return Buffer.alloc(0);
    throw err;
  }
  try {
    const size = fs.fstatSync(fd).size;
    const start = Math.max(offset, size - maxBytes);
    const buf = Buffer.alloc(Math.max(0, size - start));
    const read = buf.length === 0 ? 0 : fs.readSync(fd, buf, 0, buf.length, start);
    return buf.subarray(0, read);
  } finally {
    fs.closeSync(fd);
  }
}

/** The last `count` lines of `text` (a trailing newline ends the last line, it does not start another). */
export function lastLines(text: string, count: number): string {
  const body = text.endsWith('\n') ? text.slice(0, -1) : text;
  const lines = body.split('\n');
  if (lines.length <= count) return text;
  return `${lines.slice(-count).join('\n')}${text.endsWith('\n') ? '\n' : ''}`;
}

export interface ContainerRun {
  readonly log: TerminationLog | undefined;
  readonly fallbackToLogs: boolean;
  /** The container's log file and where this run's output starts in it. */
  readonly logPath: string;
  readonly logOffset: number;
  readonly exitCode: number;
}

/** The message the kubelet would report for a run that just ended; undefined when empty. */
export function terminationMessage(run: ContainerRun): string | undefined {
  let message = '';
  if (run.log !== undefined) message = readTail(run.log.hostPath, MAX_TERMINATION_MESSAGE_BYTES).toString('utf8');
  if (message === '' && run.fallbackToLogs && run.exitCode !== 0) {
    // Enough of this run's log for 80 lines, then the last 2048 bytes of those.
    const tail = readTail(run.logPath, MAX_LOG_FALLBACK_LINES * 1024, run.logOffset).toString('utf8');
    const lines = Buffer.from(lastLines(tail, MAX_LOG_FALLBACK_LINES), 'utf8');
    message = lines.subarray(Math.max(0, lines.length - MAX_LOG_FALLBACK_BYTES)).toString('utf8');
  }
  return message === '' ? undefined : message;
}
