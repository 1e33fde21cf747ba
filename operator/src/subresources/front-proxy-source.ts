// Keeps the front-proxy settings of `kube-system/extension-apiserver-authentication`
// current: read before the server listens (retried until it exists), then again every
// REFRESH_MS; a change of the CA bundle is handed to the server for new handshakes.
import type { Logger } from 'pino';
import type { KubeClient } from '../runtime/kube-client.ts';
import { parseFrontProxyConfig, type FrontProxyConfig } from './front-proxy.ts';

export const AUTHENTICATION_CONFIGMAP_PATH = '/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication';
export const REFRESH_MS = 5 * 60_000;
const RETRY_MS = 10_000;

export class FrontProxySource {
  readonly #client: Pick<KubeClient, 'get'>;
  readonly #log: Logger;
  #current: FrontProxyConfig | undefined;

  constructor(client: Pick<KubeClient, 'get'>, log: Logger) {
    this.#client = client;
    this.#log = log;
  }

  get current(): FrontProxyConfig | undefined {
    return this.#current;
  }

  /** One read; resolves with whether the CA bundle changed. */
  async refresh(signal?: AbortSignal): Promise<boolean> {
    const next = parseFrontProxyConfig(await this.#client.get(AUTHENTICATION_CONFIGMAP_PATH, signal));
    const changed = this.#current?.caPem !== next.caPem;
    this.#current = next;
    return changed;
  }

  /** Reads until it succeeds (or `signal` aborts). */
  async load(signal: AbortSignal): Promise<void> {
    for (;;) {
      try {
        await this.refresh(signal);
        return;
      } catch (err) {
        if (signal.aborted) return;
        this.#log.warn({ err }, 'cannot read the front-proxy settings; retrying');
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
  }

  /** Refreshes every REFRESH_MS until `signal` aborts, calling `onChange` when the CA bundle changed. */
  keepFresh(signal: AbortSignal, onChange: (config: FrontProxyConfig) => void): void {
    const timer = setInterval(() => {
      this.refresh(signal).then(
        (changed) => {
          if (changed && this.#current !== undefined) onChange(this.#current);
        },
        (err: unknown) => this.#log.warn({ err }, 'cannot refresh the front-proxy settings; keeping the last ones'),
      );
    }, REFRESH_MS);
    signal.addEventListener('abort', () => clearInterval(timer), { once: true });
  }
}
