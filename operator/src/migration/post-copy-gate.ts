// Post-copy only into a node that can receive it: a post-copy target QEMU needs
// userfaultfd(2), which a launcher without capabilities gets only where the node agent
// has found (or set) vm.unprivileged_userfaultfd=1 and labelled the node
// keyvirt.io/postcopy=true (docs/adr/0057). Elsewhere the target would refuse the
// post-copy capability and the migration would fail before copying a byte; instead it
// runs pre-copy only, and says why.
import type { Node } from '../runtime/core-schemas.ts';

export const POSTCOPY_NODE_LABEL = 'keyvirt.io/postcopy';
export const POSTCOPY_REASON_NODE_ANNOTATION = 'keyvirt.io/postcopy-reason';

export interface PostCopyGate<P extends { readonly postCopy: boolean }> {
  readonly policy: P;
  /** Set when the policy allowed post-copy and the target cannot receive it. */
  readonly notice?: string;
}

/**
 * The policy handed to both launchers: post-copy kept only when the target node is
 * labelled capable and the VM holds no storage lease (a highly available VM's lease
 * passes to the target only once the source has stopped, docs/adr/0063; the target's
 * launcher refuses post-copy); pure.
 */
export function gatePostCopy<P extends { readonly postCopy: boolean }>(policy: P, targetNodeName: string | undefined, nodes: readonly Node[], highlyAvailable = false): PostCopyGate<P> {
  if (!policy.postCopy) return { policy };
  if (highlyAvailable) {
    return {
      policy: { ...policy, postCopy: false },
      notice: 'post-copy is allowed but the VM is highly available: its storage lease passes to the target only after the source has stopped, which post-copy cannot wait for; pre-copy only',
    };
  }
  const node = nodes.find((n) => n.metadata.name === targetNodeName);
  if (node?.metadata.labels?.[POSTCOPY_NODE_LABEL] === 'true') return { policy };
  const why = node === undefined
    ? `the target node ${targetNodeName ?? '(none)'} is unknown`
    : node.metadata.annotations?.[POSTCOPY_REASON_NODE_ANNOTATION] ?? `the target node has no ${POSTCOPY_NODE_LABEL}=true label (no node agent describes it)`;
  return {
    policy: { ...policy, postCopy: false },
    notice: `post-copy is allowed but ${targetNodeName ?? 'the target node'} cannot receive it (${why}); pre-copy only`,
  };
}
