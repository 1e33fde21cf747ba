// Turns what the API server (or the way to it) answered into a PluginError that names
// the object, the namespace and what is wrong. Pure: an error and what was attempted in,
// the message and exit code out.
import { KubeApiError, KubeTimeoutError, KubeTransportError } from '../runtime/kube-client.ts';
import { ForbiddenError, NotFoundError, PluginError, StateError, UnreachableError } from './errors.ts';

export const SUBRESOURCE_GROUP = 'subresources.keyvirt.io';
export const SUBRESOURCE_VERSION = 'v1alpha1';

/** What the plugin tried: `verb` is the RBAC verb, `resource` e.g. `virtualmachines/console`. */
export interface Attempt {
  readonly verb: string;
  readonly resource: string;
  readonly group: string;
  readonly namespace: string;
  readonly name?: string;
  /** The API server's address, for unreachable errors. */
  readonly server: string;
}

function objectWords(a: Attempt): string {
  const kind = a.resource.startsWith('virtualmachinemigrations')
    ? 'VirtualMachineMigration'
    : a.resource.startsWith('virtualmachineimages')
      ? 'VirtualMachineImage'
      : a.resource.startsWith('pods')
        ? 'Pod'
        : 'VirtualMachine';
  return a.name !== undefined ? `${kind} "${a.name}"` : `${kind}s`;
}

/** The 404 of a path the API server does not serve at all (no APIService, or not Available). */
function apiNotServed(err: KubeApiError): boolean {
  return err.statusCode === 404 && /the server could not find the requested resource/i.test(err.message);
}

export function explainApiError(err: unknown, a: Attempt): Error {
  if (err instanceof PluginError) return err;
  if (err instanceof KubeTimeoutError) {
    return new UnreachableError(`the API server at ${a.server} did not answer in time (${a.verb} ${a.resource} in namespace "${a.namespace}")`, { cause: err });
  }
  if (err instanceof KubeTransportError) {
    const detail = err.cause instanceof Error ? `: ${err.cause.message}` : '';
    return new UnreachableError(`cannot reach the API server at ${a.server}${detail === '' ? `: ${err.message}` : detail}`, { cause: err });
  }
  if (!(err instanceof KubeApiError)) return err instanceof Error ? err : new PluginError(String(err), 1);
  const serverSays = stripPath(err.message);
  switch (err.statusCode) {
    case 401:
      return new ForbiddenError(`not authenticated by the API server at ${a.server}: check the credentials of your kubeconfig context (${serverSays})`, { cause: err });
    case 403:
      return new ForbiddenError(
        `forbidden: you may not ${a.verb} ${a.resource} (API group ${a.group}) in namespace "${a.namespace}"; ask for an RBAC role that grants it (${serverSays})`,
        { cause: err },
      );
    case 404:
      if (a.group === SUBRESOURCE_GROUP && apiNotServed(err)) {
        return new NotFoundError(
          `the KeyVirt subresource API (${SUBRESOURCE_GROUP}/${SUBRESOURCE_VERSION}) is not served by this cluster: is the operator installed with its APIService? (kubectl get apiservice v1alpha1.${SUBRESOURCE_GROUP})`,
          { cause: err },
        );
      }
      if (a.group !== SUBRESOURCE_GROUP && apiNotServed(err)) {
        return new NotFoundError(`the KeyVirt API (${a.group}) is not installed in this cluster: apply the CRDs (crds/manifests) or the Helm chart`, { cause: err });
      }
      return new NotFoundError(notFoundMessage(a, serverSays), { cause: err });
    case 409:
      return new StateError(`${objectWords(a)} in namespace "${a.namespace}": ${serverSays}`, { cause: err });
    case 503:
      if (a.group === SUBRESOURCE_GROUP && /^service unavailable$/i.test(serverSays.trim())) {
        return new UnreachableError(
          `the KeyVirt subresource API is unavailable: the API server cannot reach the operator behind APIService v1alpha1.${SUBRESOURCE_GROUP} (kubectl get apiservice v1alpha1.${SUBRESOURCE_GROUP}; is the operator running?)`,
          { cause: err },
        );
      }
      return new UnreachableError(`${a.resource} of ${objectWords(a)} in namespace "${a.namespace}" is unavailable: ${serverSays}`, { cause: err });
    default:
      return new PluginError(`${a.verb} ${a.resource} in namespace "${a.namespace}" failed: ${String(err.statusCode)} ${err.reason}: ${serverSays}`, 1, { cause: err });
  }
}

function notFoundMessage(a: Attempt, serverSays: string): string {
  if (a.name === undefined) return `${a.resource} not found in namespace "${a.namespace}": ${serverSays}`;
  // The subresource server's 404 names what is missing (the VM, or no unfinished migration): keep its words.
  if (a.group === SUBRESOURCE_GROUP && !/not found/i.test(serverSays)) return `${objectWords(a)} in namespace "${a.namespace}": ${serverSays}`;
  if (a.group === SUBRESOURCE_GROUP && !serverSays.includes(`"${a.name}"`) && !serverSays.includes(`/${a.name}`)) {
    return `${objectWords(a)} in namespace "${a.namespace}": ${serverSays}`;
  }
  return `${objectWords(a)} not found in namespace "${a.namespace}"`;
}

/** KubeApiError prefixes `METHOD /path: code reason: `; users need only the server's words. */
function stripPath(message: string): string {
  const m = /^[A-Z]+ \S+: \d+ [A-Za-z]+: (.*)$/s.exec(message);
  return m?.[1] ?? message;
}
