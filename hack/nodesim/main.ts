// Entry point of one simulated node (run inside the node's network namespace by
// hack/cluster/nodes.ts): `node hack/nodesim/main.ts --node-name=<n> --node-index=<k> ...`
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { z } from 'zod';
import { repoRoot } from '../cluster/layout.ts';
import { hardwareKvm, NodeAgent } from './node-agent.ts';
import { checkStorageView } from './storage-view.ts';

const argsSchema = z.object({
  'node-name': z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/),
  'node-index': z.coerce.number().int().min(1).max(15),
  kubeconfig: z.string().min(1),
  'state-dir': z.string().min(1),
  'kubernetes-version': z.string().min(1),
  cpu: z.string().default('8'),
  memory: z.string().default('16Gi'),
  pods: z.coerce.number().int().min(1).max(13).default(13),
  label: z.array(z.string().regex(/^[^=]+=[^=]*$/)).default([]),
  taint: z.array(z.string().regex(/^[^=:]+(=[^:]*)?:(NoSchedule|PreferNoSchedule|NoExecute)$/)).default([]),
  'storage-root': z.string().min(1).optional(),
  'storage-view': z.string().min(1).optional(),
  'device-plugin': z.enum(['builtin', 'external']).default('builtin'),
}).refine((a) => (a['storage-root'] === undefined) === (a['storage-view'] === undefined), {
  message: '--storage-root and --storage-view go together', path: ['storage-view'],
});

const { values } = parseArgs({
  options: {
    'node-name': { type: 'string' }, 'node-index': { type: 'string' }, kubeconfig: { type: 'string' },
    'state-dir': { type: 'string' }, 'kubernetes-version': { type: 'string' }, cpu: { type: 'string' },
    memory: { type: 'string' }, pods: { type: 'string' }, label: { type: 'string', multiple: true },
    taint: { type: 'string', multiple: true }, 'storage-root': { type: 'string' }, 'storage-view': { type: 'string' },
    'device-plugin': { type: 'string' },
  },
});
const args = argsSchema.parse(values);
const log = pino({ base: { node: args['node-name'] } });

const kvm = hardwareKvm();
const labels: Record<string, string> = {
  'kubernetes.io/hostname': args['node-name'],
  'kubernetes.io/os': 'linux',
  'kubernetes.io/arch': 'amd64',
  'keyvirt.io/simulated': 'true',
  'keyvirt.io/kvm': kvm ? 'true' : 'false',
  'keyvirt.io/emulation': kvm ? 'false' : 'true',
};
for (const pair of args.label) {
  const [k, v] = pair.split('=');
  labels[k ?? ''] = v ?? '';
}

const agent = new NodeAgent({
  name: args['node-name'],
  index: args['node-index'],
  kubeconfigPath: args.kubeconfig,
  stateDir: args['state-dir'],
  images: { repoRoot, stateDir: path.join(repoRoot, '.keyvirt'), nodeBinary: process.execPath },
  capacity: { cpu: args.cpu, memory: args.memory, pods: args.pods },
  labels,
  taints: args.taint.map((t) => {
    const [keyValue = '', effect = ''] = t.split(':');
    const [key = '', value] = keyValue.split('=');
    return { key, value, effect };
  }),
  kubernetesVersion: args['kubernetes-version'],
  leaseDurationSeconds: 40,
  devicePlugin: args['device-plugin'],
  storageView: args['storage-root'] === undefined || args['storage-view'] === undefined
    ? undefined
    : checkStorageView({ root: args['storage-root'], mountPoint: args['storage-view'] }),
}, log);

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    void agent.shutdown(5).finally(() => process.exit(0));
  });
}

try {
  await agent.run();
} catch (err) {
  log.error({ err }, 'node simulator failed');
  process.exit(1);
}
