// The guest's DHCP server, run by the launcher inside its pod's network namespace on
// the bridge the node agent prepared (ADR 0095). One socket on 0.0.0.0:67 hears the
// guest's broadcasts; one on the launcher's bridge address (SO_REUSEADDR) hears its
// unicast renewals and sends every reply to 255.255.255.255: Linux sends a limited
// broadcast out of the interface that owns the source address, so replies go to the
// guest's side only. Binding port 67 unprivileged needs the pod's
// net.ipv4.ip_unprivileged_port_start at 67, which the node agent sets. Requests from the
// pod's own interface are dropped by the node agent's firewall before they get here,
// and only the guest NIC's MAC gets an answer.
import dgram from 'node:dgram';
import { once } from 'node:events';
import type { Logger } from 'pino';
import { DhcpPacketError, encodeDhcpReply, parseDhcpMessage } from './dhcp-packet.ts';
import { dhcpReply } from './dhcp-reply.ts';
import type { GuestOffer } from './dhcp-reply.ts';

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
/** Replies the server sends in a burst, and per second after it: a client needs a handful per lease; a guest flooding requests gets no more (nor log lines). */
export const DHCP_REPLY_BURST = 20;
export const DHCP_REPLIES_PER_SECOND = 5;

export class DhcpServerError extends Error {
  override name = 'DhcpServerError';
}

export interface DhcpServerOptions {
  offer: GuestOffer;
  logger: Logger;
  /** Ports, for tests that run unprivileged on high ports. */
  serverPort?: number;
  clientPort?: number;
  /** The reply bucket (DHCP_REPLY_BURST, DHCP_REPLIES_PER_SECOND by default). */
  replyBurst?: number;
  repliesPerSecond?: number;
}

export class DhcpServer {
  readonly #o: DhcpServerOptions;
  readonly #log: Logger;
  #sockets: dgram.Socket[] = [];
  #answered = 0;
  #tokens: number;
  #refilledAt = Date.now();
  #throttled = 0;

  constructor(options: DhcpServerOptions) {
    this.#o = options;
    this.#log = options.logger;
    this.#tokens = options.replyBurst ?? DHCP_REPLY_BURST;
  }

  /** Answerable requests left unanswered because the guest asked too often. */
  get throttled(): number {
    return this.#throttled;
  }

  /** Takes one reply from the bucket; false when the guest has used them up. */
  #mayReply(): boolean {
    const now = Date.now();
    const burst = this.#o.replyBurst ?? DHCP_REPLY_BURST;
    this.#tokens = Math.min(burst, this.#tokens + ((now - this.#refilledAt) / 1000) * (this.#o.repliesPerSecond ?? DHCP_REPLIES_PER_SECOND));
    this.#refilledAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Replies sent so far. */
  get answered(): number {
    return this.#answered;
  }

  async start(): Promise<void> {
    const port = this.#o.serverPort ?? DHCP_SERVER_PORT;
    try {
      const wildcard = await this.#bind('0.0.0.0', port);
      const own = await this.#bind(this.#o.offer.lease.server, port);
      own.setBroadcast(true);
      for (const socket of [wildcard, own]) socket.on('message', (msg) => this.#handle(msg, own));
    } catch (err) {
      await this.close();
      throw new DhcpServerError(`cannot serve DHCP on ${this.#o.offer.lease.server}:${port}: ${(err as Error).message}`, { cause: err });
    }
    this.#log.info({ server: this.#o.offer.lease.server, guest: this.#o.offer.lease.address, mac: this.#o.offer.mac }, 'DHCP server listening');
  }

  async #bind(address: string, port: number): Promise<dgram.Socket> {
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    this.#sockets.push(socket);
    socket.on('error', (err) => this.#log.warn({ err }, 'DHCP socket error'));
    socket.bind({ address, port });
    await once(socket, 'listening');
    return socket;
  }

  #handle(msg: Buffer, sender: dgram.Socket): void {
    let reply;
    try {
      reply = dhcpReply(parseDhcpMessage(msg), this.#o.offer);
    } catch (err) {
      if (err instanceof DhcpPacketError) {
        this.#log.debug({ err }, 'DHCP message dropped');
        return;
      }
      throw err;
    }
    if (reply === undefined) return;
    if (!this.#mayReply()) {
      if (this.#throttled++ % 1000 === 0) this.#log.warn({ throttled: this.#throttled }, 'DHCP requests throttled');
      return;
    }
    const packet = encodeDhcpReply(reply);
    sender.send(packet, this.#o.clientPort ?? DHCP_CLIENT_PORT, '255.255.255.255', (err) => {
      if (err !== null) this.#log.warn({ err }, 'DHCP reply not sent');
    });
    this.#answered += 1;
    this.#log.info({ type: reply.type, address: reply.yiaddr }, 'DHCP reply sent');
  }

  async close(): Promise<void> {
    const sockets = this.#sockets;
    this.#sockets = [];
    await Promise.all(sockets.map((s) => new Promise<void>((resolve) => {
      try {
        s.close(() => resolve());
      } catch {
        resolve();
      }
    })));
  }
}
