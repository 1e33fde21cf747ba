import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { admitMigration } from './migration-admission.ts';

const defaults = { parallelMigrationsPerCluster: 5, parallelOutboundMigrationsPerNode: 2 };
const from = (...nodes: string[]): { sourceNode: string }[] => nodes.map((sourceNode) => ({ sourceNode }));

void describe('admitMigration', () => {
  const cases: [string, string, { sourceNode: string }[], typeof defaults, ReturnType<typeof admitMigration>][] = [
    ['nothing running', 'n1', [], defaults, { admitted: true }],
    ['one leaves the node, limit 2', 'n1', from('n1'), defaults, { admitted: true }],
    [
      'two leave the node, limit 2',
      'n1',
      from('n1', 'n1'),
      defaults,
      { admitted: false, reason: '2 migrations already leave node n1 (parallelOutboundMigrationsPerNode=2)' },
    ],
    [
      'one leaves the node, limit 1',
      'n1',
      from('n1'),
      { parallelMigrationsPerCluster: 5, parallelOutboundMigrationsPerNode: 1 },
      { admitted: false, reason: '1 migration already leaves node n1 (parallelOutboundMigrationsPerNode=1)' },
    ],
    ['other nodes do not count against the node limit', 'n3', from('n1', 'n1', 'n2', 'n2'), defaults, { admitted: true }],
    [
      'the cluster is full',
      'n4',
      from('n1', 'n1', 'n2', 'n2', 'n3'),
      defaults,
      { admitted: false, reason: '5 migrations already run in the cluster (parallelMigrationsPerCluster=5)' },
    ],
    [
      'cluster limit 1',
      'n2',
      from('n1'),
      { parallelMigrationsPerCluster: 1, parallelOutboundMigrationsPerNode: 1 },
      { admitted: false, reason: '1 migration already runs in the cluster (parallelMigrationsPerCluster=1)' },
    ],
    [
      'the node limit is reported when both are reached',
      'n1',
      from('n1', 'n1', 'n2', 'n2', 'n3'),
      defaults,
      { admitted: false, reason: '2 migrations already leave node n1 (parallelOutboundMigrationsPerNode=2)' },
    ],
  ];
  for (const [name, node, running, limits, expected] of cases) {
    void it(name, () => assert.deepEqual(admitMigration({ sourceNode: node }, running, limits), expected));
  }
});
