// The disk half of a StorageDomain reconcile: deletions first — only of images whose
// VM is provably gone (disk-retention.ts) — then creations the domain admits
// (disk-admission.ts), each through a job pod (or, on storageClass domains, the disk's
// own claim). Returns what the domain now holds, with each disk's VM UID, and the
// disks it refuses, with why.
import { API_VERSION, parseQuantity, type StorageDomain, type VirtualMachine } from '@keyvirt/crds';
import type { EventSink } from '../runtime/event-recorder.ts';
import { isNotFound, type KubeClient } from '../runtime/kube-client.ts';
import { collectionPath, coreTypes, objectPath } from '../runtime/resource.ts';
import { perDiskClaim } from './backing-volume.ts';
import { createIfMissing } from './backing-volume-sync.ts';
import { admitDisks, type DomainGate, type Refusal, type WantedByVm } from './disk-admission.ts';
import { holdAll, listedVerdict, retention, type ListedDisk, type Retention } from './disk-retention.ts';
import { diskImageBase, wantedDisks } from './domain-disks.ts';
import type { DomainJobs } from './domain-jobs.ts';
import type { Pass } from './domain-pass.ts';
import { isCritical } from './domain-status.ts';
import { diskClaimName, diskJobPodName, diskKey, type DiskRef } from './names.ts';
import { activeLaunchers, lookUpOwner, type OwnerObject } from './owner-lookup.ts';
import type { StorageJobOperation } from './storage-job.ts';

export interface DiskSyncDeps {
  readonly client: Pick<KubeClient, 'get' | 'request' | 'create' | 'delete'>;
  readonly events: EventSink;
  readonly jobs: DomainJobs;
  readonly image: string;
  readonly imagePullPolicy?: string | undefined;
  readonly retryAfterFailureMs: number;
}

export interface DiskSyncResult {
  readonly disks: ListedDisk[];
  readonly refused: readonly Refusal[];
}

function wantedByVms(vms: readonly VirtualMachine[], domain: string): WantedByVm[] {
  const out: WantedByVm[] = [];
  for (const vm of vms) {
    const created = Date.parse(vm.metadata.creationTimestamp ?? '');
    for (const disk of wantedDisks([vm], domain).values()) out.push({ ...disk, vmUid: vm.metadata.uid, vmCreatedMs: Number.isNaN(created) ? 0 : created });
  }
  return out;
}

function gateOf(pass: Pass): DomainGate {
  const { sd, memory } = pass;
  if (sd.metadata.deletionTimestamp !== undefined) return { open: false, reason: 'Deleting', message: `StorageDomain ${sd.metadata.name} is being deleted` };
  if (sd.spec.maintenance) return { open: false, reason: 'Maintenance', message: `StorageDomain ${sd.metadata.name} is in maintenance` };
  if (pass.plan.claimRef !== undefined && !memory.probed) return { open: false, reason: 'NotMeasured', message: 'the domain is not measured yet' };
  if (isCritical(sd, memory.capacity)) {
    return { open: false, reason: 'CriticalSpace', message: `StorageDomain ${sd.metadata.name} has less than ${sd.spec.thresholds.criticalFreeGiB}Gi free` };
  }
  return { open: true };
}

function vmTarget(d: DiskRef & { vmUid?: string | undefined }): OwnerObject {
  return { apiVersion: API_VERSION, kind: 'VirtualMachine', metadata: { name: d.vmName, namespace: d.namespace, ...(d.vmUid === undefined ? {} : { uid: d.vmUid }) } };
}

function domainTarget(sd: StorageDomain): OwnerObject {
  return { apiVersion: API_VERSION, kind: 'StorageDomain', metadata: sd.metadata };
}

export class DiskSync {
  readonly #d: DiskSyncDeps;

  constructor(deps: DiskSyncDeps) {
    this.#d = deps;
  }

