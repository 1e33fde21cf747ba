// Container probes as the kubelet runs them: tcpSocket and httpGet from the node
// (the simulator runs in the node's network namespace, which reaches every pod IP),
// exec inside the container's namespaces. Readiness gates the Ready condition;
// liveness failures kill the container so that its restart policy applies.
import { execFile } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** The fields of a container probe the simulator runs (a V1Probe fits it). */
export interface ProbeSpec {
  readonly tcpSocket?: { readonly host?: string; readonly port: number | string };
  readonly httpGet?: { readonly host?: string; readonly port: number | string; readonly path?: string };
  readonly exec?: { readonly command?: readonly string[] };
  readonly initialDelaySeconds?: number;
  readonly periodSeconds?: number;
  readonly timeoutSeconds?: number;
  readonly successThreshold?: number;
  readonly failureThreshold?: number;
}

export interface ProbeTarget {
  readonly podIp: string;
  /** PID 1 of the container (for exec probes); undefined when not known yet. */
  readonly pid: () => number | undefined;
  readonly namedPorts: ReadonlyMap<string, number>;
}

function resolvePort(port: number | string, target: ProbeTarget): number {
  if (typeof port === 'number') return port;
  const named = target.namedPorts.get(port);
  if (named !== undefined) return named;
  const numeric = Number(port);
  if (Number.isInteger(numeric)) return numeric;
  throw new RangeError(`unknown container port ${port}`);
}

/** One probe attempt's outcome; a failure says why, as the kubelet's Unhealthy events do. */
export type ProbeResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };

const passed: ProbeResult = { ok: true };
const failed = (reason: string): ProbeResult => ({ ok: false, reason });

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(timeoutMs, () => { socket.destroy(); resolve(failed(`dial tcp ${host}:${port}: i/o timeout after ${timeoutMs} ms`)); });
    socket.once('connect', () => { socket.destroy(); resolve(passed); });
    socket.once('error', (err) => resolve(failed(`dial tcp ${host}:${port}: ${err.message}`)));
  });
}

function httpProbe(host: string, port: number, pathName: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: pathName, timeout: timeoutMs, headers: { 'User-Agent': 'kube-probe/keyvirt-nodesim' } }, (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      resolve(status >= 200 && status < 400 ? passed : failed(`HTTP probe failed with statuscode: ${status}`));
    });
    req.on('timeout', () => { req.destroy(); resolve(failed(`Get http://${host}:${port}${pathName}: timeout after ${timeoutMs} ms`)); });
    req.on('error', (err) => resolve(failed(`Get http://${host}:${port}${pathName}: ${err.message}`)));
  });
}

function execProbe(pid: number | undefined, command: readonly string[], timeoutMs: number): Promise<ProbeResult> {
  if (pid === undefined || command.length === 0) return Promise.resolve(failed('no container process to run the command in'));
  return new Promise((resolve) => {
    execFile('/usr/bin/nsenter', [`--target=${pid}`, '--mount', '--net', '--pid', '--uts', '--', ...command], { timeout: timeoutMs }, (err) => {
      resolve(err === null ? passed : failed(`command failed: ${err.message}`));
    });
  });
}

/** Runs one probe attempt. */
export async function runProbe(probe: ProbeSpec, target: ProbeTarget): Promise<ProbeResult> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  try {
    if (probe.tcpSocket !== undefined) {
      return await tcpProbe(probe.tcpSocket.host ?? target.podIp, resolvePort(probe.tcpSocket.port, target), timeoutMs);
    }
    if (probe.httpGet !== undefined) {
      const port = resolvePort(probe.httpGet.port, target);
      return await httpProbe(probe.httpGet.host ?? target.podIp, port, probe.httpGet.path ?? '/', timeoutMs);
    }
    if (probe.exec !== undefined) return await execProbe(target.pid(), probe.exec.command ?? [], timeoutMs);
  } catch (err) {
    return failed(err instanceof Error ? err.message : String(err));
  }
  // grpc probes are not run: treated as passing.
  return passed;
}

/**
 * Probes periodically until `signal` aborts; calls `onChange(healthy)` when the
 * thresholds flip the result (starting from `initial`).
 */
export interface ProbeLoopOptions {
  readonly probe: ProbeSpec;
  readonly target: ProbeTarget;
  /** Health before the first attempt: false for readiness, true for liveness. */
  readonly initial: boolean;
  readonly onChange: (healthy: boolean) => void;
  /** Every failed attempt, with its reason and how many failed in a row. */
  readonly onFailure?: (reason: string, consecutive: number) => void;
  readonly signal: AbortSignal;
}

export async function probeLoop(options: ProbeLoopOptions): Promise<void> {
  const { probe, target, initial, onChange, onFailure = (): void => undefined, signal } = options;
  let healthy = initial;
  let successes = 0;
  let failures = 0;
  await sleep((probe.initialDelaySeconds ?? 0) * 1000, undefined, { signal });
  while (!signal.aborted) {
    const result = await runProbe(probe, target);
    const ok = result.ok;
    if (ok) { successes++; failures = 0; } else { failures++; successes = 0; onFailure(result.reason, failures); }
    if (!healthy && ok && successes >= (probe.successThreshold ?? 1)) {
      healthy = true;
      onChange(true);
    } else if (healthy && !ok && failures >= (probe.failureThreshold ?? 3)) {
      healthy = false;
      onChange(false);
    }
    await sleep((probe.periodSeconds ?? 10) * 1000, undefined, { signal });
  }
}
