// Short-lived pods that work on a storage domain from a node: create a disk image
// (qemu-img: qcow2 or raw, thin, a given size, optionally over a backing image),
// delete one, or just measure the filesystem. Every job ends by measuring the
// domain (df) and reports through its termination message, so the operator learns
// capacity without holding a mount itself. They run the launcher image (which has
// qemu-img) with a shell script and hold no Kubernetes credentials.
import { z } from 'zod';
import type { OwnerRef } from './backing-volume.ts';
import { ANNOTATION_DISK, ANNOTATION_DOMAIN, LABEL_COMPONENT, LABEL_JOB_KIND, LABEL_MANAGED_BY, MANAGED_BY, STORAGE_JOB_COMPONENT } from './names.ts';

export const DOMAIN_MOUNT = '/domain';
export const TERMINATION_LOG = '/dev/termination-log';

export type StorageJobOperation =
  | { readonly op: 'probe' }
  | {
      readonly op: 'create';
      /** The image path relative to the domain root. */
      readonly image: string;
      readonly format: 'qcow2' | 'raw';
      readonly sizeBytes: number;
      /** A backing image relative to the domain root. */
      readonly backing?: string | undefined;
    }
  /** `image` may omit the extension: both formats are removed. */
  | { readonly op: 'delete'; readonly image: string };

/** Where a job on a domain runs and what it runs as: the fields storage and image jobs share. */
export interface DomainJobPlacement {
  /** The pod's name. */
  readonly name: string;
  readonly namespace: string;
  /** The StorageDomain. */
  readonly domain: string;
  /** The domain's claim, mounted at /domain. */
  readonly claimName: string;
  /** The container image (the launcher's: it has qemu-img). */
  readonly image: string;
  readonly imagePullPolicy?: string | undefined;
  readonly owner: OwnerRef;
  /** The node the domain lives on, for local domains. */
  readonly nodeName?: string | undefined;
}

export interface StorageJobSpec extends DomainJobPlacement {
  readonly operation: StorageJobOperation;
  /** namespace/vm/disk for disk jobs. */
  readonly disk?: string | undefined;
}

/** What a job reports in its termination message (one JSON line). */
export const StorageJobResult = z.object({
  op: z.enum(['probe', 'create', 'delete']),
  capacityBytes: z.number().int().nonnegative(),
  usedBytes: z.number().int().nonnegative(),
  freeBytes: z.number().int().nonnegative(),
  created: z.boolean().optional(),
  allocatedBytes: z.number().int().nonnegative().optional(),
});
export type StorageJobResult = z.infer<typeof StorageJobResult>;

