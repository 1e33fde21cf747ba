import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resourceOf } from './kube-client.ts';

describe('resourceOf', () => {
  const cases: [string, string][] = [
    ['/api/v1/namespaces/ns/pods', 'pods'],
    ['/api/v1/namespaces/ns/pods/name/status', 'pods'],
    ['/api/v1/nodes/kwok-0', 'nodes'],
    ['/api/v1/namespaces', 'namespaces'],
    ['/api/v1/namespaces/ns', 'namespaces'],
    ['/apis/keyvirt.io/v1alpha1/namespaces/ns/virtualmachines/vm/status', 'virtualmachines'],
    ['/apis/coordination.k8s.io/v1/namespaces/ns/leases/l', 'leases'],
    ['/apis/keyvirt.io/v1alpha1/storagedomains?limit=500', 'storagedomains'],
    ['/apis/authorization.k8s.io/v1/subjectaccessreviews', 'subjectaccessreviews'],
    ['/version', 'other'],
  ];
  for (const [path, want] of cases) {
    it(`${path} → ${want}`, () => assert.equal(resourceOf(path), want));
  }
});
