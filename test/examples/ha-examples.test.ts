// Every HA VM among the examples can hold its storage lease: its first StorageDomain disk
// is on a domain defined in the same file that the operator accepts for the lease (a
// shared posix domain), so applying the file gives HighAvailability=True, not a VM the
// operator refuses to protect.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { StorageDomain, VirtualMachine } from '@keyvirt/crds';
import { readDocuments, REPO_ROOT } from '../../crds/src/manifest-files.ts';
import { leaseDomainOf } from '../../operator/src/vm/disk-volumes.ts';

const examplesDir = path.join(REPO_ROOT, 'examples');
const files = readdirSync(examplesDir).filter((f) => f.endsWith('.yaml'));

function kindOf(doc: unknown): unknown {
  return typeof doc === 'object' && doc !== null ? (doc as { kind?: unknown }).kind : undefined;
}

void test('the examples hold at least one HA VM', () => {
  const ha = files.flatMap((f) => readDocuments(path.join(examplesDir, f))).filter((d) => kindOf(d) === 'VirtualMachine' && VirtualMachine.parse(d).spec.highAvailability?.enabled);
  assert.ok(ha.length > 0);
});

for (const file of files) {
  void test(`examples/${file}: each HA VM has a lease domain defined beside it`, () => {
    const docs = readDocuments(path.join(examplesDir, file));
    const domains = new Map(docs.filter((d) => kindOf(d) === 'StorageDomain').map((d) => StorageDomain.parse(d)).map((sd) => [sd.metadata.name, sd]));
    for (const vm of docs.filter((d) => kindOf(d) === 'VirtualMachine').map((d) => VirtualMachine.parse(d))) {
      if (!vm.spec.highAvailability?.enabled) continue;
      const lease = leaseDomainOf(vm, { storageDomain: (name) => domains.get(name) });
      assert.ok(!('problem' in lease), `${vm.metadata.name}: ${'problem' in lease ? lease.problem : ''}`);
    }
  });
}
