// The storage job pods of one domain, found only where the operator put them (ADR
// 0104): in the expected namespace, under the deterministic name, with the storage-job
// labels and the domain's controller reference by UID. In a namespace other than the
// operator's (storageClass disks run their jobs in the VM's namespace, where its users
// may create pods) the pod must also be one this process created, by UID; one it did
// not create there is deleted and the job runs again (every job is idempotent). A pod
// that fails these checks is never read and never deleted by name alone.
import { API_VERSION } from '@keyvirt/crds';
import { z } from 'zod';
import type { Pod } from '../runtime/core-schemas.ts';
import { isAlreadyExists, isConflict, isNotFound, type KubeClient } from '../runtime/kube-client.ts';
import { collectionPath, coreTypes, objectPath } from '../runtime/resource.ts';
import { LABEL_COMPONENT, LABEL_MANAGED_BY, MANAGED_BY, STORAGE_JOB_COMPONENT } from './names.ts';
import { jobOutcome, storageJobPod, type JobOutcome, type StorageJobSpec } from './storage-job.ts';

export interface JobRun {
  readonly pod: Pod | undefined;
  readonly outcome: JobOutcome | undefined;
}

export interface JobPlace {
  readonly namespace: string;
  readonly name: string;
  /** The StorageDomain's UID: the job pod's controller reference must name it. */
  readonly domainUid: string;
}

/** The pod is a storage job of the domain at `place`: namespace, name, labels and controller reference. */
export function isDomainJobPod(pod: Pod, place: JobPlace): boolean {
  const m = pod.metadata;
  if (m.namespace !== place.namespace || m.name !== place.name) return false;
  if (m.labels?.[LABEL_COMPONENT] !== STORAGE_JOB_COMPONENT || m.labels[LABEL_MANAGED_BY] !== MANAGED_BY) return false;
  return (m.ownerReferences ?? []).some((r) => r.controller === true && r.kind === 'StorageDomain' && r.apiVersion === API_VERSION && r.uid === place.domainUid);
}

const created = z.object({ metadata: z.object({ uid: z.string().optional() }) });

export interface DomainJobsDeps {
  readonly client: Pick<KubeClient, 'create' | 'delete'>;
  /** Storage job pods (label-selected, every namespace). */
  readonly jobPods: () => readonly Pod[];
  /** The operator's namespace: only it and cluster admins can create pods there. */
  readonly trustedNamespace: string;
}

export class DomainJobs {
  readonly #d: DomainJobsDeps;
  /** UIDs of the job pods this process created. */
  readonly #created = new Set<string>();

  constructor(deps: DomainJobsDeps) {
    this.#d = deps;
  }

  /** The domain's job pod at `place`, or none; a pod there this process cannot vouch for is removed. */
  async find(place: JobPlace, signal: AbortSignal): Promise<JobRun> {
    const pod = this.#d.jobPods().find((p) => isDomainJobPod(p, place));
    if (pod === undefined) return { pod: undefined, outcome: undefined };
    const uid = pod.metadata.uid;
    if (place.namespace !== this.#d.trustedNamespace && (uid === undefined || !this.#created.has(uid))) {
      await this.remove(pod, signal);
      return { pod: undefined, outcome: undefined };
    }
    return { pod, outcome: jobOutcome(pod) };
  }

  async start(spec: StorageJobSpec, signal: AbortSignal): Promise<void> {
    await this.startPod(spec.namespace, storageJobPod(spec), signal);
  }

  /** Creates a job pod rendered elsewhere (image imports), remembering its UID as `start` does. */
  async startPod(namespace: string, pod: Record<string, unknown>, signal: AbortSignal): Promise<void> {
    try {
      const answer = created.safeParse(await this.#d.client.create(collectionPath(coreTypes.pod, namespace), pod, signal));
      const uid = answer.success ? answer.data.metadata.uid : undefined;
      if (uid !== undefined) this.#created.add(uid);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
  }

  /** Deletes exactly this pod (UID precondition), never another of the same name. */
  async remove(pod: Pod, signal: AbortSignal): Promise<void> {
    const { namespace, name, uid } = pod.metadata;
    if (namespace === undefined) return;
    try {
      await this.#d.client.delete(objectPath(coreTypes.pod, { namespace, name }), { gracePeriodSeconds: 0, ...(uid === undefined ? {} : { preconditions: { uid } }) }, signal);
    } catch (err) {
      if (!isNotFound(err) && !isConflict(err)) throw err;
    }
    if (uid !== undefined) this.#created.delete(uid);
  }
}
