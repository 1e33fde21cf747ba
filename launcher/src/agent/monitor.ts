// Keeps a guest-agent session alive while the VM runs: connects and synchronises, reads
// what the guest reports (OS, host name, interfaces), polls it, and reconnects after the
// agent goes away (guest reboot, agent restart). Exposes `connected` for the status.
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { GuestAgentClient } from './client.ts';
import { AgentLineTooLongError } from './errors.ts';
import type { GuestNetworkInterfaces, GuestOsInfo } from './messages.ts';

export interface GuestSnapshot {
  connected: boolean;
  agentVersion?: string;
  osInfo?: GuestOsInfo;
  hostName?: string;
  interfaces?: GuestNetworkInterfaces;
  /** When the agent last answered (ISO 8601). */
  lastSeen?: string;
  /** When `connected` last changed (ISO 8601). */
  since?: string;
}

export interface AgentMonitorOptions {
  path: string;
  logger: Logger;
  /** Opens the agent's socket (net.createConnection by default). */
  connect?: (path: string) => Socket;
  pollIntervalMs?: number;
  retryIntervalMs?: number;
  syncTimeoutMs?: number;
  commandTimeoutMs?: number;
  now?: () => Date;
}

interface MonitorEvents {
  change: [GuestSnapshot];
}

export class GuestAgentMonitor extends EventEmitter<MonitorEvents> {
  #options: AgentMonitorOptions;
  #log: Logger;
  #client: GuestAgentClient | undefined;
  #snapshot: GuestSnapshot = { connected: false };
  #now: () => Date;
  #held = false;
  /** Whether the agent's overlong lines have been reported since it last connected. */
  #floodReported = false;
  /** Set by wake(): try again at once. */
  #woken = false;
  #connecting = false;
  #wakeSleep: AbortController | undefined;

  constructor(options: AgentMonitorOptions) {
    super();
    this.#options = options;
    this.#log = options.logger.child({ component: 'agent-monitor' });
    this.#now = options.now ?? ((): Date => new Date());
  }

  get snapshot(): GuestSnapshot {
    return this.#snapshot;
  }

  /** The synchronised client while the agent is connected. */
  get client(): GuestAgentClient | undefined {
    return this.#snapshot.connected ? this.#client : undefined;
  }

  /**
   * Holds polling while the vCPUs are stopped (paused, migrating): a stopped guest cannot
   * answer, and that is no reason to report the agent gone.
   */
  hold(held: boolean): void {
    this.#held = held;
  }

  /**
   * The guest opened the agent's port (QMP `VSERPORT_CHANGE`): connect now rather than at
   * the next retry. A synchronisation sent while the port was closed may never be
   * answered, so an attempt under way starts again.
   */
  wake(): void {
    if (this.#snapshot.connected) return;
    this.#woken = true;
    this.#wakeSleep?.abort();
    if (this.#connecting) this.#client?.close();
  }

  /** Runs until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const retryMs = this.#options.retryIntervalMs ?? 1000;
    const pollMs = this.#options.pollIntervalMs ?? 5000;
    while (!signal.aborted) {
      let ok = false;
      this.#woken = false;
      if (!this.#held) ok = this.#snapshot.connected ? await this.#poll() : await this.#connect();
      if (!ok && this.#woken) continue;
      const wake = new AbortController();
      this.#wakeSleep = wake;
      try {
        await sleep(ok ? pollMs : retryMs, undefined, { signal: AbortSignal.any([signal, wake.signal]) });
      } catch {
        if (signal.aborted) break;
      } finally {
        this.#wakeSleep = undefined;
      }
    }
    this.#client?.close();
    if (this.#snapshot.connected) this.#update({ connected: false });
  }

  async #connect(): Promise<boolean> {
    this.#client?.close();
    const client = new GuestAgentClient({
      path: this.#options.path,
      ...(this.#options.connect === undefined ? {} : { connect: this.#options.connect }),
      logger: this.#options.logger,
      syncTimeoutMs: this.#options.syncTimeoutMs ?? 2000,
      commandTimeoutMs: this.#options.commandTimeoutMs ?? 10_000,
    });
    this.#client = client;
    this.#connecting = true;
    try {
      await client.connect();
      const info = await client.info();
      const osInfo = await client.osInfo();
      const hostName = await client.hostName().catch(() => undefined);
      const interfaces = await client.networkInterfaces().catch(() => undefined);
      this.#log.info({ agentVersion: info.version.slice(0, 64), os: osInfo['pretty-name']?.slice(0, 128) }, 'guest agent connected');
      this.#floodReported = false;
      this.#update({ connected: true, agentVersion: info.version, osInfo, hostName, interfaces });
      return true;
    } catch (err) {
      if (err instanceof Error && err.cause instanceof AgentLineTooLongError) {
        if (!this.#floodReported) this.#log.warn({ err }, 'guest agent channel sends overlong lines; retrying');
        this.#floodReported = true;
      } else this.#log.debug({ err }, 'guest agent not answering');
      client.close();
      return false;
    } finally {
      this.#connecting = false;
    }
  }

  async #poll(): Promise<boolean> {
    const client = this.#client;
    try {
      if (client === undefined) throw new Error('no client');
      await client.ping();
      const interfaces = await client.networkInterfaces();
      // The host name changes after boot (cloud-init sets it once the agent is up): read on every poll.
      const hostName = (await client.hostName().catch(() => undefined)) ?? this.#snapshot.hostName;
      if (JSON.stringify(interfaces) !== JSON.stringify(this.#snapshot.interfaces) || hostName !== this.#snapshot.hostName) {
        this.#update({ ...this.#snapshot, interfaces, ...(hostName === undefined ? {} : { hostName }) });
      } else {
        this.#snapshot = { ...this.#snapshot, lastSeen: this.#now().toISOString() };
      }
      return true;
    } catch (err) {
      this.#log.info({ err }, 'guest agent disconnected');
      client?.close();
      this.#update({ connected: false });
      return false;
    }
  }

  #update(next: GuestSnapshot): void {
    const at = this.#now().toISOString();
    const since = next.connected === this.#snapshot.connected ? this.#snapshot.since : at;
    this.#snapshot = { ...next, since, lastSeen: next.connected ? at : this.#snapshot.lastSeen };
    this.emit('change', this.#snapshot);
  }
}
