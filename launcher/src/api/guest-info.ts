// What `GET /v1/guest` answers: the guest's OS, host name, logged-in users and file
// systems, asked from its agent at the time of the call. Every string and list is
// bounded (a guest is hostile by assumption, ADR 0101): at most GUEST_INFO_LIMITS.
import { z } from 'zod';
import { clip, GUEST_REPORT_LIMITS } from './guest-report-bounds.ts';

export const GUEST_INFO_LIMITS = {
  users: 64,
  filesystems: 64,
  string: GUEST_REPORT_LIMITS.string,
} as const;

const text = z.string().max(GUEST_INFO_LIMITS.string);

export const GuestInfoOsSchema = z.object({
  id: text.optional(),
  name: text.optional(),
  prettyName: text.optional(),
  version: text.optional(),
  versionId: text.optional(),
  kernelRelease: text.optional(),
  kernelVersion: text.optional(),
  machine: text.optional(),
});

export const GuestInfoPartSchema = z.enum(['os', 'hostname', 'users', 'filesystems']);
export type GuestInfoPart = z.infer<typeof GuestInfoPartSchema>;

export const GuestInfoReportSchema = z.object({
  os: GuestInfoOsSchema.optional(),
  hostname: text.optional(),
  users: z.array(z.object({ user: text, domain: text.optional(), loginTime: z.number() })).max(GUEST_INFO_LIMITS.users),
  filesystems: z
    .array(
      z.object({
        name: text,
        mountpoint: text,
        type: text,
        usedBytes: z.number().nonnegative().optional(),
        totalBytes: z.number().nonnegative().optional(),
      }),
    )
    .max(GUEST_INFO_LIMITS.filesystems),
  /** Parts the agent could not report (a command it refused or failed). */
  unavailable: z.array(GuestInfoPartSchema),
});
export type GuestInfoReport = z.infer<typeof GuestInfoReportSchema>;

/** What the agent reported, in the agent's own field names (already parsed by its client). */
export interface RawGuestInfo {
  os?: Partial<Record<'id' | 'name' | 'pretty-name' | 'version' | 'version-id' | 'kernel-release' | 'kernel-version' | 'machine', string>>;
  hostname?: string;
  users?: readonly { user: string; domain?: string; 'login-time': number }[];
  filesystems?: readonly { name: string; mountpoint: string; type: string; 'used-bytes'?: number; 'total-bytes'?: number }[];
  unavailable: readonly GuestInfoPart[];
}

function cut(value: string | undefined): string | undefined {
  return value === undefined ? undefined : clip(value, GUEST_INFO_LIMITS.string);
}

function bytes(value: number | undefined): number | undefined {
  return value === undefined || !Number.isFinite(value) || value < 0 ? undefined : value;
}

/** The agent's answers renamed and cut to GUEST_INFO_LIMITS. */
export function boundGuestInfo(raw: RawGuestInfo): GuestInfoReport {
  const os = raw.os;
  return {
    os:
      os === undefined
        ? undefined
        : {
            id: cut(os.id),
            name: cut(os.name),
            prettyName: cut(os['pretty-name']),
            version: cut(os.version),
            versionId: cut(os['version-id']),
            kernelRelease: cut(os['kernel-release']),
            kernelVersion: cut(os['kernel-version']),
            machine: cut(os.machine),
          },
    hostname: cut(raw.hostname),
    users: (raw.users ?? []).slice(0, GUEST_INFO_LIMITS.users).map((u) => ({
      user: clip(u.user, GUEST_INFO_LIMITS.string),
      domain: cut(u.domain),
      loginTime: Number.isFinite(u['login-time']) ? u['login-time'] : 0,
    })),
    filesystems: (raw.filesystems ?? []).slice(0, GUEST_INFO_LIMITS.filesystems).map((f) => ({
      name: clip(f.name, GUEST_INFO_LIMITS.string),
      mountpoint: clip(f.mountpoint, GUEST_INFO_LIMITS.string),
      type: clip(f.type, GUEST_INFO_LIMITS.string),
      usedBytes: bytes(f['used-bytes']),
      totalBytes: bytes(f['total-bytes']),
    })),
    unavailable: [...raw.unavailable],
  };
}
