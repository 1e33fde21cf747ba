// The reader of a `pvc` image source (ADR 0098): a pod in the image's namespace that
// mounts the user's claim read-only and serves its `disk.img` — and nothing else — to
// the import job over HTTP behind a per-import token (busybox httpd, Basic auth). The
// import job then downloads it like any URL: same checks, same conversion, and an
// interrupted copy resumes by Range. A pod cannot mount the domain's claim (operator
// namespace) and the user's (their namespace) at once, hence two pods.
import { createHash } from 'node:crypto';
import { API_VERSION, type VirtualMachineImage } from '@keyvirt/crds';
import type { Pod } from '../runtime/core-schemas.ts';
import { LABEL_COMPONENT, LABEL_JOB_KIND, LABEL_MANAGED_BY, MANAGED_BY, STORAGE_JOB_COMPONENT } from '../storage/names.ts';
import { STORAGE_POD_SECURITY_CONTEXT } from '../storage/storage-job.ts';
import { ANNOTATION_IMAGE } from './import-job.ts';
import { IMPORT_UPLOAD_USER } from './import-script.ts';

/** The port the reader serves the claim's disk file on. */
export const PVC_READER_PORT = 8472;
/** The file of the claim that is the image (the KubeVirt CDI convention for filesystem claims). */
export const PVC_DISK_FILE = 'disk.img';
const SOURCE_MOUNT = '/source';
const READER_KIND = 'read-image';

/** Serves only a link to the claim's disk file, behind Basic auth with the token; no CGI directory exists. */
export const PVC_READER_SCRIPT = `set -eu
www=/tmp/www
mkdir -p "$www"
ln -sf ${SOURCE_MOUNT}/${PVC_DISK_FILE} "$www/${PVC_DISK_FILE}"
printf '/:${IMPORT_UPLOAD_USER}:%s\\n' "$KEYVIRT_READER_TOKEN" > /tmp/httpd.conf
exec busybox httpd -f -p ${String(PVC_READER_PORT)} -h "$www" -c /tmp/httpd.conf
`;

/** The reader pod's name: per image UID, so a recreated image never meets an old reader. */
export function pvcReaderPodName(namespace: string, name: string, uid: string): string {
  return `keyvirt-image-read-${createHash('sha256').update(`${namespace}/${name}/${uid}`).digest('hex').slice(0, 12)}`;
}

export interface PvcReaderSpec {
  readonly image: VirtualMachineImage;
  readonly claimName: string;
  readonly token: string;
  readonly launcherImage: string;
  readonly imagePullPolicy?: string | undefined;
}

/** The reader pod, controlled by the image (same namespace): it goes with the image. */
export function pvcReaderPod(spec: PvcReaderSpec): Record<string, unknown> {
  const { image } = spec;
  const namespace = image.metadata.namespace ?? 'default';
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: pvcReaderPodName(namespace, image.metadata.name, image.metadata.uid ?? ''),
      namespace,
      labels: { [LABEL_COMPONENT]: STORAGE_JOB_COMPONENT, [LABEL_MANAGED_BY]: MANAGED_BY, [LABEL_JOB_KIND]: READER_KIND },
      annotations: { [ANNOTATION_IMAGE]: `${namespace}/${image.metadata.name}` },
      ownerReferences: [{ apiVersion: API_VERSION, kind: 'VirtualMachineImage', name: image.metadata.name, uid: image.metadata.uid ?? '', controller: true }],
    },
    spec: {
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: 2,
      activeDeadlineSeconds: 6 * 3600,
      containers: [
        {
          name: 'reader',
          image: spec.launcherImage,
          ...(spec.imagePullPolicy === undefined ? {} : { imagePullPolicy: spec.imagePullPolicy }),
          command: ['sh', '-c', PVC_READER_SCRIPT],
          env: [{ name: 'KEYVIRT_READER_TOKEN', value: spec.token }],
          ports: [{ name: 'read', containerPort: PVC_READER_PORT, protocol: 'TCP' }],
          volumeMounts: [
            { name: 'source', mountPath: SOURCE_MOUNT, readOnly: true },
            { name: 'tmp', mountPath: '/tmp' },
          ],
          resources: { requests: { cpu: '50m', memory: '16Mi' }, limits: { memory: '64Mi' } },
          securityContext: STORAGE_POD_SECURITY_CONTEXT,
        },
      ],
      volumes: [
        { name: 'source', persistentVolumeClaim: { claimName: spec.claimName, readOnly: true } },
        { name: 'tmp', emptyDir: { sizeLimit: '1Mi' } },
      ],
    },
  };
}

/** The image's reader among `pods`: its name, namespace, reader labels and the image as controller by UID. */
export function findPvcReader(pods: readonly Pod[], image: VirtualMachineImage): Pod | undefined {
  const namespace = image.metadata.namespace ?? 'default';
  const name = pvcReaderPodName(namespace, image.metadata.name, image.metadata.uid ?? '');
  return pods.find(
    (p) =>
      p.metadata.namespace === namespace &&
      p.metadata.name === name &&
      p.metadata.labels?.[LABEL_JOB_KIND] === READER_KIND &&
      (p.metadata.ownerReferences ?? []).some((r) => r.controller === true && r.kind === 'VirtualMachineImage' && r.uid === image.metadata.uid),
  );
}

/** The URL the import job downloads from, once the reader runs with an IP. */
export function pvcReaderUrl(pod: Pod): string | undefined {
  const ip = pod.status?.podIP;
  if (pod.status?.phase !== 'Running' || ip === undefined || ip === '') return undefined;
  return `http://${ip.includes(':') ? `[${ip}]` : ip}:${String(PVC_READER_PORT)}/${PVC_DISK_FILE}`;
}