  async sync(pass: Pass, vms: readonly VirtualMachine[], listedNow: readonly ListedDisk[]): Promise<DiskSyncResult> {
    const listed = new Map(listedNow.map((d): [string, ListedDisk] => [diskKey(d), d]));
    const wanted = wantedByVms(vms, pass.sd.metadata.name);
    await this.#deleteGone(pass, listed, new Map(wanted.map((w) => [diskKey(w), w.vmUid])));
    const admission = admitDisks({
      wanted,
      listed: [...listed.values()],
      gate: gateOf(pass),
      capacityBytes: pass.plan.claimRef === undefined ? undefined : pass.memory.capacity?.capacityBytes,
      overcommitPercent: pass.sd.spec.overcommitPercent,
      parseBytes: parseQuantity,
    });
    for (const disk of admission.create) {
      const operation: StorageJobOperation = { op: 'create', image: disk.image, format: disk.format, sizeBytes: disk.sizeBytes, backing: disk.backing };
      if (pass.plan.claimRef === undefined) await this.#ensureDiskClaim(pass, disk);
      if (await this.#runDiskJob(pass, disk, disk.vmUid, operation)) {
        listed.set(diskKey(disk), { namespace: disk.namespace, vmName: disk.vmName, diskName: disk.diskName, size: disk.size, vmUid: disk.vmUid });
      }
    }
    await this.#announceRefusals(pass, admission.refused);
    return { disks: [...listed.values()], refused: admission.refused };
  }

  /** Removes the images whose VM is gone; records why the others stay. */
  async #deleteGone(pass: Pass, listed: Map<string, ListedDisk>, wanting: ReadonlyMap<string, string | undefined>): Promise<void> {
    const { ctx } = pass;
    const decisions = new Map<string, Retention>();
    const owners = new Map<string, Awaited<ReturnType<typeof lookUpOwner>>>();
    const launchers = new Map<string, string[]>();
    for (const [key, disk] of listed) {
      const verdict = listedVerdict(disk, wanting);
      if (verdict.action === 'keep-in-use') {
        if (verdict.adoptUid !== undefined) listed.set(key, { ...disk, vmUid: verdict.adoptUid });
        continue;
      }
      const vmKey = `${disk.namespace}/${disk.vmName}`;
      let owner = owners.get(vmKey);
      if (owner === undefined) {
        owner = await lookUpOwner(this.#d.client, disk.namespace, disk.vmName, ctx.signal);
        owners.set(vmKey, owner);
      }
      const sameVm = owner.lookup.kind === 'present' && (disk.vmUid === undefined || owner.lookup.uid === disk.vmUid);
      let active: string[] = [];
      if (owner.lookup.kind !== 'failed' && !sameVm) {
        active = launchers.get(vmKey) ?? (await activeLaunchers(this.#d.client, disk.namespace, disk.vmName, ctx.signal));
        launchers.set(vmKey, active);
      }
      decisions.set(key, retention({ disk, owner: owner.lookup, activeLaunchers: active }));
    }
    const previous = pass.memory.held;
    pass.memory.held = new Map();
    for (const [key, decision] of holdAll(decisions)) {
      const disk = listed.get(key);
      if (disk === undefined) continue;
      if (decision.action === 'keep') {
        pass.memory.held.set(key, decision.reason);
        if (previous.get(key) !== decision.reason) await this.#announceHold(pass, disk, decision, owners.get(`${disk.namespace}/${disk.vmName}`)?.object);
        continue;
      }
      if (await this.#deleteDisk(pass, disk)) {
        listed.delete(key);
        ctx.log.info({ disk: key, vmUid: disk.vmUid }, 'disk image deleted: its VM is gone');
      }
    }
  }

  async #announceHold(pass: Pass, disk: ListedDisk, decision: Retention & { action: 'keep' }, owner: OwnerObject | undefined): Promise<void> {
    const { ctx, sd } = pass;
    ctx.log.info({ disk: diskKey(disk), reason: decision.reason, note: decision.message }, 'disk image kept');
    if (decision.reason !== 'OwnerUnparsable' && decision.reason !== 'OwnerLookupFailed') return;
    const note = `disk ${diskKey(disk)} is kept: ${decision.message}; no disk of this domain is deleted meanwhile`;
    await this.#d.events.record(domainTarget(sd), { type: 'Warning', reason: 'DiskDeletionBlocked', action: 'DeleteDisk', note });
    if (owner !== undefined && decision.reason === 'OwnerUnparsable') {
      await this.#d.events.record(owner, { type: 'Warning', reason: 'SchemaMismatch', action: 'DeleteDisk', note: `${decision.message}: its disks on StorageDomain ${sd.metadata.name} are kept` });
    }
  }

  async #announceRefusals(pass: Pass, refused: readonly Refusal[]): Promise<void> {
    const previous = pass.memory.refused;
    pass.memory.refused = new Map(refused.map((r) => [diskKey(r.disk), r.reason]));
    for (const r of refused) {
      if (previous.get(diskKey(r.disk)) === r.reason || r.reason === 'Maintenance' || r.reason === 'Deleting') continue;
      await this.#d.events.record(vmTarget(r.disk), { type: 'Warning', reason: 'DiskNotCreated', action: 'CreateDisk', note: `StorageDomain ${pass.sd.metadata.name}: ${r.message}` });
    }
  }

