// The objects a launcher needs in the API server: its Secret (per-VM API token, kept
// across restarts, plus the launcher configuration) and its pod; a migration target's
// Secret and pod. Creating is idempotent: pod names are deterministic, so a retry or a
// stale cache meets AlreadyExists, never a second launcher. Deleting is guarded by the
// pod's UID.
import { randomBytes } from 'node:crypto';
import type { LauncherConfigInput } from '@keyvirt/launcher/api';
import type { VirtualMachine } from '@keyvirt/crds';
import type { Logger } from 'pino';
import { sameJson } from '../runtime/canonical-json.ts';
import { secretSchema, type Pod, type Secret } from '../runtime/core-schemas.ts';
import { type KubeClient, isAlreadyExists, isConflict, isNotFound } from '../runtime/kube-client.ts';
import { coreTypes, collectionPath, objectPath, type ObjectRef } from '../runtime/resource.ts';
import { configHash, launcherConfig, renderLauncherPod, renderLauncherSecret, type LauncherPodInput } from './launcher-pod.ts';
import { metricsTokenData } from './launcher-metrics-token.ts';
import { LABEL_VM_UID, launcherSecretName, LABEL_MANAGED_BY, MANAGED_BY, virtualMachineType } from './names.ts';

/**
 * Whose the Secret at the VM's launcher Secret name is: absent, this VM's (its controller
 * is this VirtualMachine), stale (controlled by an earlier VirtualMachine of the same
 * name and managed by the operator), or foreign (anything else: never overwritten).
 */
export function secretOwnership(existing: Secret | undefined, vm: VirtualMachine): 'absent' | 'mine' | 'stale' | 'foreign' {
  if (existing === undefined) return 'absent';
  const controller = existing.metadata.ownerReferences?.find((r) => r.controller === true);
  const vmController = controller?.kind === virtualMachineType.kind && controller.apiVersion.startsWith(`${virtualMachineType.group}/`);
  if (!vmController) return 'foreign';
  if (controller.uid === vm.metadata.uid) return 'mine';
  return controller.name === vm.metadata.name && existing.metadata.labels?.[LABEL_MANAGED_BY] === MANAGED_BY ? 'stale' : 'foreign';
}

/**
 * A Secret named like the VM's launcher Secret exists and is not the one this VM's
 * launcher uses: the operator neither overwrites it nor hands its token to a launcher.
 */
export class LauncherSecretNotOwnedError extends Error {
  override readonly name = 'LauncherSecretNotOwnedError';
}

/** The launcher Secret changed hands while it was being created (a retry settles it). */
export class LauncherSecretRaceError extends Error {
  override readonly name = 'LauncherSecretRaceError';
}

export class LauncherObjects {
  readonly #client: Pick<KubeClient, 'get' | 'create' | 'request' | 'delete'>;
  /** VM uid → API token. */
  readonly #tokens = new Map<string, string>();

  constructor(client: Pick<KubeClient, 'get' | 'create' | 'request' | 'delete'>) {
    this.#client = client;
  }

  baseUrl(podIp: string): string {
    return `http://${podIp.includes(':') ? `[${podIp}]` : podIp}:8443`;
  }

  cachedToken(pod: Pod): string | undefined {
    const uid = pod.metadata.labels?.[LABEL_VM_UID];
    return uid === undefined ? undefined : this.#tokens.get(uid);
  }

