import { describe, expect, it } from 'vitest';
import { Admission } from '../../src/ratelimit/admission.js';
import { sourceKey } from '../../src/ratelimit/source-key.js';

describe('sourceKey: what per-address limits count by', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['203.0.113.7', '203.0.113.7'],
    ['::ffff:127.0.0.1', '127.0.0.1'],
    ['::FFFF:7f00:1', '127.0.0.1'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:0DB8:0001:0002:ffff:ffff:ffff:ffff', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::9', '2001:db8:1:2::/64'],
    ['2001:db8:1:3::9', '2001:db8:1:3::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['0:0:0:0:0:0:0:1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['1::', '1:0:0:0::/64'],
    ['::', '0:0:0:0::/64'],
    ['64:ff9b::192.0.2.33', '64:ff9b:0:0::/64'],
    // Not an address (a Unix socket, an unknown peer): counted as given.
    ['', ''],
    ['not-an-address', 'not-an-address'],
  ])('%j -> %j', (address, key) => {
    expect(sourceKey(address)).toBe(key);
  });
});

describe('Admission counts an IPv6 source by its /64', () => {
  const limits = {
    handshakes: { maxConcurrent: 100, maxConcurrentPerIp: 2, maxTlsHandshakesPerIp: 1 },
    newConnectionsPerIp: undefined,
    penaltyBox: { failures: 2, windowMs: 60_000, banMs: 60_000 },
    maxConnectionsPerIdentity: undefined,
    trackedAddresses: 100,
  };

  it('shares the handshake budget across one /64, not across /64s', () => {
    const admission = new Admission(limits);
    expect(admission.admitConnection('2001:db8:1:2::a').ok).toBe(true);
    expect(admission.admitConnection('2001:db8:1:2::b').ok).toBe(true);
    expect(admission.admitConnection('2001:db8:1:2:ffff::c')).toEqual({
      ok: false,
      reason: 'handshake-budget-ip',
      detail: '2 connections from 2001:db8:1:2::/64 are already between accept and decision',
    });
    expect(admission.admitConnection('2001:db8:1:3::a').ok).toBe(true);
  });

  it('bans the whole /64 for failures spread over its addresses', () => {
    const admission = new Admission(limits);
    admission.recordFailure('2001:db8:1:2::1');
    admission.recordFailure('2001:db8:1:2::2');
    const refused = admission.admitConnection('2001:db8:1:2::3');
    expect(refused.ok).toBe(false);
    expect(refused.ok ? undefined : [refused.reason, refused.detail.startsWith('2001:db8:1:2::/64 failed authentication too often')]).toEqual(['penalty-box', true]);
    expect(admission.admitConnection('2001:db8:9:9::1').ok).toBe(true);
  });

  it('gives one /64 its TLS handshake slots together', () => {
    const admission = new Admission(limits);
    const granted: string[] = [];
    admission.enterTlsPhase(
      '2001:db8:1:2::1',
      () => granted.push('first'),
      () => granted.push('banned'),
    );
    const second = admission.enterTlsPhase(
      '2001:db8:1:2::2',
      () => granted.push('second'),
      () => granted.push('banned'),
    );
    expect(granted).toEqual(['first']);
    expect(admission.tlsHandshakesOf('2001:db8:1:2::99')).toEqual({ held: 1, waiting: 1 });
    second.release();
    expect(admission.tlsHandshakesOf('2001:db8:1:2::1')).toEqual({ held: 1, waiting: 0 });
  });
});
