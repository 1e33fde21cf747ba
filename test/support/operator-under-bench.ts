// An operator started the way the benchmarks start it: from a checkout (the working tree,
// or a revision for a paired baseline) as that revision's image runs it (its bundle, or
// its sources before there was one) with that revision's Node flags, its output in a log
// file, optionally under `node --cpu-prof`.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { access, mkdir, readFile, symlink } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { BUNDLE_NODE_FLAGS, buildOperator } from '../../hack/operator-build/build-operator.ts';
import { OPERATOR_NAMESPACE } from '../operator/operator-process.ts';
import { TEST_RUN_LABEL, type Scratch } from '../operator/vm-fixtures.ts';

const repoRoot = path.resolve(import.meta.dirname, '..', '..');

export interface OperatorRun {
  readonly pid: number;
  readonly port: Promise<number>;
  /** Every port its health server listened on: a manager that lost its lease starts over on a new one. */
  readonly ports: readonly number[];
  readonly exited: Promise<void>;
  kill(): void;
}

/** What runs a tree's operator: a script and the Node flags it needs. */
export interface OperatorEntry {
  readonly script: string;
  readonly flags: readonly string[];
  /** `bundle` (hack/operator-build) or `source` (operator/src/main.ts). */
  readonly kind: 'bundle' | 'source';
}

/**
 * The operator of `tree` as that revision's image runs it: its bundle, built from the
 * tree (cached by content hash), when its operator/Containerfile starts one; its
 * sources otherwise (revisions before ADR 0125).
 */
export async function operatorEntryOf(tree: string): Promise<OperatorEntry> {
  const containerfile = await readFile(path.join(tree, 'operator/Containerfile'), 'utf8');
  const entrypoint = z.array(z.string()).parse(JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(containerfile)?.[1] ?? '[]'));
  if (entrypoint.at(-1)?.endsWith('.ts') === true) return { script: path.join(tree, 'operator/src/main.ts'), flags: [], kind: 'source' };
  const build = buildOperator(tree, path.join(tree, 'hack', '.cache', 'operator-build'));
  return { script: build.operator, flags: BUNDLE_NODE_FLAGS, kind: 'bundle' };
}

/**
 * Starts the operator of `tree` (a checkout; `entry` from operatorEntryOf) with the run's
 * kubeconfig. Its output goes straight to `logFile` (a pipe read by this process would
 * hold the operator's writes whenever this process is busy); the file is read for the
 * health server's port.
 */
export function startOperatorFrom(tree: { entry: OperatorEntry; nodeFlags: readonly string[] }, kubeconfig: string, s: Scratch, logFile: string, run: { workers: number; apiQps: number | undefined; profile: { dir: string; name: string } | undefined }): OperatorRun {
  const { workers, profile } = run;
  const args = [
    ...tree.entry.flags,
    ...tree.nodeFlags,
    ...(profile === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profile.dir}`, `--cpu-prof-name=${profile.name}`]),
    tree.entry.script,
    '--kubeconfig', kubeconfig,
    '--namespace', OPERATOR_NAMESPACE,
    '--identity', `scale-${s.runId}`,
    '--lease-name', `keyvirt-e2e-${s.runId}`,
    '--health-address', '127.0.0.1:0',
    '--metrics-address', '127.0.0.1:0',
    '--allow-emulation', 'true',
    '--vm-selector', `${TEST_RUN_LABEL}=${s.runId}`,
    '--storage-domain-selector', `${TEST_RUN_LABEL}=${s.runId}`,
    '--workers', String(workers),
    ...(run.apiQps === undefined ? [] : ['--api-qps', String(run.apiQps), '--api-burst', String(run.apiQps * 2)]),
  ];
  const fd = openSync(logFile, 'a');
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', fd, fd], env: { ...process.env, KUBECONFIG: kubeconfig } });
  closeSync(fd);
  const ports: number[] = [];
  let offset = 0;
  let pending = '';
  const scan = async (): Promise<void> => {
    const text = await readFile(logFile);
    pending += text.subarray(offset).toString('utf8');
    offset = text.length;
    for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
      const m = /"port":(\d+).*"msg":"health and metrics server listening"/.exec(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
      if (m !== null) ports.push(Number(m[1]));
    }
  };
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let alive = true;
  void exited.then(() => (alive = false));
  const port = (async (): Promise<number> => {
    while (ports.length === 0) {
      if (!alive) throw new Error(`operator exited:\n${(await readFile(logFile, 'utf8')).slice(-3000)}`);
      await sleep(200);
      await scan();
    }
    return ports[0] ?? 0;
  })();
  // Keeps noticing new lives of the manager (a new health port) until the process ends.
  void (async (): Promise<void> => {
    while (alive) {
      await sleep(500);
      await scan();
    }
  })();
  if (child.pid === undefined) throw new Error('operator did not start');
  // A profiled operator writes its profile as it exits: it is stopped as a pod is (SIGTERM), killed only if it hangs.
  const kill = (): void => {
    if (profile === undefined) {
      child.kill('SIGKILL');
      return;
    }
    child.kill('SIGTERM');
    const hung = setTimeout(() => child.kill('SIGKILL'), 120_000);
    void exited.then(() => clearTimeout(hung));
  };
  return { pid: child.pid, port, ports, exited, kill };
}

/** A checkout of the operator at `rev` (its own operator/ tree, the repository's node_modules). */
export async function treeAt(rev: string, dir: string): Promise<string> {
  const tree = path.join(dir, `tree-${rev.replace(/[^a-zA-Z0-9]/g, '_')}`);
  await mkdir(tree, { recursive: true });
  const archive = execFileSync('git', ['-C', repoRoot, 'archive', rev, 'operator'], { maxBuffer: 1 << 28 });
  execFileSync('tar', ['-x', '-C', tree], { input: archive });
  await symlink(path.join(repoRoot, 'node_modules'), path.join(tree, 'node_modules'));
  return tree;
}

/** The Node flags the operator image runs `tree`'s operator with (none before they existed). */
export async function nodeFlagsOf(tree: string): Promise<readonly string[]> {
  const file = path.join(tree, 'operator/src/runtime/node-flags.ts');
  try {
    await access(file);
  } catch {
    return [];
  }
  const mod = z.object({ OPERATOR_NODE_FLAGS: z.array(z.string()).readonly() }).parse(await import(pathToFileURL(file).href));
  return mod.OPERATOR_NODE_FLAGS;
}
