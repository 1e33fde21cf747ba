// Reading a StorageDomain from the local cluster as the storage suites check it: the
// object now (parsed by the CRD's own schema), or the first one that satisfies a check.
import { StorageDomain } from '@keyvirt/crds';
import { eventually, type TestCluster } from '../support/cluster.ts';

/** The domain, or undefined once it is gone. */
export function getStorageDomain(cluster: TestCluster, name: string): StorageDomain | undefined {
  const out = cluster.kubectl(['get', 'storagedomain', name, '-o', 'json', '--ignore-not-found']);
  return out.trim() === '' ? undefined : StorageDomain.parse(JSON.parse(out));
}

/** Polls the domain (every second) until `ok` holds; `what` names the wait in its timeout error. */
export function waitStorageDomain(cluster: TestCluster, name: string, what: string, ok: (sd: StorageDomain) => boolean, timeoutMs = 120_000): Promise<StorageDomain> {
  return eventually(`StorageDomain ${what}`, () => {
    const sd = getStorageDomain(cluster, name);
    return sd !== undefined && ok(sd) ? sd : undefined;
  }, timeoutMs, 1000);
}
