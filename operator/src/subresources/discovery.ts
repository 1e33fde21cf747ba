// The discovery documents the kube-apiserver's aggregator reads to mark the APIService
// Available and to list the group (legacy discovery: the aggregator falls back to it
// when /apis does not answer in the aggregated format).
import { IMAGE_UPLOAD, SUBRESOURCE_GROUP, SUBRESOURCE_VERSION, SUBRESOURCES } from './request-routing.ts';

const groupVersion = `${SUBRESOURCE_GROUP}/${SUBRESOURCE_VERSION}`;

function group(): Record<string, unknown> {
  const version = { groupVersion, version: SUBRESOURCE_VERSION };
  return { name: SUBRESOURCE_GROUP, versions: [version], preferredVersion: version };
}

export function discoveryDocument(document: 'apis' | 'group' | 'version'): Record<string, unknown> {
  switch (document) {
    case 'apis':
      return { kind: 'APIGroupList', apiVersion: 'v1', groups: [group()] };
    case 'group':
      return { kind: 'APIGroup', apiVersion: 'v1', ...group() };
    case 'version':
      return {
        kind: 'APIResourceList',
        apiVersion: 'v1',
        groupVersion,
        resources: [
          // Listed without verbs (nothing is served on it) so that clients' REST mappers
          // know the resource: `kubectl auth can-i get virtualmachines.subresources.keyvirt.io
          // --subresource=console` resolves it instead of asking about a group-less name.
          { name: 'virtualmachines', singularName: 'virtualmachine', namespaced: true, kind: 'VirtualMachine', verbs: [] },
          ...Object.entries(SUBRESOURCES).map(([name, spec]) => ({
            name: `virtualmachines/${name}`,
            singularName: '',
            namespaced: true,
            kind: 'VirtualMachine',
            verbs: [spec.verb],
          })),
          { name: 'virtualmachineimages', singularName: 'virtualmachineimage', namespaced: true, kind: 'VirtualMachineImage', verbs: [] },
          { name: `virtualmachineimages/${IMAGE_UPLOAD}`, singularName: '', namespaced: true, kind: 'VirtualMachineImage', verbs: ['create', 'update'] },
        ],
      };
  }
}