  /** Reads the launcher's token from its Secret (after an operator restart). */
  async loadToken(pod: Pod): Promise<string | undefined> {
    const uid = pod.metadata.labels?.[LABEL_VM_UID];
    const vmName = pod.metadata.labels?.['keyvirt.io/vm'];
    if (uid === undefined || vmName === undefined) return undefined;
    try {
      const secret = secretSchema.parse(
        await this.#client.get(objectPath(coreTypes.secret, { namespace: pod.metadata.namespace, name: launcherSecretName(vmName) })),
      );
      const encoded = secret.data?.token;
      if (encoded === undefined) return undefined;
      const token = Buffer.from(encoded, 'base64').toString('utf8');
      this.#tokens.set(uid, token);
      return token;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Writes the Secret, then creates the pod. False when the pod already existed. A
   * migration target gets a Secret of its own (its config says migration-target) with
   * the VM's token: both launchers of one VM answer to the same token.
   */
  async createLauncher(input: LauncherPodInput, log: Logger): Promise<boolean> {
    const { vm } = input;
    const config = launcherConfig(input);
    const candidate = input.migrationTarget !== undefined || input.haReplacement !== undefined;
    const token = candidate ? await this.#ensureTargetSecret(input, config) : await this.#ensureSecret(vm, config, input.settings.metricsKey);
    this.#tokens.set(vm.metadata.uid ?? '', token);
    const pod = renderLauncherPod(input, configHash(config));
    try {
      await this.#client.create(collectionPath(coreTypes.pod, vm.metadata.namespace), pod);
      return true;
    } catch (err) {
      if (isAlreadyExists(err)) {
        log.info('launcher pod already exists');
        return false;
      }
      throw err;
    }
  }

  /**
   * Deletes the launcher pod with UID `uid` (no-op when it is gone or replaced).
   * `force` (grace period 0) is only for a pod whose containers have all terminated.
   * With `resourceVersion`, only the pod exactly as the caller saw it (a promotion since
   * then makes the delete a no-op).
   */
  async deletePod(pod: ObjectRef, uid: string, force = false, resourceVersion?: string): Promise<void> {
    const path = objectPath(coreTypes.pod, pod);
    const preconditions = resourceVersion === undefined ? { uid } : { uid, resourceVersion };
    try {
      await this.#client.delete(path, { apiVersion: 'v1', kind: 'DeleteOptions', preconditions, ...(force ? { gracePeriodSeconds: 0 } : {}) });
    } catch (err) {
      if (isNotFound(err) || isConflict(err)) return;
      throw err;
    }
  }

  /**
   * Sets labels on a launcher pod, guarded by the resourceVersion it was seen at: a pod
   * changed since (its watch event reconciles the VM again) or gone is no error.
   */
  async labelPod(pod: ObjectRef, resourceVersion: string | undefined, labels: Record<string, string>): Promise<void> {
    try {
      await this.#client.request('PATCH', objectPath(coreTypes.pod, pod), { body: { metadata: { labels, resourceVersion } }, patchType: 'merge' });
    } catch (err) {
      if (!isNotFound(err) && !isConflict(err)) throw err;
    }
  }

  /** Deletes a migration target's Secret (no-op when it is gone). */
  async deleteTargetSecret(ref: ObjectRef): Promise<void> {
    try {
      await this.#client.delete(objectPath(coreTypes.secret, ref));
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /** The VM's token (from its own Secret, which always exists before any target). */
  async #vmToken(vm: VirtualMachine): Promise<string> {
    const cached = this.#tokens.get(vm.metadata.uid ?? '');
    if (cached !== undefined) return cached;
    const secret = secretSchema.parse(await this.#client.get(objectPath(coreTypes.secret, { namespace: vm.metadata.namespace, name: launcherSecretName(vm.metadata.name) })));
    if (secretOwnership(secret, vm) !== 'mine') throw new LauncherSecretNotOwnedError(`Secret ${launcherSecretName(vm.metadata.name)} is not controlled by this VirtualMachine`);
    const encoded = secret.data?.token;
    if (encoded === undefined) throw new Error(`Secret ${launcherSecretName(vm.metadata.name)} has no token`);
    return Buffer.from(encoded, 'base64').toString('utf8');
  }

  /** The Secret of a migration target or an HA replacement: its own config, the VM's token. */
  async #ensureTargetSecret(input: LauncherPodInput, config: LauncherConfigInput): Promise<string> {
    const { vm, migrationTarget, haReplacement } = input;
    if (migrationTarget === undefined && haReplacement === undefined) throw new Error('not a migration target or HA replacement');
    const token = await this.#vmToken(vm);
    const secret = renderLauncherSecret(vm, token, config, migrationTarget, haReplacement) as { data: Record<string, string> };
    Object.assign(secret.data, metricsTokenData(input.settings.metricsKey, vm.metadata.uid));
    try {
      await this.#client.create(collectionPath(coreTypes.secret, vm.metadata.namespace), secret);
    } catch (err) {
      if (!isAlreadyExists(err)) throw err;
    }
    return token;
  }

  /**
   * The VM's own launcher Secret, created first: a new VM (the usual case) costs one
   * request. Only when the name is taken (409) is the Secret read and judged by
   * secretOwnership: this VM's keeps its token (rewritten when its content differs),
   * an earlier VM's of the same name is deleted (uid precondition) and created anew
   * with the fresh token, anything else is left alone and never read for its token.
   */
  async #ensureSecret(vm: VirtualMachine, config: LauncherConfigInput, metricsKey?: Buffer): Promise<string> {
    const path = objectPath(coreTypes.secret, { namespace: vm.metadata.namespace, name: launcherSecretName(vm.metadata.name) });
    const collection = collectionPath(coreTypes.secret, vm.metadata.namespace);
    const fresh = randomBytes(32).toString('hex');
    if (await this.#createSecret(collection, ownSecret(vm, fresh, config, metricsKey))) return fresh;
    let existing: Secret;
    try {
      existing = secretSchema.parse(await this.#client.get(path));
    } catch (err) {
      // Taken a moment ago, gone now (an earlier VM's Secret collected meanwhile): the next reconcile creates it.
      if (isNotFound(err)) throw new LauncherSecretRaceError(`Secret ${launcherSecretName(vm.metadata.name)} went away while it was being created; retrying`, { cause: err });
      throw err;
    }
    const ownership = secretOwnership(existing, vm);
    if (ownership !== 'mine') {
      if (ownership === 'stale') {
        // The Secret of an earlier VM of the same name, not yet garbage-collected: replace it, never reuse its token.
        await this.#client.delete(path, { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { uid: existing.metadata.uid } });
        if (await this.#createSecret(collection, ownSecret(vm, fresh, config, metricsKey))) return fresh;
        throw new LauncherSecretRaceError(`Secret ${launcherSecretName(vm.metadata.name)} was created again while the stale one was being replaced; retrying`);
      }
      throw new LauncherSecretNotOwnedError(
        `Secret ${vm.metadata.namespace ?? ''}/${launcherSecretName(vm.metadata.name)} exists and is not controlled by this VirtualMachine; the operator does not overwrite it (delete or rename it)`,
      );
    }
    const token = existing.data?.token !== undefined ? Buffer.from(existing.data.token, 'base64').toString('utf8') : fresh;
    const secret = ownSecret(vm, token, config, metricsKey);
    if (!sameSecretContent(existing, secret)) {
      secret.metadata.resourceVersion = existing.metadata.resourceVersion;
      await this.#client.request('PUT', path, { body: secret });
    }
    return token;
  }

  /** POSTs `secret`; false when its name is taken. */
  async #createSecret(collection: string, secret: RenderedSecret): Promise<boolean> {
    try {
      await this.#client.create(collection, secret);
      return true;
    } catch (err) {
      if (isAlreadyExists(err)) return false;
      throw err;
    }
  }
}

/** The rendered launcher Secret, as far as this file reads and writes it. */
interface RenderedSecret {
  metadata: { labels?: Record<string, string>; resourceVersion?: string | undefined };
  data: Record<string, string>;
}

function ownSecret(vm: VirtualMachine, token: string, config: LauncherConfigInput, metricsKey: Buffer | undefined): RenderedSecret {
  const secret = renderLauncherSecret(vm, token, config) as RenderedSecret;
  Object.assign(secret.data, metricsTokenData(metricsKey, vm.metadata.uid));
  return secret;
}

/** Whether the stored Secret already holds what would be written (its data and labels). */
function sameSecretContent(existing: Secret, rendered: RenderedSecret): boolean {
  return sameJson(existing.data ?? {}, rendered.data) && sameJson(existing.metadata.labels ?? {}, rendered.metadata.labels ?? {});
}
