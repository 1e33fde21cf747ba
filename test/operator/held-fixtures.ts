// What the suites of held launchers (ADRs 0134-0136) read off the node: the processes of
// a pod's containers and of the node agent, as the node's procfs shows them, and the
// agent's JSON log lines as the simulated node keeps its container logs.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { cgroupNamesPod } from '../../operator/src/node-agent/network/pod-netns.ts';

export interface PodProcess {
  pid: number;
  argv: string[];
  rssKiB: number;
  pssKiB: number;
  privateKiB: number;
}

function kib(text: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return m === null ? 0 : Number(m[1]);
}

/** The processes of the pod's containers (in a PID namespace of their own), as the node sees them. */
export async function podProcesses(podUid: string): Promise<PodProcess[]> {
  const out: PodProcess[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const dir = path.join('/proc', entry);
    const [cgroup, status, cmdline, rollup] = await Promise.all(
      ['cgroup', 'status', 'cmdline', 'smaps_rollup'].map((f) => readFile(path.join(dir, f), 'utf8').catch(() => '')),
    );
    if (cgroup === undefined || !cgroupNamesPod(cgroup, podUid)) continue;
    const nspid = /^NSpid:\s+(.*)$/m.exec(status ?? '')?.[1]?.trim().split(/\s+/) ?? [];
    if (nspid.length < 2) continue; // the simulator's own wrapper, outside the pod's PID namespace
    out.push({
      pid: Number(entry),
      argv: (cmdline ?? '').split('\0').filter((a) => a !== ''),
      rssKiB: kib(status ?? '', 'VmRSS'),
      pssKiB: kib(rollup ?? '', 'Pss'),
      privateKiB: kib(rollup ?? '', 'Private_Clean') + kib(rollup ?? '', 'Private_Dirty'),
    });
  }
  return out;
}

/** The node agent's processes: those of its pod running its bundle, with their resident sets. */
export async function agentProcesses(podUid: string): Promise<{ pid: number; rssKiB: number }[]> {
  const out: { pid: number; rssKiB: number }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const dir = path.join('/proc', entry);
    const [cgroup, status, cmdline] = await Promise.all(['cgroup', 'status', 'cmdline'].map((f) => readFile(path.join(dir, f), 'utf8').catch(() => '')));
    if (cgroup === undefined || !cgroupNamesPod(cgroup, podUid) || !(cmdline ?? '').includes('node-agent')) continue;
    out.push({ pid: Number(entry), rssKiB: kib(status ?? '', 'VmRSS') });
  }
  return out;
}

export const agentRssKiB = async (podUid: string): Promise<number> => (await agentProcesses(podUid)).reduce((a, p) => a + p.rssKiB, 0);
export const agentPids = async (podUid: string): Promise<number[]> => (await agentProcesses(podUid)).map((p) => p.pid);

export const ADOPTING = 'adopting the QEMU an earlier node agent started in this pod';
const LogLine = z.object({ msg: z.string().optional(), pod: z.string().optional() }).loose();
export type AgentLogLine = z.infer<typeof LogLine>;

/** The JSON lines of the agent pod's container logs, as the simulated node keeps them. */
export async function agentLogLines(dir: string): Promise<z.infer<typeof LogLine>[]> {
  const files = (await readdir(dir).catch(() => [])).filter((f) => f.endsWith('.log'));
  const texts = await Promise.all(files.map((f) => readFile(path.join(dir, f), 'utf8').catch(() => '')));
  return texts.flatMap((t) => t.split('\n')).flatMap((l) => {
    try {
      const parsed = LogLine.safeParse(JSON.parse(l));
      return parsed.success ? [parsed.data] : [];
    } catch {
      return [];
    }
  });
}
