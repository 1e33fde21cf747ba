// What the image suites and the image-import benchmark share: a local StorageDomain
// over a directory of this machine (the simulated nodes share it, so a test reads the
// imported files directly), a file server pod inside the cluster over another
// directory, typed reads of VirtualMachineImages, and the clean-up that lets the
// operator remove the images' files first.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { VirtualMachineImage, type StorageDomainInput, type VirtualMachineImageInput } from '@keyvirt/crds';
import { z } from 'zod';
import { eventually, type TestCluster } from '../support/cluster.ts';
import { deleteDomainJobPods, OPERATOR_NAMESPACE } from '../operator/operator-process.ts';
import { apply, type Scratch, TEST_RUN_LABEL } from '../operator/vm-fixtures.ts';

const repoRoot = path.resolve(import.meta.dirname, '../..');
export const SERVER_PORT = 8080;

const podView = z.object({ status: z.object({ phase: z.string().optional(), podIP: z.string().optional() }).optional() });

export interface ImageBench {
  readonly domain: string;
  readonly domainDir: string;
  readonly srvDir: string;
  readonly serverIp: string;
  url(file: string): string;
  getImage(name: string): VirtualMachineImage | undefined;
  waitImage(name: string, what: string, ok: (i: VirtualMachineImage) => boolean, timeoutMs?: number): Promise<VirtualMachineImage>;
  httpImage(name: string, url: string, extra?: { sha256?: string; format?: 'qcow2' | 'raw' }): VirtualMachineImageInput;
  /** Deletes the images while the operator runs (their files go), then the domain's objects. `stopOperator` runs in between. */
  cleanup(stopOperator: () => Promise<void>): Promise<void>;
}

/** Starts the file server pod (files of `srvDir`, at most `rate` bytes/s, 0 for no limit). */
async function startServer(cluster: TestCluster, s: Scratch, srvDir: string, rate: number): Promise<string> {
  apply(cluster, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'image-server', namespace: s.namespace },
    spec: {
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 2,
      containers: [
        {
          name: 'server',
          image: 'keyvirt/operator:dev',
          imagePullPolicy: 'Never',
          command: ['node', path.join(repoRoot, 'test/image/image-server.ts'), '/srv', String(SERVER_PORT), String(rate)],
          volumeMounts: [{ name: 'srv', mountPath: '/srv', readOnly: true }],
        },
      ],
      volumes: [{ name: 'srv', hostPath: { path: srvDir, type: 'Directory' } }],
    },
  });
  return eventually('the image server pod runs', () => {
    const pod = podView.parse(JSON.parse(cluster.kubectl(['get', 'pod', 'image-server', '-n', s.namespace, '-o', 'json'])));
    return pod.status?.phase === 'Running' ? pod.status.podIP : undefined;
  }, 120_000);
}

/**
 * A local domain `sd-img-<runId>` over `<scratch>/domain` and the file server over
 * `<scratch>/srv` (filled by `fill` before the server starts); resolves once the domain
 * is Active. The suite's operator must be running.
 */
export async function imageBench(cluster: TestCluster, s: Scratch, options: { rate: number; fill: (srvDir: string) => Promise<void> }): Promise<ImageBench> {
  const domain = `sd-img-${s.runId}`;
  const domainDir = path.join(s.dir, 'domain');
  const srvDir = path.join(s.dir, 'srv');
  await mkdir(domainDir, { recursive: true });
  await mkdir(srvDir, { recursive: true });
  await options.fill(srvDir);
  const manifest: StorageDomainInput = {
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'StorageDomain',
    metadata: { name: domain, labels: { [TEST_RUN_LABEL]: s.runId } },
    spec: { type: 'local', local: { path: domainDir }, thresholds: { warningPercent: 99, criticalFreeGiB: 0 } },
  };
  apply(cluster, manifest);
  const serverIp = await startServer(cluster, s, srvDir, options.rate);
  await eventually(`StorageDomain ${domain} Active`, () => (cluster.kubectl(['get', 'storagedomain', domain, '-o', 'jsonpath={.status.phase}']) === 'Active' ? true : undefined), 240_000, 1000);
  const getImage = (name: string): VirtualMachineImage | undefined => {
    const out = cluster.kubectl(['get', 'virtualmachineimage', name, '-n', s.namespace, '-o', 'json', '--ignore-not-found']);
    return out.trim() === '' ? undefined : VirtualMachineImage.parse(JSON.parse(out));
  };
  return {
    domain,
    domainDir,
    srvDir,
    serverIp,
    url: (file) => `http://${serverIp}:${SERVER_PORT}/${file}`,
    getImage,
    waitImage: (name, what, ok, timeoutMs = 240_000) =>
      eventually(`image ${name} ${what}`, () => {
        const i = getImage(name);
        return i !== undefined && ok(i) ? i : undefined;
      }, timeoutMs, 300),
    httpImage: (name, url, extra = {}) => ({
      apiVersion: 'keyvirt.io/v1alpha1',
      kind: 'VirtualMachineImage',
      metadata: { name, namespace: s.namespace, labels: { [TEST_RUN_LABEL]: s.runId } },
      spec: { storageDomain: domain, format: extra.format ?? 'raw', source: { http: { url, ...(extra.sha256 === undefined ? {} : { sha256: extra.sha256 }) } } },
    }),
    cleanup: async (stopOperator) => {
      cluster.kubectl(['delete', 'virtualmachineimages', '--all', '-n', s.namespace, '--wait=false', '--ignore-not-found']);
      await eventually('images gone', () => (cluster.kubectl(['get', 'virtualmachineimages', '-n', s.namespace, '-o', 'name']).trim() === '' ? true : undefined), 120_000, 1000).catch(() => undefined);
      await stopOperator();
      for (const name of cluster.kubectl(['get', 'virtualmachineimages', '-n', s.namespace, '-o', 'name']).split('\n').filter((l) => l !== '')) {
        cluster.kubectl(['patch', '-n', s.namespace, name, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      }
      cluster.kubectl(['patch', 'storagedomain', domain, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
      cluster.kubectl(['delete', 'storagedomain', domain, '--ignore-not-found', '--wait=false']);
      deleteDomainJobPods(cluster, domain);
      cluster.kubectl(['delete', 'pod', `keyvirt-sd-probe-${domain}`, '-n', OPERATOR_NAMESPACE, '--ignore-not-found', '--wait=false']);
      cluster.kubectl(['delete', 'pvc', `keyvirt-sd-${domain}`, '-n', OPERATOR_NAMESPACE, '--ignore-not-found', '--wait=false']);
      cluster.kubectl(['delete', 'pv', `keyvirt-sd-${domain}`, '--ignore-not-found', '--wait=false']);
      await s.cleanup();
    },
  };
}
