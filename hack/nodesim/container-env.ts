// A container's environment as the kubelet builds it: the API server's address
// (its real bridge address, never a ClusterIP), env/envFrom with values from
// fields, resources, Secrets and ConfigMaps, and $(VAR) references expanded.
import type {
  V1ConfigMapKeySelector, V1Container, V1EnvVar, V1Pod, V1ResourceFieldSelector, V1SecretKeySelector,
} from '@kubernetes/client-node';
import { apiServerHost, ports } from '../cluster/layout.ts';
import { parseCpuMillis, parseQuantity } from './cgroups.ts';
import type { VolumeApi } from './volumes.ts';
import { podFieldValue, VolumeNotReadyError } from './volumes.ts';

export const defaultPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Expands $(NAME) from `env`; $$(NAME) escapes to a literal $(NAME). */
export function expandReferences(text: string, env: Readonly<Record<string, string>>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) => {
    if (name === undefined) return '$';
    return env[name] ?? match;
  });
}

type EnvApi = Pick<VolumeApi, 'readConfigMap' | 'readSecret'>;

function resourceValue(container: V1Container, ref: V1ResourceFieldSelector): string {
  const [kind, resource] = ref.resource.split('.');
  const raw = (kind === 'limits' ? container.resources?.limits : container.resources?.requests)?.[resource ?? ''];
  if (raw === undefined) return '0';
  const divisor = ref.divisor ?? '1';
  const value = resource === 'cpu' ? parseCpuMillis(raw) / parseCpuMillis(divisor) : parseQuantity(raw) / parseQuantity(divisor);
  return `${Math.ceil(value)}`;
}

async function secretValue(api: EnvApi, namespace: string, ref: V1SecretKeySelector): Promise<string | undefined> {
  const secret = await api.readSecret(namespace, ref.name ?? '');
  const value = secret?.data?.[ref.key];
  if (value === undefined && ref.optional !== true) throw new VolumeNotReadyError(`secret ${ref.name ?? ''} key ${ref.key} not found`);
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}

async function configMapValue(api: EnvApi, namespace: string, ref: V1ConfigMapKeySelector): Promise<string | undefined> {
  const cm = await api.readConfigMap(namespace, ref.name ?? '');
  const value = cm?.data?.[ref.key];
  if (value === undefined && ref.optional !== true) throw new VolumeNotReadyError(`configmap ${ref.name ?? ''} key ${ref.key} not found`);
  return value;
}

async function valueFrom(api: EnvApi, pod: V1Pod, container: V1Container, variable: V1EnvVar): Promise<string | undefined> {
  const from = variable.valueFrom;
  const namespace = pod.metadata?.namespace ?? 'default';
  if (from === undefined) return undefined;
  if (from.fieldRef !== undefined) return podFieldValue(pod, from.fieldRef.fieldPath);
  if (from.resourceFieldRef !== undefined) return resourceValue(container, from.resourceFieldRef);
  if (from.secretKeyRef !== undefined) return secretValue(api, namespace, from.secretKeyRef);
  if (from.configMapKeyRef !== undefined) return configMapValue(api, namespace, from.configMapKeyRef);
  return undefined;
}

async function envFromSources(api: EnvApi, pod: V1Pod, container: V1Container, env: Record<string, string>): Promise<void> {
  const namespace = pod.metadata?.namespace ?? 'default';
  for (const source of container.envFrom ?? []) {
    const prefix = source.prefix ?? '';
    if (source.configMapRef !== undefined) {
      const cm = await api.readConfigMap(namespace, source.configMapRef.name ?? '');
      if (cm === undefined && source.configMapRef.optional !== true) throw new VolumeNotReadyError(`configmap ${source.configMapRef.name} not found`);
      for (const [k, v] of Object.entries(cm?.data ?? {})) env[prefix + k] = v;
    }
    if (source.secretRef !== undefined) {
      const secret = await api.readSecret(namespace, source.secretRef.name ?? '');
      if (secret === undefined && source.secretRef.optional !== true) throw new VolumeNotReadyError(`secret ${source.secretRef.name} not found`);
      for (const [k, v] of Object.entries(secret?.data ?? {})) env[prefix + k] = Buffer.from(v, 'base64').toString('utf8');
    }
  }
}

/** The full environment of a container. */
export async function containerEnv(
  api: EnvApi, pod: V1Pod, container: V1Container, options: { pathPrefix: readonly string[]; hostname: string },
): Promise<Record<string, string>> {
  const apiPort = `${ports.apiServer}`;
  const env: Record<string, string> = {
    PATH: [...options.pathPrefix, defaultPath].join(':'),
    HOME: '/root',
    HOSTNAME: options.hostname,
    KUBERNETES_SERVICE_HOST: apiServerHost,
    KUBERNETES_SERVICE_PORT: apiPort,
    KUBERNETES_SERVICE_PORT_HTTPS: apiPort,
    KUBERNETES_PORT: `tcp://${apiServerHost}:${apiPort}`,
    KUBERNETES_PORT_443_TCP: `tcp://${apiServerHost}:${apiPort}`,
    KUBERNETES_PORT_443_TCP_PROTO: 'tcp',
    KUBERNETES_PORT_443_TCP_ADDR: apiServerHost,
    KUBERNETES_PORT_443_TCP_PORT: apiPort,
  };
  await envFromSources(api, pod, container, env);
  for (const variable of container.env ?? []) {
    const value = variable.value !== undefined ? expandReferences(variable.value, env) : await valueFrom(api, pod, container, variable);
    if (value !== undefined) env[variable.name] = value;
    else if (variable.valueFrom === undefined) env[variable.name] = '';
  }
  return env;
}
