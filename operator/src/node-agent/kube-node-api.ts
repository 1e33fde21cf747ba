// NodeApi over @kubernetes/client-node: GET the node, JSON-merge-patch its
// metadata and its status subresource.
import { CoreV1Api, PatchStrategy, setHeaderOptions, type KubeConfig } from '@kubernetes/client-node';
import type { LauncherPodApi } from './launcher-pods.ts';
import type { NodeApi } from './node-agent.ts';

const FIELD_MANAGER = 'keyvirt-node-agent';

export function kubeNodeApi(config: KubeConfig): NodeApi {
  const core = config.makeApiClient(CoreV1Api);
  const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
  return {
    readNode: async (name) => core.readNode({ name }),
    patchNode: async (name, patch) => {
      await core.patchNode({ name, body: patch, fieldManager: FIELD_MANAGER }, merge);
    },
    patchNodeStatus: async (name, patch) => {
      await core.patchNodeStatus({ name, body: patch, fieldManager: FIELD_MANAGER }, merge);
    },
  };
}

/** Lists pods across namespaces by field and label selector (the launcher pods of one node). */
export function kubeLauncherPodApi(config: KubeConfig): LauncherPodApi {
  const core = config.makeApiClient(CoreV1Api);
  return {
    listPods: async (fieldSelector, labelSelector) => core.listPodForAllNamespaces({ fieldSelector, labelSelector }),
  };
}
