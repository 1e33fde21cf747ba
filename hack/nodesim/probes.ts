// Container probes as the kubelet runs them: tcpSocket and httpGet from the node
// (the simulator runs in the node's network namespace, which reaches every pod IP),
// exec inside the container's namespaces. Readiness gates the Ready condition;
// liveness failures kill the container so that its restart policy applies.
import { execFile } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1Probe } from '@kubernetes/client-node';

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

function tcpProbe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(timeoutMs, () => { socket.destroy(); resolve(false); });
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

function httpProbe(host: string, port: number, pathName: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: pathName, timeout: timeoutMs, headers: { 'User-Agent': 'kube-probe/keyvirt-nodesim' } }, (res) => {
      res.resume();
      const status = res.statusCode ?? 0;
      resolve(status >= 200 && status < 400);
    });
    req.on('timeout', () => { req.destroy(); resolve(false); });
    req.on('error', () => resolve(false));
  });
}

function execProbe(pid: number | undefined, command: readonly string[], timeoutMs: number): Promise<boolean> {
  if (pid === undefined || command.length === 0) return Promise.resolve(false);
  return new Promise((resolve) => {
    execFile('/usr/bin/nsenter', [`--target=${pid}`, '--mount', '--net', '--pid', '--uts', '--', ...command], { timeout: timeoutMs }, (err) => {
      resolve(err === null);
    });
  });
}

/** Runs one probe attempt. */
export async function runProbe(probe: V1Probe, target: ProbeTarget): Promise<boolean> {
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
  } catch {
    return false;
  }
  // grpc probes are not run: treated as passing.
  return true;
}

/**
 * Probes periodically until `signal` aborts; calls `onChange(healthy)` when the
 * thresholds flip the result (starting from `initial`).
 */
export async function probeLoop(
  probe: V1Probe, target: ProbeTarget, initial: boolean, onChange: (healthy: boolean) => void, signal: AbortSignal,
): Promise<void> {
  let healthy = initial;
  let successes = 0;
  let failures = 0;
  await sleep((probe.initialDelaySeconds ?? 0) * 1000, undefined, { signal });
  while (!signal.aborted) {
    const ok = await runProbe(probe, target);
    if (ok) { successes++; failures = 0; } else { failures++; successes = 0; }
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
