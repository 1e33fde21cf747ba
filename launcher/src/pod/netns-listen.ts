// A TCP listener inside a pod's network namespace, owned by a process outside it (ADRs
// 0130, 0132): Node.js cannot enter a namespace, so a short helper does, under
// `nsenter --net=<ns>`. It binds the address there and hands the listening socket to this
// process over Node's IPC channel, then exits. The socket keeps the namespace it was
// made in: connections to the pod's address land here, and the operator, the migration
// protocol and the guest see the launcher at the pod's address as before.
import { spawn } from 'node:child_process';
import net from 'node:net';

export class NetnsListenError extends Error {
  override name = 'NetnsListenError';
}

/** The helper, run by the same Node.js binary as CommonJS (`node -e`): no file of its own to ship. */
const HELPER = `
const net = require('node:net');
const host = process.env.KEYVIRT_LISTEN_HOST;
const port = Number(process.env.KEYVIRT_LISTEN_PORT);
const server = net.createServer();
server.on('error', (err) => process.send({ error: String(err.code || err.message) }, () => process.exit(1)));
server.listen({ host, port, exclusive: true }, () => process.send({ listening: true }, server, () => process.exit(0)));
`;

export interface NetnsListenOptions {
  /** The namespace: `/proc/<pid>/ns/net` of a process in the pod, or `/run/netns/<name>`. */
  readonly netns: string;
  readonly host: string;
  readonly port: number;
  readonly timeoutMs?: number;
  /** `nsenter` (util-linux). */
  readonly nsenter?: string;
}

/** A listening net.Server bound to `host:port` in `netns`, owned by this process. */
export function listenInNetns(options: NetnsListenOptions): Promise<net.Server> {
  if (!options.netns.startsWith('/') || options.netns.includes('\0')) return Promise.reject(new NetnsListenError(`${options.netns} is not a namespace path`));
  if (net.isIP(options.host) === 0) return Promise.reject(new NetnsListenError(`${options.host} is not an IP address`));
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65_535) return Promise.reject(new NetnsListenError(`${String(options.port)} is not a port`));
  const child = spawn(options.nsenter ?? 'nsenter', [`--net=${options.netns}`, '--', process.execPath, '-e', HELPER], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { PATH: process.env.PATH, KEYVIRT_LISTEN_HOST: options.host, KEYVIRT_LISTEN_PORT: String(options.port) },
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    if (stderr.length < 4096) stderr += chunk;
  });
  return new Promise<net.Server>((resolve, reject) => {
    const where = `${options.host}:${String(options.port)} in ${options.netns}`;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(new NetnsListenError(`no listener ${where} within ${String(options.timeoutMs ?? 10_000)} ms`));
    }, options.timeoutMs ?? 10_000);
    let done = false;
    const finish = (outcome: net.Server | Error): void => {
      if (done) {
        if (outcome instanceof net.Server) outcome.close();
        return;
      }
      done = true;
      clearTimeout(timer);
      if (outcome instanceof net.Server) resolve(outcome);
      else reject(outcome);
    };
    child.on('message', (message: unknown, handle: unknown) => {
      if (handle instanceof net.Server) {
        finish(handle);
        return;
      }
      const error = typeof message === 'object' && message !== null && 'error' in message ? String(message.error) : 'no socket';
      finish(new NetnsListenError(`cannot listen on ${where}: ${error}`));
    });
    child.on('error', (err) => finish(new NetnsListenError(`cannot run ${options.nsenter ?? 'nsenter'}: ${err.message}`)));
    child.on('exit', (code, signal) => finish(new NetnsListenError(`the helper listening on ${where} ended (${String(code ?? signal)}) with no socket: ${stderr.trim()}`)));
  });
}
