// Materialises a pod's volumes as host directories that the container init script
// bind-mounts at their mount paths: emptyDir, hostPath, PVC (through the bound
// PV's local/hostPath directory), Secret, ConfigMap, downwardAPI and projected
// (service-account token, secret, configMap, downwardAPI sources).
/* eslint-disable @typescript-eslint/no-unsafe-class-instance-assignment -- client-node models are plain JSON data; literals are how the API is used */
import fs from 'node:fs';
import path from 'node:path';
import type {
  V1ConfigMap, V1DownwardAPIVolumeFile, V1KeyToPath, V1PersistentVolume, V1PersistentVolumeClaim, V1Pod,
  V1Secret, V1Volume, V1VolumeProjection,
} from '@kubernetes/client-node';
import { throughStorageView } from './storage-view.ts';
import type { StorageView } from './storage-view.ts';

export class VolumeNotReadyError extends Error {
  override readonly name = 'VolumeNotReadyError';
}

/** What the volume code needs from the API server (implemented by the node agent). */
export interface VolumeApi {
  readSecret(namespace: string, name: string): Promise<V1Secret | undefined>;
  readConfigMap(namespace: string, name: string): Promise<V1ConfigMap | undefined>;
  readPersistentVolumeClaim(namespace: string, name: string): Promise<V1PersistentVolumeClaim | undefined>;
  readPersistentVolume(name: string): Promise<V1PersistentVolume | undefined>;
  requestServiceAccountToken(pod: V1Pod, audience: string | undefined, expirationSeconds: number): Promise<string>;
}

export interface MaterialisedVolume {
  readonly hostPath: string;
  readonly readOnly: boolean;
}

type Files = Map<string, { content: Buffer; mode?: number }>;

function keyedFiles(data: Readonly<Record<string, Buffer>>, items: readonly V1KeyToPath[] | undefined, defaultMode?: number): Files {
  const files: Files = new Map();
  if (items === undefined || items.length === 0) {
    for (const [key, content] of Object.entries(data)) files.set(key, { content, mode: defaultMode });
    return files;
  }
  for (const item of items) {
    const content = data[item.key];
    if (content === undefined) throw new VolumeNotReadyError(`key ${item.key} not found`);
    files.set(item.path, { content, mode: item.mode ?? defaultMode });
  }
  return files;
}

function secretData(secret: V1Secret): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(secret.data ?? {})) out[k] = Buffer.from(v, 'base64');
  return out;
}

function configMapData(cm: V1ConfigMap): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(cm.data ?? {})) out[k] = Buffer.from(v, 'utf8');
  for (const [k, v] of Object.entries(cm.binaryData ?? {})) out[k] = Buffer.from(v, 'base64');
  return out;
}