  /** Deletes one image (or the disk's own claim on a storageClass domain); true once it is gone. */
  async #deleteDisk(pass: Pass, disk: ListedDisk): Promise<boolean> {
    if (pass.plan.claimRef !== undefined) return this.#runDiskJob(pass, disk, disk.vmUid, { op: 'delete', image: diskImageBase(disk) });
    // A disk of its own claim: deleting the claim deletes the disk (the class's reclaim policy decides the data).
    try {
      await this.#d.client.delete(objectPath(coreTypes.persistentVolumeClaim, { namespace: disk.namespace, name: diskClaimName(disk) }), undefined, pass.ctx.signal);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    return true;
  }

  /** Drives one disk job; true once it has succeeded (its pod is then removed). */
  async #runDiskJob(pass: Pass, disk: DiskRef, vmUid: string | undefined, operation: StorageJobOperation): Promise<boolean> {
    const { sd, memory, now, ctx } = pass;
    const kind = operation.op === 'delete' ? 'delete' : 'create';
    const name = diskJobPodName(kind, sd.metadata.name, disk, vmUid);
    const volume = pass.plan.claimRef ?? { namespace: disk.namespace, name: diskClaimName(disk) };
    const place = { namespace: volume.namespace, name, domainUid: pass.owner.uid };
    const run = await this.#d.jobs.find(place, ctx.signal);
    switch (run.outcome?.state) {
      case 'running':
        return false;
      case 'succeeded':
        // A storageClass disk's job measures the disk's own claim, not the domain.
        if (run.outcome.result !== undefined && pass.plan.claimRef !== undefined) memory.capacity = run.outcome.result;
        memory.probed = true;
        memory.failures.delete(name);
        if (run.pod !== undefined) await this.#d.jobs.remove(run.pod, ctx.signal);
        ctx.log.info({ disk: diskKey(disk), op: operation.op }, 'disk job succeeded');
        return true;
      case 'failed':
        await this.#d.events.record(domainTarget(sd), {
          type: 'Warning',
          reason: kind === 'create' ? 'DiskCreateFailed' : 'DiskDeleteFailed',
          action: kind === 'create' ? 'CreateDisk' : 'DeleteDisk',
          note: `disk ${diskKey(disk)}: ${run.outcome.message}`,
        });
        memory.failures.set(name, now);
        if (run.pod !== undefined) await this.#d.jobs.remove(run.pod, ctx.signal);
        return false;
      case undefined: {
        const failedAt = memory.failures.get(name);
        if (failedAt !== undefined && now - failedAt < this.#d.retryAfterFailureMs) return false;
        await this.#d.jobs.start(
          {
            name,
            namespace: volume.namespace,
            domain: sd.metadata.name,
            claimName: volume.name,
            image: this.#d.image,
            imagePullPolicy: this.#d.imagePullPolicy,
            owner: pass.owner,
            operation,
            nodeName: pass.plan.nodeName,
            disk: diskKey(disk),
          },
          ctx.signal,
        );
        return false;
      }
    }
  }

  async #ensureDiskClaim(pass: Pass, disk: WantedByVm): Promise<void> {
    const claimName = diskClaimName(disk);
    const ref = { namespace: disk.namespace, name: claimName };
    const body = perDiskClaim(pass.sd, { namespace: disk.namespace, claimName, sizeBytes: disk.sizeBytes }, pass.owner);
    await createIfMissing(this.#d.client, collectionPath(coreTypes.persistentVolumeClaim, disk.namespace), objectPath(coreTypes.persistentVolumeClaim, ref), body, pass.ctx.signal);
  }
}