// POSIX sh; needs df, qemu-img, mkdir, mv, rm, sed, du. Results go to the termination
// log (kubelet bind-mounts it) and to stdout; errors to the termination log as text.
/** The job's shell script (exported for tests that run it on a directory). */
export const STORAGE_JOB_SCRIPT = `set -eu
root="\${KEYVIRT_DOMAIN_ROOT:-${DOMAIN_MOUNT}}"
log="\${KEYVIRT_RESULT_FILE:-${TERMINATION_LOG}}"
img="$root/\${KEYVIRT_IMAGE:-}"
created=false
create() {
  mkdir -p "$(dirname "$img")"
  [ -e "$img" ] && return 0
  tmp="$img.partial"
  rm -f "$tmp"
  if [ -n "\${KEYVIRT_BACKING:-}" ]; then
    backing="$root/$KEYVIRT_BACKING"
    [ -e "$backing" ] || { echo "backing image $KEYVIRT_BACKING does not exist on the domain" >&2; return 2; }
    bfmt=$(qemu-img info "$backing" | sed -n 's/^file format: //p')
    if [ "$KEYVIRT_FORMAT" = qcow2 ]; then
      qemu-img create -q -f qcow2 -F "$bfmt" -b "$KEYVIRT_BACKING_RELATIVE" "$tmp" "$KEYVIRT_SIZE"
    else
      qemu-img convert -q -f "$bfmt" -O raw "$backing" "$tmp"
      qemu-img resize -q -f raw "$tmp" "$KEYVIRT_SIZE"
    fi
  else
    qemu-img create -q -f "$KEYVIRT_FORMAT" "$tmp" "$KEYVIRT_SIZE"
  fi
  mv "$tmp" "$img"
  created=true
}
remove() {
  for f in "$img" "$img.qcow2" "$img.raw"; do rm -f "$f" "$f.partial"; done
  rmdir "$(dirname "$img")" 2>/dev/null || true
  rmdir "$(dirname "$(dirname "$img")")" 2>/dev/null || true
}
report() {
  set -- $(df -P -k "$root" | tail -n 1)
  extra=""
  if [ "$KEYVIRT_OP" = create ]; then
    alloc=$(du -k "$img" | sed 's/[^0-9].*//')
    extra=",\\"created\\":$created,\\"allocatedBytes\\":$((alloc * 1024))"
  fi
  result="{\\"op\\":\\"$KEYVIRT_OP\\",\\"capacityBytes\\":$(($2 * 1024)),\\"usedBytes\\":$(($3 * 1024)),\\"freeBytes\\":$(($4 * 1024))$extra}"
  echo "$result"
  if [ -e "$log" ]; then printf '%s' "$result" > "$log"; fi
}
err=$(mktemp)
run() {
  case "$KEYVIRT_OP" in
    create) create ;;
    delete) remove ;;
    probe) ;;
  esac
  report
}
set +e
(set -e; run) 2>"$err"
status=$?
if [ "$status" -ne 0 ]; then
  cat "$err" >&2
  if [ -e "$log" ]; then head -c 3000 "$err" > "$log"; fi
fi
rm -f "$err"
exit "$status"
`;

export function operationEnv(operation: StorageJobOperation): { name: string; value: string }[] {
  const env: { name: string; value: string }[] = [{ name: 'KEYVIRT_OP', value: operation.op }];
  if (operation.op === 'probe') return env;
  env.push({ name: 'KEYVIRT_IMAGE', value: operation.image });
  if (operation.op === 'delete') return env;
  env.push({ name: 'KEYVIRT_FORMAT', value: operation.format }, { name: 'KEYVIRT_SIZE', value: String(operation.sizeBytes) });
  if (operation.backing !== undefined) {
    const depth = operation.image.split('/').length - 1;
    env.push(
      { name: 'KEYVIRT_BACKING', value: operation.backing },
      { name: 'KEYVIRT_BACKING_RELATIVE', value: `${'../'.repeat(depth)}${operation.backing}` },
    );
  }
  return env;
}

/** The container security of every pod that works on storage: root over root-owned files, without a capability (ADR 0108). */
export const STORAGE_POD_SECURITY_CONTEXT = {
  privileged: false,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
} as const;

type EnvVar = { readonly name: string; readonly value: string };
type ContainerPort = { readonly name: string; readonly containerPort: number; readonly protocol: 'TCP' };

/**
 * What tells one job pod on a domain from another (a storage job, an image import or
 * delete): everything else they share — no credentials, no service links, never
 * restarted, the domain's claim at /domain and a small /tmp, the result in the
 * termination log, pinned to the domain's node when it has one.
 */
export interface DomainJobPodSpec extends Omit<DomainJobPlacement, 'domain'> {
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** The POSIX sh script the container runs. */
  readonly script: string;
  readonly env: readonly EnvVar[];
  readonly ports?: readonly ContainerPort[] | undefined;
  readonly activeDeadlineSeconds: number;
  readonly resources: { readonly requests: { readonly cpu: string; readonly memory: string }; readonly limits: { readonly memory: string } };
}

