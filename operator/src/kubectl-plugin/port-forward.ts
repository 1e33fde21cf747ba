// Port-forward to the guest: local listeners whose connections go to the VM's launcher
// pod through the Kubernetes API (pods/portforward, websocket subprotocol
// v4.channel.k8s.io, as kubectl port-forward). With masquerade binding the launcher
// pod's port is the guest's port (QEMU forwards it), so a pod port-forward reaches the
// guest. Each connection is one websocket: channel 0 carries data, channel 1 errors;
// the first message on each channel carries the port (2 bytes, little-endian).
import { Duplex } from 'node:stream';
import type { KubeConfig } from '@kubernetes/client-node';
import { UsageError, StateError } from './errors.ts';
import { explainApiError } from './api-errors.ts';
import type { KeyVirtApi, VmRef } from './keyvirt-api.ts';
import { serveProxy, type LocalProxy } from './local-proxy.ts';
import { openWebSocket, type WebSocketStream } from './websocket-client.ts';

export const PORT_FORWARD_PROTOCOL = 'v4.channel.k8s.io';

export interface PortMapping {
  readonly local: number;
  readonly guest: number;
}

/** `8080:80`, `:80` or `80` (local = guest), as kubectl port-forward takes them. */
export function parsePortMapping(text: string): PortMapping {
  const m = /^(?:(\d*):)?(\d+)$/.exec(text);
  const port = (s: string, zeroOk: boolean): number => {
    const n = Number(s);
    if (!Number.isInteger(n) || n < (zeroOk ? 0 : 1) || n > 65_535) throw new UsageError(`port-forward: ${JSON.stringify(text)}: ports are 1-65535`, 'port-forward');
    return n;
  };
  if (m === null) throw new UsageError(`port-forward: ${JSON.stringify(text)} is not [LOCAL:]PORT`, 'port-forward');
  const guest = port(m[2] ?? '', false);
  const local = m[1] === undefined ? guest : m[1] === '' ? 0 : port(m[1], true);
  return { local, guest };
}

/** Splits one message of the channel protocol; `seen` tracks the port prefix of each channel's first message. */
export function decodeChannelMessage(message: Buffer, seen: Set<number>): { channel: number; data: Buffer } {
  const channel = message[0] ?? 255;
  let data = message.subarray(1);
  if (!seen.has(channel)) {
    seen.add(channel);
    data = data.subarray(2);
  }
  return { channel, data };
}

/** One forwarded connection as a byte stream over the channel protocol. */
class PortForwardStream extends Duplex {
  readonly #ws: WebSocketStream;
  readonly #seen = new Set<number>();

  constructor(ws: WebSocketStream, what: string) {
    super();
    this.#ws = ws;
    ws.on('data', (message: Buffer) => {
      const { channel, data } = decodeChannelMessage(message, this.#seen);
      if (channel === 0 && data.length > 0) this.push(data);
      if (channel === 1 && data.length > 0) this.destroy(new StateError(`${what}: ${data.toString('utf8')}`));
    });
    ws.on('end', () => this.push(null));
    ws.on('error', (err) => this.destroy(err));
  }

  override _read(): void {
    // data is pushed as it arrives
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#ws.write(Buffer.concat([Buffer.from([0]), chunk]), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#ws.end(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#ws.destroy();
    callback(error);
  }
}

export interface Forwarder {
  readonly proxies: readonly { mapping: PortMapping; proxy: LocalProxy }[];
  close(): Promise<void>;
}

/** Listens on every mapping; connections go to the guest port through the launcher pod. */
export async function forwardPorts(
  api: KeyVirtApi,
  kc: KubeConfig,
  ref: VmRef,
  mappings: readonly PortMapping[],
  options: { address: string; timeoutMs: number; onError: (err: unknown) => void },
): Promise<Forwarder> {
  const vm = await api.getVm(ref);
  const pod = vm.status?.launcherPod;
  if (pod === undefined || vm.status?.phase === 'Stopped') {
    throw new StateError(`VirtualMachine "${ref.name}" in namespace "${ref.namespace}" is not running (phase ${vm.status?.phase ?? 'none'}): nothing to forward to`);
  }
  const proxies: { mapping: PortMapping; proxy: LocalProxy }[] = [];
  for (const mapping of mappings) {
    const path = `/api/v1/namespaces/${encodeURIComponent(ref.namespace)}/pods/${encodeURIComponent(pod)}/portforward?ports=${String(mapping.guest)}`;
    const what = `guest port ${String(mapping.guest)} of VirtualMachine "${ref.name}" in namespace "${ref.namespace}"`;
    const proxy = await serveProxy({
      address: options.address,
      port: mapping.local,
      dial: async () => {
        try {
          const ws = await openWebSocket(kc, path, { protocols: [PORT_FORWARD_PROTOCOL], timeoutMs: options.timeoutMs, messages: true });
          return new PortForwardStream(ws, what);
        } catch (err) {
          throw explainApiError(err, { verb: 'create', resource: 'pods/portforward', group: '', namespace: ref.namespace, name: pod, server: api.server });
        }
      },
      onError: options.onError,
    });
    proxies.push({ mapping, proxy });
  }
  return { proxies, close: async () => { await Promise.all(proxies.map((p) => p.proxy.close())); } };
}
