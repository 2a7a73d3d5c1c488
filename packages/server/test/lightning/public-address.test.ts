// Which addresses Sluice may reach for a payer-chosen Lightning address: public unicast only.
import { describe, expect, it } from 'vitest';
import { isPublicAddress } from '../../src/lightning/public-address.js';

describe('isPublicAddress', () => {
  it('accepts public IPv4 and IPv6 unicast', () => {
    for (const address of ['1.1.1.1', '8.8.8.8', '93.184.216.34', '2606:4700:4700::1111', '2a00:1450:4001:80b::200e']) {
      expect(isPublicAddress(address), address).toBe(true);
    }
  });

  it('refuses loopback, private, link-local, CGNAT, documentation, multicast and reserved ranges', () => {
    for (const address of [
      '127.0.0.1', '127.8.9.10', '0.0.0.0', '10.0.0.1', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254',
      '100.64.0.1', '192.0.2.1', '198.18.0.1', '224.0.0.1', '255.255.255.255',
      '::', '::1', 'fc00::1', 'fd12:3456::1', 'fe80::1', 'ff02::1', '2001:db8::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1',
    ]) {
      expect(isPublicAddress(address), address).toBe(false);
    }
  });

  it('treats names and garbage as not public (only addresses are judged)', () => {
    for (const address of ['localhost', 'example.com', '', '1.2.3', '::ffff:1.1.1.1.1']) expect(isPublicAddress(address), address).toBe(false);
    expect(isPublicAddress('::ffff:1.1.1.1')).toBe(true);
  });
});
