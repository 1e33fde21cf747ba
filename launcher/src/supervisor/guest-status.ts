// Maps what the guest agent reported into the status API's guest section, within the
// bounds of GUEST_REPORT_LIMITS (a hostile guest reports what it likes).
import type { GuestSnapshot } from '../agent/monitor.ts';
import { boundGuest, clip, GUEST_REPORT_LIMITS } from '../api/guest-report-bounds.ts';
import type { Status } from '../api/status.ts';

export function guestAgentStatus(snapshot: GuestSnapshot): Status['guestAgent'] {
  const version = snapshot.agentVersion === undefined ? undefined : clip(snapshot.agentVersion, GUEST_REPORT_LIMITS.shortString);
  return { connected: snapshot.connected, version, since: snapshot.since, lastSeen: snapshot.lastSeen };
}

export function guestStatus(snapshot: GuestSnapshot): Status['guest'] {
  const os = snapshot.osInfo;
  return boundGuest({
    os:
      os === undefined
        ? undefined
        : {
            id: os.id,
            name: os.name,
            prettyName: os['pretty-name'],
            version: os.version,
            versionId: os['version-id'],
            kernelRelease: os['kernel-release'],
            machine: os.machine,
          },
    hostName: snapshot.hostName,
    interfaces: (snapshot.interfaces ?? []).slice(0, GUEST_REPORT_LIMITS.interfaces).map((iface) => ({
      name: iface.name,
      macAddress: iface['hardware-address'],
      ipAddresses: (iface['ip-addresses'] ?? []).slice(0, GUEST_REPORT_LIMITS.addressesPerInterface).map((ip) => ({ family: ip['ip-address-type'], address: ip['ip-address'], prefix: ip.prefix })),
    })),
  });
}
