// The post-mortem of a failed scenario on throwaway nodes: the operator log and the logs
// those nodes hold of their pods (container logs, the launchers' serial logs while they
// run), copied to a temp directory that outlives the nodes.
import { lstatSync } from 'node:fs';
import { cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestCluster } from '../support/cluster.ts';
import type { Scratch } from './vm-fixtures.ts';

/** Copies the evidence and says where it is on stderr (`<scenario> evidence: <dir>`). */
export async function keepEvidence(scenario: string, cluster: TestCluster, s: Scratch, nodes: readonly string[]): Promise<void> {
  const dest = path.join(tmpdir(), `${path.basename(s.dir)}-evidence`);
  // Logs only (container logs, serial logs): never the Secrets and TLS keys the pods hold.
  const logs = (src: string): boolean => {
    const st = lstatSync(src, { throwIfNoEntry: false });
    return st !== undefined && (st.isDirectory() || (st.isFile() && /\.log(\.\d+)?$/.test(src) && st.size < 16 * 1024 * 1024));
  };
  await cp(path.join(s.dir, 'operator.log'), path.join(dest, 'operator.log')).catch(() => undefined);
  for (const n of nodes) await cp(path.join(cluster.layout.nodesDir, n, 'pods'), path.join(dest, n), { recursive: true, filter: logs }).catch(() => undefined);
  process.stderr.write(`${scenario} evidence: ${dest}\n`);
}
