import { describe, expect, it } from 'vitest';
import { Admission, type Admitted } from '../../../src/ratelimit/admission.js';
import { admitConnection, admitIdentity } from '../../../src/connection/stages/admit.js';

describe('admitConnection', () => {
  it('passes the release on success and hands onBanned to the admission', () => {
    const seen: unknown[] = [];
    const release = (): void => undefined;
    const onBanned = (): void => undefined;
    const admission = { admitConnection: (source: string, banned?: unknown): Admitted => (seen.push(source, banned), { ok: true, release }) };
    expect(admitConnection(admission, '192.0.2.1', onBanned)).toEqual({ ok: true, value: release });
    expect(seen).toEqual(['192.0.2.1', onBanned]);
  });

  it.each([
    ['penalty-box', '192.0.2.1 failed authentication too often; refused for 60 s more'],
    ['rate-limited', 'more than 1/s new connections (burst 1) from 192.0.2.1'],
    ['handshake-budget', '4 connections are already between accept and decision'],
    ['handshake-budget-ip', '2 connections from 192.0.2.1 are already between accept and decision'],
  ] as const)('a %s refusal keeps its reason and detail', (reason, detail) => {
    const admission = { admitConnection: (): Admitted => ({ ok: false, reason, detail }) };
    expect(admitConnection(admission, '192.0.2.1', () => undefined)).toEqual({ ok: false, reason, detail });
  });

  it('with a real Admission: the second connection of an address over maxConcurrentPerIp is refused', () => {
    const admission = new Admission({
      handshakes: { maxConcurrent: 10, maxConcurrentPerIp: 1 },
      newConnectionsPerIp: undefined,
      penaltyBox: undefined,
      maxConnectionsPerIdentity: undefined,
      trackedAddresses: 10,
    });
    const first = admitConnection(admission, '192.0.2.7', () => undefined);
    expect(first.ok).toBe(true);
    expect(admitConnection(admission, '192.0.2.7', () => undefined)).toEqual({
      ok: false,
      reason: 'handshake-budget-ip',
      detail: '1 connections from 192.0.2.7 are already between accept and decision',
    });
    if (first.ok) first.value();
    expect(admitConnection(admission, '192.0.2.7', () => undefined).ok).toBe(true);
  });
});

describe('admitIdentity', () => {
  it('caps concurrent connections per verified name', () => {
    const admission = new Admission({
      handshakes: { maxConcurrent: 10, maxConcurrentPerIp: 10 },
      newConnectionsPerIp: undefined,
      penaltyBox: undefined,
      maxConnectionsPerIdentity: 1,
      trackedAddresses: 10,
    });
    const first = admitIdentity(admission, 'meter1._device.example.test');
    expect(first.ok).toBe(true);
    expect(admitIdentity(admission, 'meter1._device.example.test')).toEqual({ ok: false, reason: 'identity-limit', detail: 'meter1._device.example.test already has 1 connections' });
    expect(admitIdentity(admission, 'meter2._device.example.test').ok).toBe(true);
  });

  it("passes the admission's release and confirm through, and hands it the name and onReplaced", () => {
    const seen: unknown[] = [];
    const release = (): void => undefined;
    const confirm = (): void => undefined;
    const onReplaced = (): void => undefined;
    const admission = { admitIdentity: (name: string, told?: unknown) => (seen.push(name, told), { ok: true as const, release, confirm }) };
    const admitted = admitIdentity(admission, 'meter1._device.example.test', onReplaced);
    if (!admitted.ok) throw new Error(`refused: ${admitted.detail}`);
    expect(Object.keys(admitted.value).sort()).toEqual(['confirm', 'release']);
    expect(admitted.value.release).toBe(release);
    expect(admitted.value.confirm).toBe(confirm);
    expect(seen).toEqual(['meter1._device.example.test', onReplaced]);
  });

  it('newest-wins through the stage: the older connection is told only when the newer one confirms', () => {
    const admission = new Admission({
      handshakes: { maxConcurrent: 10, maxConcurrentPerIp: 10 },
      newConnectionsPerIp: undefined,
      penaltyBox: undefined,
      maxConnectionsPerIdentity: 1,
      identityOverflow: 'newest-wins',
      trackedAddresses: 10,
    });
    const told: string[] = [];
    const first = admitIdentity(admission, 'meter1._device.example.test', (d) => told.push(d));
    if (!first.ok) throw new Error(`the first was refused: ${first.detail}`);
    first.value.confirm();
    const second = admitIdentity(admission, 'meter1._device.example.test');
    if (!second.ok) throw new Error(`the second was refused: ${second.detail}`);
    expect(told).toEqual([]);
    second.value.confirm();
    expect(told).toEqual(['a newer connection of meter1._device.example.test took its place (maxConnectionsPerIdentity 1, newest-wins)']);
  });
});
