// Maps what the guest agent reported into the status API's guest section.
import type { GuestSnapshot } from '../agent/monitor.ts';
import type { Status } from '../api/status.ts';

export function guestAgentStatus(snapshot: GuestSnapshot): Status['guestAgent'] {
  return { connected: snapshot.connected, version: snapshot.agentVersion, since: snapshot.since, lastSeen: snapshot.lastSeen };
}

export function guestStatus(snapshot: GuestSnapshot): Status['guest'] {
  const os = snapshot.osInfo;
  return {
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
    interfaces: (snapshot.interfaces ?? []).map((iface) => ({
      name: iface.name,
      macAddress: iface['hardware-address'],
      ipAddresses: (iface['ip-addresses'] ?? []).map((ip) => ({ family: ip['ip-address-type'], address: ip['ip-address'], prefix: ip.prefix })),
    })),
  };
}
