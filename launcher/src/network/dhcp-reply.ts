// What the launcher's DHCP server answers: a pure function of one parsed request and
// the one lease it can give (the guest's NIC, by MAC). Anything else — another MAC, a
// reply, a relay, a request for another address or server — gets no answer or a NAK.
import type { GuestLease } from '../api/pod-network.ts';
import {
  classlessRoutes, ipBytes, Option, optionAddress, prefixMask, uint16, uint32,
} from './dhcp-packet.ts';
import type { DhcpMessage, ReplyFields } from './dhcp-packet.ts';

/** KubeVirt hands out leases of 24 h too; the address never changes while the VM runs. */
export const LEASE_SECONDS = 86_400;

export interface GuestOffer {
  lease: GuestLease;
  /** The guest NIC's MAC address, lower case. */
  mac: string;
  dns: readonly string[];
  searchDomains: readonly string[];
}

function inSubnet(address: string, network: string, prefixLength: number): boolean {
  const n = (a: string): number => ipBytes(a).readUInt32BE(0);
  const mask = prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
  return ((n(address) ^ n(network)) & mask) === 0;
}

function leaseOptions(offer: GuestOffer): [number, Buffer][] {
  const { lease } = offer;
  const options: [number, Buffer][] = [
    [Option.serverId, ipBytes(lease.server)],
    [Option.leaseTime, uint32(LEASE_SECONDS)],
    [Option.renewalTime, uint32(LEASE_SECONDS / 2)],
    [Option.rebindingTime, uint32((LEASE_SECONDS * 7) / 8)],
    [Option.subnetMask, ipBytes(prefixMask(lease.prefixLength))],
    [Option.mtu, uint16(lease.mtu)],
  ];
  if (lease.gateway !== undefined) {
    options.push([Option.router, ipBytes(lease.gateway)]);
    // A gateway outside the guest's subnet (a /32 pod address) needs a host route first (RFC 3442).
    if (!inSubnet(lease.gateway, lease.address, lease.prefixLength)) {
      options.push([Option.classlessRoutes, classlessRoutes([[lease.gateway, 32, '0.0.0.0'], ['0.0.0.0', 0, lease.gateway]])]);
    }
  }
  const dns = offer.dns.slice(0, 8);
  if (dns.length > 0) options.push([Option.dns, Buffer.concat(dns.map(ipBytes))]);
  const search = offer.searchDomains[0];
  if (search !== undefined && search.length <= 255) options.push([Option.domainName, Buffer.from(search, 'ascii')]);
  return options;
}

/** The reply to `request`, or undefined when the server must stay silent. */
export function dhcpReply(request: DhcpMessage, offer: GuestOffer): ReplyFields | undefined {
  if (request.op !== 1 || request.giaddr !== '0.0.0.0' || request.chaddr !== offer.mac.toLowerCase()) return undefined;
  const base = { xid: request.xid, flags: request.flags, chaddr: request.chaddr, siaddr: offer.lease.server };
  switch (request.type) {
    case 'discover':
      return { ...base, type: 'offer', yiaddr: offer.lease.address, options: leaseOptions(offer) };
    case 'request': {
      const server = optionAddress(request, Option.serverId);
      if (server !== undefined && server !== offer.lease.server) return undefined; // the guest chose another server
      const wanted = optionAddress(request, Option.requestedAddress) ?? request.ciaddr;
      if (wanted !== offer.lease.address) {
        return { ...base, type: 'nak', yiaddr: '0.0.0.0', options: [[Option.serverId, ipBytes(offer.lease.server)]] };
      }
      return { ...base, type: 'ack', yiaddr: offer.lease.address, options: leaseOptions(offer) };
    }
    case 'inform':
      return { ...base, type: 'ack', yiaddr: '0.0.0.0', options: leaseOptions(offer).filter(([code]) => code !== Option.leaseTime) };
    default:
      return undefined;
  }
}
