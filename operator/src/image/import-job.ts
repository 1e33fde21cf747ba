// The job pods that import and delete VirtualMachineImages. They are storage jobs of
// the target domain (ADRs 0072, 0104): in the operator's namespace, where the domain's
// claim is, labelled as storage jobs and controlled by the StorageDomain by UID — a
// namespaced image cannot own a pod in another namespace, and only pods the operator
// put there are trusted. The image they serve is named in an annotation. They hold no
// credentials and get no more than the domain's claim and a small /tmp.
import { createHash, randomBytes } from 'node:crypto';
import { virtualMachineImagePath, type ImageFormat, type VirtualMachineImage } from '@keyvirt/crds';
import { z } from 'zod';
import { ANNOTATION_DOMAIN, LABEL_COMPONENT, LABEL_JOB_KIND, LABEL_MANAGED_BY, MANAGED_BY, STORAGE_JOB_COMPONENT } from '../storage/names.ts';
import { domainJobPod, type DomainJobPlacement } from '../storage/storage-job.ts';
import { IMPORT_PROGRESS_PORT, IMPORT_SCRIPT, IMPORT_UPLOAD_PORT } from './import-script.ts';

/** On image job pods: the image (namespace/name) the job works for. */
export const ANNOTATION_IMAGE = 'keyvirt.io/virtual-machine-image';

/** An import may take long (a large image over a slow link); the script's own stall limit ends a dead transfer sooner. */
const IMPORT_DEADLINE_SECONDS = 6 * 3600;

export type ImageSource =
  | { readonly kind: 'http'; readonly url: string; readonly sha256?: string | undefined; readonly credentials?: string | undefined }
  /** A claim of the image's namespace: a reader pod serves it, then the job downloads it (ADR 0098). */
  | { readonly kind: 'pvc'; readonly claimName: string }
  | { readonly kind: 'oci'; readonly scheme: 'http' | 'https'; readonly registry: string; readonly repository: string; readonly reference: string }
  /** The image arrives through the upload subresource; the token is the job's own secret for its upload port. */
  | { readonly kind: 'upload'; readonly token: string };

/** The environment variable that carries an upload job's token (read back from the pod by the upload relay). */
export const UPLOAD_TOKEN_ENV = 'KEYVIRT_UPLOAD_TOKEN';

/** A fresh token for one upload job: 256 random bits, hex. */
export function newUploadToken(): string {
  return randomBytes(32).toString('hex');
}

export interface ImageJobSpec extends DomainJobPlacement {
  readonly op: 'import' | 'delete';
  /** namespace/name of the VirtualMachineImage. */
  readonly imageKey: string;
  /** The image file relative to the domain root. */
  readonly target: string;
  /** The work directory relative to the domain root (beside the target: one rename puts the result in place). */
  readonly work: string;
  readonly format: ImageFormat;
  readonly source?: ImageSource | undefined;
}

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 12);
}

/** The job pod of one operation on one image; the image's UID is part of it, so a namesake never shares a job. */
export function imageJobPodName(op: 'import' | 'delete', namespace: string, name: string, uid: string): string {
  return `keyvirt-image-${op}-${shortHash(`${namespace}/${name}/${uid}`)}`;
}

/** Where the image's download and conversion happen: a hidden directory beside the target, per image UID. */
export function imageWorkDir(namespace: string, name: string, uid: string): string {
  return `vmimages/${namespace}/.${name}.${uid}.import`;
}

export class ImageSourceError extends Error {
  override readonly name = 'ImageSourceError';
}

/** The source the importer runs for `image`, or an error naming what it cannot import. */
export function importSource(image: VirtualMachineImage): ImageSource {
  const { http, oci } = image.spec.source;
  if (http !== undefined) return { kind: 'http', url: http.url, sha256: http.sha256 };
  if (oci !== undefined) {
    const slash = oci.reference.indexOf('/');
    const registry = oci.reference.slice(0, slash);
    const rest = oci.reference.slice(slash + 1);
    const at = rest.indexOf('@');
    const colon = rest.lastIndexOf(':');
    const [repository, reference] = at >= 0 ? [rest.slice(0, at), rest.slice(at + 1)] : colon >= 0 ? [rest.slice(0, colon), rest.slice(colon + 1)] : [rest, 'latest'];
    return { kind: 'oci', scheme: oci.insecure ? 'http' : 'https', registry, repository, reference };
  }
  if (image.spec.source.upload !== undefined) return { kind: 'upload', token: newUploadToken() };
  const pvc = image.spec.source.pvc;
  if (pvc !== undefined) return { kind: 'pvc', claimName: pvc.claimName };
  throw new ImageSourceError('the image names no source');
}