/** The value of a downward-API field path such as metadata.labels['app']. */
export function podFieldValue(pod: V1Pod, fieldPath: string): string {
  const meta = pod.metadata ?? {};
  const mapLookup = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(fieldPath);
  if (mapLookup !== null) {
    const map = mapLookup[1] === 'labels' ? meta.labels : meta.annotations;
    return map?.[mapLookup[2] ?? ''] ?? '';
  }
  const render = (m: Record<string, string> | undefined): string =>
    Object.entries(m ?? {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join('\n');
  const fields: Record<string, () => string | undefined> = {
    'metadata.name': () => meta.name,
    'metadata.namespace': () => meta.namespace,
    'metadata.uid': () => meta.uid,
    'metadata.labels': () => render(meta.labels),
    'metadata.annotations': () => render(meta.annotations),
    'spec.nodeName': () => pod.spec?.nodeName,
    'spec.serviceAccountName': () => pod.spec?.serviceAccountName,
    'status.podIP': () => pod.status?.podIP,
    'status.hostIP': () => pod.status?.hostIP,
  };
  const getter = fields[fieldPath];
  if (getter === undefined) throw new VolumeNotReadyError(`unsupported field path ${fieldPath}`);
  return getter() ?? '';
}

function downwardFiles(pod: V1Pod, items: readonly V1DownwardAPIVolumeFile[], defaultMode?: number): Files {
  const files: Files = new Map();
  for (const item of items) {
    if (item.fieldRef === undefined) continue;
    files.set(item.path, { content: Buffer.from(podFieldValue(pod, item.fieldRef.fieldPath)), mode: item.mode ?? defaultMode });
  }
  return files;
}

function writeFiles(dir: string, files: Files): void {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  for (const [rel, file] of files) {
    const target = path.join(dir, rel);
    if (!target.startsWith(dir + path.sep)) throw new VolumeNotReadyError(`path ${rel} escapes the volume`);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, file.content, { mode: file.mode ?? 0o644 });
  }
}

async function projectionFiles(api: VolumeApi, pod: V1Pod, source: V1VolumeProjection, defaultMode?: number): Promise<Files> {
  const namespace = pod.metadata?.namespace ?? 'default';
  if (source.serviceAccountToken !== undefined) {
    const { audience, expirationSeconds, path: tokenPath } = source.serviceAccountToken;
    const token = await api.requestServiceAccountToken(pod, audience, expirationSeconds ?? 3600);
    return new Map([[tokenPath, { content: Buffer.from(token), mode: defaultMode ?? 0o600 }]]);
  }
  if (source.configMap !== undefined) {
    const cm = await api.readConfigMap(namespace, source.configMap.name ?? '');
    if (cm === undefined) return missing(source.configMap.optional, `configmap ${source.configMap.name}`);
    return keyedFiles(configMapData(cm), source.configMap.items, defaultMode);
  }
  if (source.secret !== undefined) {
    const secret = await api.readSecret(namespace, source.secret.name ?? '');
    if (secret === undefined) return missing(source.secret.optional, `secret ${source.secret.name}`);
    return keyedFiles(secretData(secret), source.secret.items, defaultMode);
  }
  if (source.downwardAPI !== undefined) return downwardFiles(pod, source.downwardAPI.items ?? [], defaultMode);
  return new Map();
}

function missing(optional: boolean | undefined, what: string): Files {
  if (optional === true) return new Map();
  throw new VolumeNotReadyError(`${what} not found`);
}

async function claimDirectory(api: VolumeApi, namespace: string, claimName: string, view: StorageView | undefined): Promise<string> {
  const pvc = await api.readPersistentVolumeClaim(namespace, claimName);
  if (pvc === undefined) throw new VolumeNotReadyError(`persistentvolumeclaim ${claimName} not found`);
  const pvName = pvc.spec?.volumeName;
  if (pvName === undefined || pvName === '' || pvc.status?.phase !== 'Bound') {
    throw new VolumeNotReadyError(`persistentvolumeclaim ${claimName} is not bound`);
  }
  const pv = await api.readPersistentVolume(pvName);
  const declared = pv?.spec?.local?.path ?? pv?.spec?.hostPath?.path;
  if (declared === undefined) throw new VolumeNotReadyError(`persistentvolume ${pvName} has no local or hostPath directory`);
  const dir = throughStorageView(view, declared);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** The kubelet's device-plugin directory as pods name it (a device plugin's DaemonSet mounts it). */
export const KUBELET_DEVICE_PLUGIN_PATH = '/var/lib/kubelet/device-plugins';

function hostPathVolume(volume: V1Volume, view: StorageView | undefined, devicePluginDir: string | undefined): string {
  const hp = volume.hostPath;
  if (hp === undefined) throw new VolumeNotReadyError(`volume ${volume.name} is not a hostPath`);
  // This node's "kubelet" keeps its device-plugin directory in its own state directory.
  const kubeletDir = devicePluginDir !== undefined && path.posix.normalize(hp.path).replace(/\/$/, '') === KUBELET_DEVICE_PLUGIN_PATH;
  const nodePath = kubeletDir ? devicePluginDir : throughStorageView(view, hp.path);
  if (hp.type === 'DirectoryOrCreate') fs.mkdirSync(nodePath, { recursive: true });
  if (hp.type === 'FileOrCreate' && !fs.existsSync(nodePath)) {
    fs.mkdirSync(path.dirname(nodePath), { recursive: true });
    fs.writeFileSync(nodePath, '');
  }
  if (!fs.existsSync(nodePath)) throw new VolumeNotReadyError(`hostPath ${hp.path} does not exist`);
  return nodePath;
}

/** Where this node keeps what pods reach by host path. */
interface NodePaths {
  readonly view: StorageView | undefined;
  readonly devicePluginDir: string | undefined;
}

async function materialiseOne(api: VolumeApi, pod: V1Pod, volume: V1Volume, dir: string, node: NodePaths): Promise<MaterialisedVolume> {
  const { view, devicePluginDir } = node;
  const namespace = pod.metadata?.namespace ?? 'default';
  if (volume.emptyDir !== undefined) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o777 });
    return { hostPath: dir, readOnly: false };
  }
  if (volume.hostPath !== undefined) return { hostPath: hostPathVolume(volume, view, devicePluginDir), readOnly: false };
  if (volume.persistentVolumeClaim !== undefined) {
    const { claimName, readOnly } = volume.persistentVolumeClaim;
    return { hostPath: await claimDirectory(api, namespace, claimName, view), readOnly: readOnly === true };
  }
  if (volume.secret !== undefined) {
    const name = volume.secret.secretName ?? '';
    const secret = await api.readSecret(namespace, name);
    writeFiles(dir, secret === undefined ? missing(volume.secret.optional, `secret ${name}`)
      : keyedFiles(secretData(secret), volume.secret.items, volume.secret.defaultMode));
    return { hostPath: dir, readOnly: true };
  }
  if (volume.configMap !== undefined) {
    const name = volume.configMap.name ?? '';
    const cm = await api.readConfigMap(namespace, name);
    writeFiles(dir, cm === undefined ? missing(volume.configMap.optional, `configmap ${name}`)
      : keyedFiles(configMapData(cm), volume.configMap.items, volume.configMap.defaultMode));
    return { hostPath: dir, readOnly: true };
  }
  if (volume.downwardAPI !== undefined) {
    writeFiles(dir, downwardFiles(pod, volume.downwardAPI.items ?? [], volume.downwardAPI.defaultMode));
    return { hostPath: dir, readOnly: true };
  }
  if (volume.projected !== undefined) {
    const files: Files = new Map();
    for (const source of volume.projected.sources ?? []) {
      for (const [k, v] of await projectionFiles(api, pod, source, volume.projected.defaultMode)) files.set(k, v);
    }
    writeFiles(dir, files);
    return { hostPath: dir, readOnly: true };
  }
  throw new VolumeNotReadyError(`volume ${volume.name}: this volume type is not supported by the node simulator`);
}

