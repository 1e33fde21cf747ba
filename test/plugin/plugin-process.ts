// Runs `kubectl keyvirt` as a user would: the executable kubectl-keyvirt on PATH (a
// directory holding the link npm installs, in front of the pinned Node.js), either
// directly or through the pinned kubectl, with a kubeconfig of the user's own.
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TestCluster } from '../support/cluster.ts';

const repo = path.resolve(import.meta.dirname, '..', '..');
export const PLUGIN_MAIN = path.join(repo, 'operator/src/kubectl-plugin/main.ts');

/** A directory with `kubectl-keyvirt` (a link to the plugin, as npm installs it) and the environment whose PATH starts with it. */
export async function pluginOnPath(dir: string): Promise<NodeJS.ProcessEnv> {
  const bin = path.join(dir, 'bin');
  await mkdir(bin, { recursive: true });
  await symlink(PLUGIN_MAIN, path.join(bin, 'kubectl-keyvirt')).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  });
  // The link's `#!/usr/bin/env node` must find the pinned Node.js 24.
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: [bin, path.dirname(process.execPath), process.env.PATH ?? ''].join(path.delimiter) };
  delete env.KUBECONFIG;
  return env;
}

/** A kubeconfig for a ServiceAccount token, with `namespace` as the context's namespace. */
export async function tokenKubeconfig(cluster: TestCluster, file: string, user: { name: string; token: string }, namespace: string): Promise<string> {
  const ca = (await readFile(path.join(cluster.layout.pkiDir, 'ca.crt'))).toString('base64');
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'local', cluster: { server: cluster.apiServer.url, 'certificate-authority-data': ca } }],
    users: [{ name: user.name, user: { token: user.token } }],
    contexts: [{ name: 'user', context: { cluster: 'local', user: user.name, namespace } }],
    'current-context': 'user',
  };
  await writeFile(file, JSON.stringify(config, null, 2), { mode: 0o600 });
  return file;
}

export interface Finished {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to its end (killed after `timeoutMs`). */
export function runToEnd(command: string, args: readonly string[], env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<Finished> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A long-running plugin process (console, vnc): its output so far and a wait for a pattern in it. */
export interface Running {
  readonly child: ChildProcessWithoutNullStreams;
  stdout(): string;
  stderr(): string;
  until(stream: 'stdout' | 'stderr', pattern: RegExp, timeoutMs: number): Promise<string>;
  exited: Promise<number | null>;
}

export function start(command: string, args: readonly string[], env: NodeJS.ProcessEnv): Running {
  const child = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  const text = { stdout: '', stderr: '' };
  child.stdout.on('data', (c: Buffer) => (text.stdout += c.toString('latin1')));
  child.stderr.on('data', (c: Buffer) => (text.stderr += c.toString('latin1')));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return {
    child,
    stdout: () => text.stdout,
    stderr: () => text.stderr,
    exited,
    until: async (stream, pattern, timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (pattern.test(text[stream])) return text[stream];
        if (child.exitCode !== null) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      if (pattern.test(text[stream])) return text[stream];
      throw new Error(`no ${String(pattern)} on ${stream} within ${String(timeoutMs)} ms (exit ${String(child.exitCode)}); stdout: ${JSON.stringify(text.stdout.slice(-400))}; stderr: ${JSON.stringify(text.stderr.slice(-400))}`);
    },
  };
}