function sourceEnv(source: ImageSource | undefined): { name: string; value: string }[] {
  if (source === undefined) return [];
  if (source.kind === 'upload') {
    return [
      { name: 'KEYVIRT_SOURCE', value: 'upload' },
      { name: UPLOAD_TOKEN_ENV, value: source.token },
      { name: 'KEYVIRT_UPLOAD_PORT', value: String(IMPORT_UPLOAD_PORT) },
    ];
  }
  if (source.kind === 'pvc') return [{ name: 'KEYVIRT_SOURCE', value: 'pvc-unresolved' }];
  if (source.kind === 'http') {
    return [
      { name: 'KEYVIRT_SOURCE', value: 'http' },
      { name: 'KEYVIRT_URL', value: source.url },
      ...(source.credentials === undefined ? [] : [{ name: 'KEYVIRT_HTTP_CREDENTIALS', value: source.credentials }]),
      ...(source.sha256 === undefined ? [] : [{ name: 'KEYVIRT_SHA256', value: source.sha256 }]),
    ];
  }
  return [
    { name: 'KEYVIRT_SOURCE', value: 'oci' },
    { name: 'KEYVIRT_REGISTRY_SCHEME', value: source.scheme },
    { name: 'KEYVIRT_REGISTRY', value: source.registry },
    { name: 'KEYVIRT_REPOSITORY', value: source.repository },
    { name: 'KEYVIRT_OCI_REF', value: source.reference },
  ];
}

/** The environment of the importer script for `spec`. */
export function imageJobEnv(spec: ImageJobSpec): { name: string; value: string }[] {
  return [
    { name: 'KEYVIRT_OP', value: spec.op },
    { name: 'KEYVIRT_TARGET', value: spec.target },
    { name: 'KEYVIRT_WORK', value: spec.work },
    { name: 'KEYVIRT_FORMAT', value: spec.format },
    { name: 'KEYVIRT_PROGRESS_PORT', value: String(IMPORT_PROGRESS_PORT) },
    ...sourceEnv(spec.source),
  ];
}

/** The job spec's paths for an image. */
export function imagePaths(image: VirtualMachineImage): { target: string; work: string } {
  const namespace = image.metadata.namespace ?? 'default';
  return {
    target: virtualMachineImagePath(namespace, image.metadata.name, image.spec.format),
    work: imageWorkDir(namespace, image.metadata.name, image.metadata.uid ?? 'none'),
  };
}

/** The job pod for `spec`: a storage job of the domain (one builder for both, storage-job.ts). */
export function imageJobPod(spec: ImageJobSpec): Record<string, unknown> {
  return domainJobPod({
    name: spec.name,
    namespace: spec.namespace,
    labels: { [LABEL_COMPONENT]: STORAGE_JOB_COMPONENT, [LABEL_MANAGED_BY]: MANAGED_BY, [LABEL_JOB_KIND]: `${spec.op}-image` },
    annotations: { [ANNOTATION_DOMAIN]: spec.domain, [ANNOTATION_IMAGE]: spec.imageKey },
    owner: spec.owner,
    image: spec.image,
    imagePullPolicy: spec.imagePullPolicy,
    nodeName: spec.nodeName,
    claimName: spec.claimName,
    script: IMPORT_SCRIPT,
    env: imageJobEnv(spec),
    ports:
      spec.op === 'import'
        ? [
            { name: 'progress', containerPort: IMPORT_PROGRESS_PORT, protocol: 'TCP' },
            ...(spec.source?.kind === 'upload' ? [{ name: 'upload', containerPort: IMPORT_UPLOAD_PORT, protocol: 'TCP' as const }] : []),
          ]
        : undefined,
    activeDeadlineSeconds: spec.op === 'import' ? IMPORT_DEADLINE_SECONDS : 900,
    resources: { requests: { cpu: '100m', memory: '64Mi' }, limits: { memory: '512Mi' } },
  });
}

const count = z.number().int().nonnegative();

/** What an import job reports in its termination message: the stored image, or why it failed. */
export const ImportResult = z.union([
  z.object({
    op: z.literal('import'),
    format: z.enum(['qcow2', 'raw']),
    sourceFormat: z.string().max(32).regex(/^[a-z0-9]+$/),
    virtualSize: count,
    allocatedBytes: count,
    sourceBytes: count,
    durationMs: count,
    downloadMs: count.optional(),
    convertMs: count.optional(),
    capacityBytes: count,
    usedBytes: count,
    freeBytes: count,
  }),
  z.object({
    op: z.literal('import'),
    failed: z.literal(true),
    reason: z.string().max(64).regex(/^[A-Za-z]+$/),
    message: z.string().max(4096),
  }),
]);
export type ImportResult = z.infer<typeof ImportResult>;

/** The termination message of an import job, parsed; undefined when it is not one. */
export function parseImportResult(message: string | undefined): ImportResult | undefined {
  if (message === undefined || message.trim() === '') return undefined;
  try {
    const parsed = ImportResult.safeParse(JSON.parse(message.trim()));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** The progress document the importer serves. */
export const ImportProgressDocument = z.object({
  bytes: count,
  totalBytes: count,
  stage: z.enum(['starting', 'waiting', 'uploading', 'downloading', 'verifying', 'inspecting', 'converting']),
});
export type ImportProgressDocument = z.infer<typeof ImportProgressDocument>;