/**
 * The node path of a volumeMount's subPath, as the kubelet checks it: relative, no `..`,
 * created as a directory when missing, and — symlinks resolved — still inside the volume
 * (a symlink in a volume must not hand a container some other node path).
 */
export function subPathSource(volumeDir: string, subPath: string): string {
  if (path.isAbsolute(subPath) || subPath.split('/').includes('..')) {
    throw new VolumeNotReadyError(`subPath ${subPath} must be a relative path without '..'`);
  }
  const source = path.join(volumeDir, subPath);
  if (!fs.existsSync(source)) fs.mkdirSync(source, { recursive: true });
  const root = fs.realpathSync(volumeDir);
  const real = fs.realpathSync(source);
  if (real !== root && !real.startsWith(root + path.sep)) throw new VolumeNotReadyError(`subPath ${subPath} resolves outside its volume`);
  return real;
}

/**
 * Materialises every volume of the pod under `volumesDir` (host paths under the shared
 * storage root through the node's storage view, when it has one); throws
 * VolumeNotReadyError when one cannot be yet.
 */
/** `devicePluginDir`: where a hostPath of the kubelet's device-plugin directory leads on this node. */
export async function materialiseVolumes(
  api: VolumeApi, pod: V1Pod, volumesDir: string, view?: StorageView, devicePluginDir?: string,
): Promise<Map<string, MaterialisedVolume>> {
  const out = new Map<string, MaterialisedVolume>();
  for (const volume of pod.spec?.volumes ?? []) {
    out.set(volume.name, await materialiseOne(api, pod, volume, path.join(volumesDir, volume.name), { view, devicePluginDir }));
  }
  return out;
}

/** True when the pod has volumes whose content expires (service-account tokens). */
export function hasExpiringVolumes(pod: V1Pod): boolean {
  return (pod.spec?.volumes ?? []).some((v) => (v.projected?.sources ?? []).some((s) => s.serviceAccountToken !== undefined));
}
