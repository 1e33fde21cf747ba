// Starts the subresource server of this replica (ADR 0066): front-proxy settings first,
// then the TLS listener; stops with `signal`. Not leader-gated: every replica serves.
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { KubeClient } from '../runtime/kube-client.ts';
import { FrontProxySource } from './front-proxy-source.ts';
import { SubresourceServer } from './subresource-server.ts';

export interface SubresourceSettings {
  /** host:port */
  address: string;
  certFile: string;
  keyFile: string;
  /** The operator's namespace (image import jobs run there: uploads are relayed to them). */
  operatorNamespace?: string | undefined;
  /** The launcher eviction webhook's path token (ADR 0121); without it the webhook is not served. */
  evictionWebhookToken?: string | undefined;
}

export async function startSubresourceServer(client: KubeClient, log: Logger, settings: SubresourceSettings, signal: AbortSignal): Promise<AddressInfo | undefined> {
  const sublog = log.child({ component: 'subresources' });
  const source = new FrontProxySource(client, sublog);
  await source.load(signal);
  if (signal.aborted) return undefined;
  const server = new SubresourceServer({ client, log, certFile: settings.certFile, keyFile: settings.keyFile, frontProxy: () => source.current, operatorNamespace: settings.operatorNamespace, evictionWebhookToken: settings.evictionWebhookToken });
  const colon = settings.address.lastIndexOf(':');
  const address = await server.listen(settings.address.slice(0, colon), Number(settings.address.slice(colon + 1)));
  source.keepFresh(signal, (config) => {
    void Promise.all([readFile(settings.certFile), readFile(settings.keyFile)]).then(
      ([cert, key]) => {
        server.updateTrust(config, cert, key);
        sublog.info('front-proxy CA bundle changed; new connections verify against it');
      },
      (err: unknown) => sublog.error({ err }, 'cannot reload the serving certificate'),
    );
  });
  signal.addEventListener('abort', () => void server.close(), { once: true });
  return address;
}