/** A job pod on a domain (storage and image jobs alike). */
export function domainJobPod(spec: DomainJobPodSpec): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: spec.name,
      namespace: spec.namespace,
      labels: spec.labels,
      annotations: spec.annotations,
      ownerReferences: [spec.owner],
    },
    spec: {
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      activeDeadlineSeconds: spec.activeDeadlineSeconds,
      terminationGracePeriodSeconds: 5,
      ...(spec.nodeName === undefined
        ? {}
        : {
            affinity: {
              nodeAffinity: {
                requiredDuringSchedulingIgnoredDuringExecution: {
                  nodeSelectorTerms: [{ matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [spec.nodeName] }] }],
                },
              },
            },
          }),
      containers: [
        {
          name: 'storage',
          image: spec.image,
          ...(spec.imagePullPolicy === undefined ? {} : { imagePullPolicy: spec.imagePullPolicy }),
          command: ['sh', '-c', spec.script],
          env: spec.env,
          ...(spec.ports === undefined ? {} : { ports: spec.ports }),
          volumeMounts: [{ name: 'domain', mountPath: DOMAIN_MOUNT }, { name: 'tmp', mountPath: '/tmp' }],
          terminationMessagePath: TERMINATION_LOG,
          terminationMessagePolicy: 'FallbackToLogsOnError',
          resources: spec.resources,
          securityContext: STORAGE_POD_SECURITY_CONTEXT,
        },
      ],
      volumes: [{ name: 'domain', persistentVolumeClaim: { claimName: spec.claimName } }, { name: 'tmp', emptyDir: { sizeLimit: '16Mi' } }],
    },
  };
}

/** The job pod for `spec`. */
export function storageJobPod(spec: StorageJobSpec): Record<string, unknown> {
  const annotations: Record<string, string> = { [ANNOTATION_DOMAIN]: spec.domain };
  if (spec.disk !== undefined) annotations[ANNOTATION_DISK] = spec.disk;
  return domainJobPod({
    name: spec.name,
    namespace: spec.namespace,
    labels: { [LABEL_COMPONENT]: STORAGE_JOB_COMPONENT, [LABEL_MANAGED_BY]: MANAGED_BY, [LABEL_JOB_KIND]: spec.operation.op },
    annotations,
    owner: spec.owner,
    image: spec.image,
    imagePullPolicy: spec.imagePullPolicy,
    nodeName: spec.nodeName,
    claimName: spec.claimName,
    script: STORAGE_JOB_SCRIPT,
    env: operationEnv(spec.operation),
    activeDeadlineSeconds: 900,
    resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { memory: '256Mi' } },
  });
}

export type JobOutcome =
  | { readonly state: 'running' }
  | { readonly state: 'succeeded'; readonly result: StorageJobResult | undefined }
  | { readonly state: 'failed'; readonly message: string };

export interface JobPodView {
  readonly status?:
    | {
        readonly phase?: string | undefined;
        readonly message?: string | undefined;
        readonly reason?: string | undefined;
        readonly containerStatuses?:
          | readonly {
              readonly state?:
                | { readonly terminated?: { readonly exitCode: number; readonly message?: string | undefined } | undefined }
                | undefined;
            }[]
          | undefined;
      }
    | undefined;
}

/** Where a job pod stands, with its parsed result once it succeeded. */
export function jobOutcome(pod: JobPodView): JobOutcome {
  const phase = pod.status?.phase;
  const terminated = pod.status?.containerStatuses?.[0]?.state?.terminated;
  const message = terminated?.message?.trim();
  if (phase === 'Succeeded') {
    let result: StorageJobResult | undefined;
    try {
      const parsed = StorageJobResult.safeParse(JSON.parse(message ?? ''));
      result = parsed.success ? parsed.data : undefined;
    } catch {
      result = undefined;
    }
    return { state: 'succeeded', result };
  }
  if (phase === 'Failed') {
    const why = message !== undefined && message !== '' ? message : (pod.status?.message ?? pod.status?.reason ?? 'the job failed');
    return { state: 'failed', message: why };
  }
  return { state: 'running' };
}
