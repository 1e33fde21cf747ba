// pause, unpause, soft-reboot, migrate, migrate-cancel and guestinfo: calls of the
// aggregated subresources (ADR 0066), plus waiting for a migration's end and the text
// rendering of guest info (pure).
import { setTimeout as sleep } from 'node:timers/promises';
import { PluginError } from './errors.ts';
import type { Action, GuestInfo, KeyVirtApi, VmRef } from './keyvirt-api.ts';

function where(ref: VmRef): string {
  return `VirtualMachine "${ref.name}" in namespace "${ref.namespace}"`;
}

const DONE: Record<Action, string> = { pause: 'pause accepted', unpause: 'unpause accepted', 'soft-reboot': 'soft reboot accepted' };

export async function runAction(api: KeyVirtApi, ref: VmRef, action: Action, out: (line: string) => void): Promise<void> {
  await api.action(ref, action);
  out(`${where(ref)}: ${DONE[action]}`);
}

const FINAL = new Set(['Succeeded', 'Failed', 'Cancelled']);

export interface MigrateOptions {
  readonly targetNode: string | undefined;
  readonly wait: boolean;
  readonly timeoutSeconds: number;
  readonly pollMs?: number;
}

export async function runMigrate(api: KeyVirtApi, ref: VmRef, options: MigrateOptions, out: (line: string) => void): Promise<void> {
  const created = await api.migrate(ref, options.targetNode);
  out(`${where(ref)}: migration ${created.migrationName} created${options.targetNode !== undefined ? ` (to node ${options.targetNode})` : ''}`);
  if (!options.wait) return;
  const deadline = Date.now() + options.timeoutSeconds * 1000;
  let phase = 'Pending';
  while (Date.now() < deadline) {
    await sleep(options.pollMs ?? 1000);
    const m = await api.getMigration(ref.namespace, created.migrationName);
    phase = m.status?.phase ?? 'Pending';
    if (!FINAL.has(phase)) continue;
    if (phase === 'Succeeded') {
      out(`${where(ref)}: migration ${created.migrationName} succeeded${m.status?.targetNode !== undefined ? `, now on node ${m.status.targetNode}` : ''}`);
      return;
    }
    throw new PluginError(`migration ${created.migrationName} of ${where(ref)} ${phase.toLowerCase()}: ${m.status?.failureReason ?? 'no reason given'}`, 1);
  }
  throw new PluginError(`timed out after ${String(options.timeoutSeconds)} s waiting for migration ${created.migrationName} of ${where(ref)} (phase now: ${phase})`, 1);
}

export async function runMigrateCancel(api: KeyVirtApi, ref: VmRef, out: (line: string) => void): Promise<void> {
  const result = await api.migrateCancel(ref);
  out(`${where(ref)}: cancelled ${result.cancelled.length === 0 ? 'nothing' : result.cancelled.join(', ')}`);
}

function bytes(n: number | undefined): string {
  if (n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i] ?? 'B'}`;
}

/** Guest info as text: OS, users, file systems. Control characters from the guest are shown escaped. */
export function renderGuestInfo(ref: VmRef, info: GuestInfo): string {
  const safe = (s: string | undefined): string => (s === undefined ? '-' : JSON.stringify(s).slice(1, -1));
  const os = info.os ?? {};
  const lines = [
    where(ref),
    `Hostname:  ${safe(info.hostname)}`,
    `OS:        ${safe(os.prettyName ?? os.name)} (id ${safe(os.id)}, version ${safe(os.versionId ?? os.version)})`,
    `Kernel:    ${safe(os.kernelRelease)} ${safe(os.kernelVersion)}`,
    `Machine:   ${safe(os.machine)}`,
    '',
    `Users (${String(info.users.length)}):`,
    ...(info.users.length === 0 ? ['  none logged in'] : info.users.map((u) => {
      const login = u.loginTime !== undefined ? new Date(u.loginTime * 1000).toISOString() : '-';
      return `  ${safe(u.user)}${u.domain !== undefined ? `@${safe(u.domain)}` : ''}  since ${login}`;
    })),
    '',
    `File systems (${String(info.filesystems.length)}):`,
    `  ${'MOUNTPOINT'.padEnd(24)} ${'TYPE'.padEnd(10)} ${'DEVICE'.padEnd(12)} ${'USED'.padStart(10)} ${'TOTAL'.padStart(10)}`,
    ...info.filesystems.map(
      (f) => `  ${safe(f.mountpoint).padEnd(24)} ${safe(f.type).padEnd(10)} ${safe(f.name).padEnd(12)} ${bytes(f.usedBytes).padStart(10)} ${bytes(f.totalBytes).padStart(10)}`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}

export async function runGuestInfo(api: KeyVirtApi, ref: VmRef, format: 'text' | 'json', write: (text: string) => void): Promise<void> {
  const info = await api.guestInfo(ref);
  write(format === 'json' ? `${JSON.stringify(info, null, 2)}\n` : renderGuestInfo(ref, info));
}
