/**
 * Which IP addresses Sluice may connect to on behalf of an untrusted party (a payer's
 * Lightning address): public unicast only. Without this, a payer could make Sluice send
 * requests to its own loopback services, the cloud metadata endpoint (169.254.169.254) or
 * the operator's private network (server-side request forgery).
 */
import dns from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

const NON_PUBLIC = new BlockList();
// IPv4 special-purpose ranges (RFC 6890 and successors) that are not public unicast.
for (const [network, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16],
  ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) {
  NON_PUBLIC.addSubnet(network, prefix, 'ipv4');
}
// IPv6: unspecified, loopback, NAT64 well-known, discard, documentation, unique local,
// link-local, multicast. IPv4-mapped addresses are unwrapped and checked as IPv4.
for (const [network, prefix] of [
  ['::', 128], ['::1', 128], ['64:ff9b::', 96], ['64:ff9b:1::', 48], ['100::', 64], ['2001:db8::', 32],
  ['fc00::', 7], ['fe80::', 10], ['ff00::', 8],
] as const) {
  NON_PUBLIC.addSubnet(network, prefix, 'ipv6');
}

const MAPPED_IPV4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/** True for a public unicast IPv4 or IPv6 address; false for anything else, names included. */
export function isPublicAddress(address: string): boolean {
  const mapped = MAPPED_IPV4.exec(address);
  if (mapped) return isPublicAddress(mapped[1] as string);
  const family = isIP(address);
  if (family === 4) return !NON_PUBLIC.check(address, 'ipv4');
  if (family === 6) return !NON_PUBLIC.check(address, 'ipv6');
  return false;
}

/**
 * A `lookup` for http(s).request that fails when any address a name resolves to is not
 * public. Checking every address (not only the one used) keeps a name that mixes public
 * and private records from being used at all.
 */
export const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) {
      callback(error, '', 0);
      return;
    }
    const refused = addresses.find((entry) => !isPublicAddress(entry.address));
    if (refused || addresses.length === 0) {
      const blocked = Object.assign(new Error(`${hostname} resolves to ${refused?.address ?? 'nothing'}, which is not a public address`), { code: 'ENOTPUBLIC' });
      callback(blocked, '', 0);
      return;
    }
    if (options.all) {
      (callback as unknown as (error: null, addresses: dns.LookupAddress[]) => void)(null, addresses);
    } else {
      const first = addresses[0] as dns.LookupAddress;
      callback(null, first.address, first.family);
    }
  });
};
