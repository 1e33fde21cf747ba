// The node agent as a process on the host for one node (as the node agent suites run
// it), serving per-VM metrics on a loopback port; and reading one sample of its text.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { eventually, type TestCluster } from '../support/cluster.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');

export interface MetricsNodeAgent {
  readonly port: number;
  scrape(): Promise<string>;
  output(): string;
  stop(): Promise<void>;
}

/** Starts the node agent for `nodeName` with the metrics key in `keyFile`, reading launchers every second. */
export async function startMetricsNodeAgent(cluster: TestCluster, nodeName: string, keyFile: string): Promise<MetricsNodeAgent> {
  const child: ChildProcess = spawn(process.execPath, [path.join(repoRoot, 'operator/src/node-agent/main.ts')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      KUBECONFIG: cluster.kubeconfig,
      NODE_NAME: nodeName,
      KEYVIRT_SYSFS_ROOT: path.join(repoRoot, 'test/fixtures/sysfs/passthrough-host'),
      KEYVIRT_NODE_AGENT_INTERVAL_SECONDS: '60',
      KEYVIRT_METRICS_ADDRESS: '127.0.0.1:0',
      KEYVIRT_METRICS_KEY_FILE: keyFile,
      KEYVIRT_METRICS_INTERVAL_SECONDS: '1',
      KEYVIRT_LOG_LEVEL: 'info',
    },
  });
  let output = '';
  const collect = (chunk: Buffer): void => {
    output += chunk.toString();
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(10_000)]);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  try {
    const port = await eventually('the node agent serving /metrics', () => {
      const line = output.split('\n').find((l) => l.includes('serving per-VM metrics'));
      return line === undefined ? undefined : (JSON.parse(line) as { port: number }).port;
    }, 60_000);
    return { port, scrape: async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), output: () => output, stop };
  } catch (err) {
    await stop();
    throw new Error(`the node agent did not serve /metrics:\n${output}`, { cause: err });
  }
}

/** The value of the sample of `name` whose labels include `labels`, or undefined. */
export function sampleValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const body = line.slice(name.length + 1, line.lastIndexOf('}'));
    const have = Object.fromEntries([...body.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}
