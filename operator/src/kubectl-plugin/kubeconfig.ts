// Loads the kubeconfig the way kubectl does: --kubeconfig (one file, must exist), else
// every file of $KUBECONFIG merged (the first file to define a name or the current
// context wins; missing files are skipped), else ~/.kube/config. --context picks a
// context; the namespace is -n, else the context's, else "default".
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import type { GlobalOptions } from './command-line.ts';
import { KubeconfigError } from './errors.ts';

export interface LoadedKubeconfig {
  readonly kc: KubeConfig;
  readonly namespace: string;
  /** The files read, for messages. */
  readonly files: readonly string[];
}

export interface KubeconfigEnvironment {
  readonly KUBECONFIG?: string | undefined;
  readonly HOME?: string | undefined;
}

/** Which files to read, in order (pure). */
export function kubeconfigFiles(options: GlobalOptions, env: KubeconfigEnvironment, exists: (file: string) => boolean): string[] {
  if (options.kubeconfig !== undefined) {
    if (!exists(options.kubeconfig)) throw new KubeconfigError(`--kubeconfig ${options.kubeconfig}: no such file`);
    return [options.kubeconfig];
  }
  const fromEnv = (env.KUBECONFIG ?? '').split(path.delimiter).filter((f) => f !== '');
  if (fromEnv.length > 0) {
    const present = fromEnv.filter(exists);
    if (present.length === 0) throw new KubeconfigError(`none of the files in KUBECONFIG exists: ${fromEnv.join(', ')}`);
    return present;
  }
  const fallback = path.join(env.HOME ?? homedir(), '.kube', 'config');
  if (!exists(fallback)) throw new KubeconfigError(`no kubeconfig: ${fallback} does not exist; set KUBECONFIG or pass --kubeconfig`);
  return [fallback];
}

function readOne(file: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    kc.loadFromFile(file);
  } catch (err) {
    throw new KubeconfigError(`cannot read kubeconfig ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  return kc;
}

/** Merges kubeconfigs, first definition wins (kubectl's rule). */
export function mergeKubeconfigs(configs: readonly KubeConfig[]): KubeConfig {
  const merged = new KubeConfig();
  merged.clusters = [];
  merged.users = [];
  merged.contexts = [];
  merged.currentContext = '';
  for (const kc of configs) {
    if (merged.currentContext === '' && kc.currentContext !== '' && kc.currentContext !== undefined) merged.currentContext = kc.currentContext;
    for (const c of kc.clusters) if (!merged.clusters.some((m) => m.name === c.name)) merged.clusters.push(c);
    for (const u of kc.users) if (!merged.users.some((m) => m.name === u.name)) merged.users.push(u);
    for (const x of kc.contexts) if (!merged.contexts.some((m) => m.name === x.name)) merged.contexts.push(x);
  }
  return merged;
}

/** Picks the context (the --context flag or the current one) and checks it is usable. */
export function selectContext(kc: KubeConfig, options: GlobalOptions, files: readonly string[]): string {
  const name = options.context ?? kc.currentContext;
  const where = files.join(', ');
  if (name === '' || name === undefined) throw new KubeconfigError(`no current context in ${where}: pass --context`);
  const context = kc.getContextObject(name);
  if (context === null) {
    const known = kc.contexts.map((c) => c.name).join(', ');
    throw new KubeconfigError(`context "${name}" not found in ${where} (contexts: ${known === '' ? 'none' : known})`);
  }
  if (kc.getCluster(context.cluster) === null) throw new KubeconfigError(`context "${name}" names cluster "${context.cluster}", which ${where} does not define`);
  kc.setCurrentContext(name);
  return context.namespace ?? 'default';
}

export function loadKubeconfig(options: GlobalOptions, env: KubeconfigEnvironment = process.env): LoadedKubeconfig {
  const files = kubeconfigFiles(options, env, existsSync);
  const kc = mergeKubeconfigs(files.map(readOne));
  const contextNamespace = selectContext(kc, options, files);
  return { kc, namespace: options.namespace ?? contextNamespace, files };
}
