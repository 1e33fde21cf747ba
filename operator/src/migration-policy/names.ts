// Where MigrationPolicies live in the API.
import { GROUP, VERSION } from '@keyvirt/crds';
import type { ResourceType } from '../runtime/resource.ts';

export const migrationPolicyType: ResourceType = {
  group: GROUP,
  version: VERSION,
  plural: 'migrationpolicies',
  kind: 'MigrationPolicy',
  namespaced: false,
};
