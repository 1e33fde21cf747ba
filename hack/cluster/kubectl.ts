// Runs the pinned kubectl against the local cluster.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { ClusterLayout } from './layout.ts';

export class KubectlError extends Error {
  override readonly name = 'KubectlError';
  readonly stderr: string;
  constructor(message: string, stderr: string) {
    super(message);
    this.stderr = stderr;
  }
}

export function kubectlPath(layout: ClusterLayout): string {
  return path.join(layout.binDir, 'kubectl');
}

/** Runs kubectl with the admin kubeconfig (or `kubeconfig`) and returns its stdout. */
export function kubectl(layout: ClusterLayout, args: readonly string[], input?: string, kubeconfig?: string): string {
  try {
    return execFileSync(kubectlPath(layout), ['--kubeconfig', kubeconfig ?? layout.kubeconfig, ...args], {
      encoding: 'utf8',
      input,
      stdio: ['pipe', 'pipe', 'pipe'],
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (err) {
    const stderr = (err as { stderr?: unknown }).stderr;
    const text = typeof stderr === 'string' ? stderr.trim() : String(err);
    throw new KubectlError(`kubectl ${args.join(' ')}: ${text}`, text);
  }
}
