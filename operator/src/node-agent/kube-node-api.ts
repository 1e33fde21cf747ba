// The node agent's API calls over the operator's KubeClient (one way to call the API
// server): GET the node, JSON-merge-patch its metadata and its status subresource; list
// one node's launcher pods.
import type { KubeClient } from '../runtime/kube-client.ts';
import { collectionPath, coreTypes, objectPath } from '../runtime/resource.ts';
import type { LauncherPodApi } from './launcher-pods.ts';
import type { NodeApi } from './node-agent.ts';

/** The field manager of the node agent's writes. */
export const NODE_AGENT_FIELD_MANAGER = 'keyvirt-node-agent';

export function kubeNodeApi(client: KubeClient): NodeApi {
  return {
    readNode: (name) => client.get(objectPath(coreTypes.node, { name })),
    patchNode: async (name, patch) => {
      await client.patch(objectPath(coreTypes.node, { name }), patch, 'merge');
    },
    patchNodeStatus: async (name, patch) => {
      await client.patch(objectPath(coreTypes.node, { name }, 'status'), patch, 'merge');
    },
  };
}

export class NoApiAccessError extends Error {
  override readonly name = 'NoApiAccessError';
}

/** The NodeApi of an agent that found no API access (logged at start): every call fails, saying so. */
export function nodeApiWithoutAccess(): NodeApi {
  const fail = (): Promise<never> => Promise.reject(new NoApiAccessError('no API access (no kubeconfig and no service account): the node cannot be read or patched'));
  return { readNode: fail, patchNode: fail, patchNodeStatus: fail };
}

/** Lists pods across namespaces by field and label selector (the launcher pods of one node). */
export function kubeLauncherPodApi(client: KubeClient): LauncherPodApi {
  return {
    listPods: (fieldSelector, labelSelector) => client.request('GET', collectionPath(coreTypes.pod), { query: { fieldSelector, labelSelector } }),
  };
}
