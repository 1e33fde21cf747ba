// Bounds on what a guest (through its agent) or a launcher (if a guest escaped into it)
// may put into a status. Everything the guest reports is attacker-controlled: without
// a bound a guest can list thousands of addresses or megabyte host names, and once the
// VirtualMachine object passes the API server's request limit (~1.5 MiB) every status
// write of the VM fails. Lists are cut to a count, strings to a length, here on both
// sides: the launcher bounds its own status, the operator bounds what it copies from it.
import type { Status } from './status.ts';

export const GUEST_REPORT_LIMITS = {
  interfaces: 16,
  addressesPerInterface: 16,
  /** Interface names, MAC and IP addresses. */
  shortString: 64,
  /** OS fields, host name, agent version. */
  string: 256,
  /** The launcher's reason for its phase. */
  reason: 64,
  /** The launcher's message for its phase. */
  message: 1024,
} as const;

/** `value` cut to at most `max` UTF-16 units, never inside a surrogate pair. */
export function clip(value: string, max: number): string {
  if (value.length <= max) return value;
  const code = value.charCodeAt(max - 1);
  const end = code >= 0xd800 && code <= 0xdbff ? max - 1 : max;
  return value.slice(0, end);
}

function clipOptional(value: string | undefined, max: number): string | undefined {
  return value === undefined ? undefined : clip(value, max);
}

/** The guest section of a status within GUEST_REPORT_LIMITS. */
export function boundGuest(guest: Status['guest']): Status['guest'] {
  const L = GUEST_REPORT_LIMITS;
  const os = guest.os;
  return {
    os:
      os === undefined
        ? undefined
        : {
            id: clipOptional(os.id, L.string),
            name: clipOptional(os.name, L.string),
            prettyName: clipOptional(os.prettyName, L.string),
            version: clipOptional(os.version, L.string),
            versionId: clipOptional(os.versionId, L.string),
            kernelRelease: clipOptional(os.kernelRelease, L.string),
            machine: clipOptional(os.machine, L.string),
          },
    hostName: clipOptional(guest.hostName, L.string),
    interfaces: guest.interfaces.slice(0, L.interfaces).map((iface) => ({
      name: clip(iface.name, L.shortString),
      macAddress: clipOptional(iface.macAddress, L.shortString),
      ipAddresses: iface.ipAddresses
        .slice(0, L.addressesPerInterface)
        .map((ip) => ({ family: ip.family, address: clip(ip.address, L.shortString), prefix: ip.prefix })),
    })),
  };
}

/** A launcher status whose guest-reported and free-text parts are within GUEST_REPORT_LIMITS. */
export function boundLauncherStatus(status: Status): Status {
  const L = GUEST_REPORT_LIMITS;
  return {
    ...status,
    reason: clipOptional(status.reason, L.reason),
    message: clipOptional(status.message, L.message),
    qemu: { ...status.qemu, runState: clipOptional(status.qemu.runState, L.shortString) },
    guestAgent: { ...status.guestAgent, version: clipOptional(status.guestAgent.version, L.shortString) },
    guest: boundGuest(status.guest),
  };
}
