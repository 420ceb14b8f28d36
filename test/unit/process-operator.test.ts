/**
 * What the serving processes tell an operator, as pure functions: a listen
 * failure named by listener and address, the unban request and answer, the
 * resolver validation check, and the reload ledger; and the penalty box's
 * unban underneath.
 */
import { describe, expect, it } from 'vitest';
import type { DancegateConfig } from '../../src/config/types.js';
import { browserRequestRefusal, unbanAddress } from '../../src/metrics/admin-server.js';
import { Admission, ADMISSION_DEFAULTS } from '../../src/ratelimit/admission.js';
import { PenaltyBox } from '../../src/ratelimit/penalty-box.js';
import { ReloadLedger } from '../../src/process/reload-ledger.js';
import { checkOf, checkResolverAtStart, resolverReadiness, type ProbeVerdict } from '../../src/process/resolver-check.js';
import { StartError, describeListenError, isListenError } from '../../src/process/start-error.js';
import { describeUnban } from '../../src/process/unban.js';

const errno = (code: string, message = `listen ${code}`): NodeJS.ErrnoException => Object.assign(new Error(message), { code });

describe('describeListenError', () => {
  it.each([
    ['listener api', '127.0.0.1', 8443, errno('EADDRINUSE'), 'listener api: 127.0.0.1:8443 is already in use'],
    ['admin', '::1', 9090, errno('EADDRINUSE'), 'admin: [::1]:9090 is already in use'],
    ['listener web', '0.0.0.0', 443, errno('EACCES'), 'listener web: 0.0.0.0:443: permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE)'],
    ['listener api', '192.0.2.1', 8443, errno('EADDRNOTAVAIL'), 'listener api: 192.0.2.1:8443: that address is not on this host'],
    ['listener api', '127.0.0.1', 1, new Error('something else'), 'listener api: 127.0.0.1:1: something else'],
  ])('%s on %s:%d', (what, host, port, err, expected) => {
    expect(describeListenError(what, host, port, err)).toBe(expected);
  });

  it.each([
    [errno('EADDRINUSE'), true],
    [errno('EACCES'), true],
    [errno('ENOENT'), false],
    [new Error('x'), false],
    [undefined, false],
  ])('isListenError(%s) = %s', (err, expected) => {
    expect(isListenError(err)).toBe(expected);
  });
});

describe('browserRequestRefusal (POST /penalty-box/unban has no credentials: no browser may use it)', () => {
  it.each<[string, Record<string, string>, string | undefined]>([
    ['curl to the loopback address', { host: '127.0.0.1:9901' }, undefined],
    ['curl to an IPv6 address', { host: '[::1]:9901' }, undefined],
    ['curl to localhost', { host: 'localhost:9901' }, undefined],
    ['a pod IP (kubectl port-forward, exec)', { host: '10.1.2.3:9901' }, undefined],
    ['no Host (HTTP/1.0)', {}, undefined],
    [
      'a cross-site form post',
      { host: '127.0.0.1:9901', origin: 'https://evil.example' },
      'refused: a request from a web browser (Origin or Sec-Fetch-Site present); use curl or a script on the admin host',
    ],
    [
      'a fetch() with Sec-Fetch-Site',
      { host: '127.0.0.1:9901', 'sec-fetch-site': 'cross-site' },
      'refused: a request from a web browser (Origin or Sec-Fetch-Site present); use curl or a script on the admin host',
    ],
    ['DNS rebinding (a name now pointing at 127.0.0.1)', { host: 'rebind.evil.example:9901' }, "refused: Host 'rebind.evil.example:9901' is neither an IP address nor localhost"],
  ])('%s', (_label, headers, expected) => {
    expect(browserRequestRefusal(headers)).toBe(expected);
  });
});

describe('unbanAddress (the query string of POST /penalty-box/unban)', () => {
  it.each([
    ['/penalty-box/unban?address=192.0.2.7', { ok: true, address: '192.0.2.7' }],
    ['/penalty-box/unban?address=2001:db8::1', { ok: true, address: '2001:db8::1' }],
    ['/penalty-box/unban?address=2001%3Adb8%3A%3A1', { ok: true, address: '2001:db8::1' }],
    ['/penalty-box/unban', { ok: false, error: 'address: give exactly one, as in POST /penalty-box/unban?address=192.0.2.7 (got 0)' }],
    ['/penalty-box/unban?address=1.2.3.4&address=5.6.7.8', { ok: false, error: 'address: give exactly one, as in POST /penalty-box/unban?address=192.0.2.7 (got 2)' }],
    ['/penalty-box/unban?address=example.com', { ok: false, error: "address: expected an IPv4 or IPv6 address, got 'example.com'" }],
    ['/penalty-box/unban?address=2001:db8::/64', { ok: false, error: "address: expected an IPv4 or IPv6 address, got '2001:db8::/64'" }],
  ])('%s', (url, expected) => {
    expect(unbanAddress(url)).toEqual(expected);
  });
});

describe('describeUnban', () => {
  it.each([
    [
      'one process, banned',
      '192.0.2.7',
      [{ key: '192.0.2.7', penaltyBox: true, bannedForMs: 41_200, failures: 0 }],
      [],
      { address: '192.0.2.7', key: '192.0.2.7', lifted: true, bannedForMs: 41_200, failures: 0, detail: 'lifted the ban of 192.0.2.7 (42 s were left)' },
    ],
    [
      'IPv6, counted by its /64, not banned but with failures',
      '2001:db8:1:2::7',
      [{ key: '2001:db8:1:2::/64', penaltyBox: true, bannedForMs: 0, failures: 3 }],
      [],
      {
        address: '2001:db8:1:2::7',
        key: '2001:db8:1:2::/64',
        lifted: false,
        bannedForMs: 0,
        failures: 3,
        detail: '2001:db8:1:2::7 (counted as 2001:db8:1:2::/64) was not banned; forgot 3 failure(s) counted towards a ban',
      },
    ],
    [
      'two workers, banned in one, one silent',
      '192.0.2.7',
      [
        { key: '192.0.2.7', penaltyBox: true, bannedForMs: 5_000, failures: 0 },
        { key: '192.0.2.7', penaltyBox: true, bannedForMs: 0, failures: 2 },
      ],
      ['worker 99 did not answer within 2000 ms'],
      {
        address: '192.0.2.7',
        key: '192.0.2.7',
        lifted: true,
        bannedForMs: 5_000,
        failures: 2,
        detail: 'lifted the ban of 192.0.2.7 in 1 of 2 workers (5 s were left); forgot 2 failure(s) counted towards a ban',
        unanswered: ['worker 99 did not answer within 2000 ms'],
      },
    ],
    [
      'no penalty box',
      '192.0.2.7',
      [{ key: '192.0.2.7', penaltyBox: false, bannedForMs: 0, failures: 0 }],
      [],
      { address: '192.0.2.7', key: '192.0.2.7', lifted: false, bannedForMs: 0, failures: 0, detail: 'there is no penalty box (limits.penaltyBox: false); nothing to lift' },
    ],
    [
      'nobody answered',
      '192.0.2.7',
      [],
      ['worker 5 exited'],
      { address: '192.0.2.7', key: '192.0.2.7', lifted: false, bannedForMs: 0, failures: 0, detail: 'no process answered; nothing was lifted', unanswered: ['worker 5 exited'] },
    ],
  ])('%s', (_name, address, results, unanswered, expected) => {
    expect(describeUnban(address, results, unanswered)).toEqual(expected);
  });
});

describe('PenaltyBox.unban and Admission.unban', () => {
  it('lifts a ban and forgets failures; says what was lifted', () => {
    let now = 1_000;
    const box = new PenaltyBox({ failures: 3, windowMs: 10_000, banMs: 60_000, maxKeys: 10 }, () => now);
    expect(box.unban('192.0.2.7')).toBeUndefined();
    box.recordFailure('192.0.2.7', 3);
    now += 15_000;
    expect(box.bannedFor('192.0.2.7')).toBe(45_000);
    expect(box.unban('192.0.2.7')).toEqual({ bannedForMs: 45_000, failures: 0 });
    expect(box.bannedFor('192.0.2.7')).toBe(0);
    box.recordFailure('192.0.2.8', 2);
    expect(box.unban('192.0.2.8')).toEqual({ bannedForMs: 0, failures: 2 });
    // Forgotten: two more failures do not ban (the count starts again).
    box.recordFailure('192.0.2.8', 2);
    expect(box.bannedFor('192.0.2.8')).toBe(0);
  });

  it('an IPv6 address is unbanned by its /64, whichever address of it is named', () => {
    const admission = new Admission({ ...ADMISSION_DEFAULTS, penaltyBox: { failures: 2, windowMs: 60_000, banMs: 60_000 } }, () => 5_000);
    admission.recordFailure('2001:db8:1:2::7', 2);
    expect(admission.admitConnection('2001:db8:1:2::9')).toMatchObject({ ok: false, reason: 'penalty-box' });
    expect(admission.unban('2001:db8:1:2:ffff::1')).toEqual({ key: '2001:db8:1:2::/64', penaltyBox: true, bannedForMs: 60_000, failures: 0 });
    const admitted = admission.admitConnection('2001:db8:1:2::9');
    expect(admitted.ok).toBe(true);
    if (admitted.ok) admitted.release();
  });

  it('without a penalty box there is nothing to lift', () => {
    const admission = new Admission({ ...ADMISSION_DEFAULTS, penaltyBox: undefined });
    expect(admission.unban('192.0.2.7')).toEqual({ key: '192.0.2.7', penaltyBox: false, bannedForMs: 0, failures: 0 });
  });
});

const withServers = (servers: number): DancegateConfig => ({ resolver: { servers: Array.from({ length: servers }, () => ({ host: '127.0.0.1', port: 53 })) } }) as unknown as DancegateConfig;
const NOT_VALIDATING: ProbeVerdict = { ok: false, problem: 'not-validating', message: 'your resolver does not validate DNSSEC (answer for _dancegate-probe.example.com without the AD bit)' };

describe('the resolver validation check', () => {
  it.each<[ProbeVerdict, { ok: boolean; detail: string }]>([
    [
      { ok: true, detail: 'the resolver validates DNSSEC (secure denial)' },
      { ok: true, detail: 'the resolver validates DNSSEC (secure denial)' },
    ],
    [NOT_VALIDATING, { ok: false, detail: 'your resolver does not validate DNSSEC (answer for _dancegate-probe.example.com without the AD bit)' }],
    [
      { ok: false, problem: 'not-validating', message: 'no AD bit' },
      { ok: false, detail: 'your resolver does not validate DNSSEC: no AD bit' },
    ],
    [
      { ok: false, problem: 'unreachable', message: 'the resolver did not answer' },
      { ok: false, detail: 'the resolver did not answer' },
    ],
  ])('checkOf(%j)', (verdict, expected) => {
    expect(checkOf(verdict)).toEqual(expected);
  });

  const quiet = { info: () => undefined, warn: () => undefined };

  it('at start: refuse throws a StartError saying it in words; warn logs and goes on; no DNS servers: not asked', async () => {
    await expect(checkResolverAtStart(withServers(1), async () => NOT_VALIDATING, quiet, 'refuse')).rejects.toThrow(
      new StartError('your resolver does not validate DNSSEC (answer for _dancegate-probe.example.com without the AD bit) (resolver.validationProbe.atStart: refuse; set it to warn to start anyway)'),
    );
    const warned: unknown[] = [];
    await checkResolverAtStart(withServers(1), async () => NOT_VALIDATING, { info: () => undefined, warn: (o: unknown) => void warned.push(o) }, 'warn');
    expect(warned).toEqual([{ event: 'resolver-check', ok: false, detail: NOT_VALIDATING.ok ? '' : NOT_VALIDATING.message }]);
    // An unreachable resolver is not a refusal (it may start after us).
    await checkResolverAtStart(withServers(1), async () => ({ ok: false, problem: 'unreachable', message: 'timeout' }), quiet, 'refuse');
    let asked = false;
    await checkResolverAtStart(
      withServers(0),
      async () => {
        asked = true;
        return NOT_VALIDATING;
      },
      quiet,
      'refuse',
    );
    expect(asked).toBe(false);
  });

  it('/readyz: cached for the configuration in force, asked again after the cache time or a reload', async () => {
    let now = 0;
    let calls = 0;
    let config = withServers(1);
    const check = resolverReadiness(
      () => config,
      async () => {
        calls++;
        return NOT_VALIDATING;
      },
      5_000,
      () => now,
    );
    expect(await check()).toEqual({ ok: false, detail: NOT_VALIDATING.ok ? '' : NOT_VALIDATING.message });
    now = 4_999;
    await Promise.all([check(), check()]);
    expect(calls).toBe(1);
    now = 5_000;
    await check();
    expect(calls).toBe(2);
    config = withServers(1);
    await check();
    expect(calls).toBe(3);
    config = withServers(0);
    expect(await check()).toEqual({ ok: true, detail: 'no DNS resolver configured (local TLSA file only)' });
    expect(calls).toBe(3);
  });
});

describe('ReloadLedger', () => {
  it('counts, remembers and logs each result', () => {
    const lines: Array<[string, unknown, string]> = [];
    const counts: string[] = [];
    const gauge: number[] = [];
    const ledger = new ReloadLedger(
      {
        info: ((o: unknown, m: string) => void lines.push(['info', o, m])) as never,
        error: ((o: unknown, m: string) => void lines.push(['error', o, m])) as never,
        warn: ((o: unknown, m: string) => void lines.push(['warn', o, m])) as never,
      },
      { reloads: { inc: ({ result }) => void counts.push(result) }, lastReloadSuccess: { set: (v) => void gauge.push(v) } },
    );
    expect(ledger.last).toBeUndefined();
    const failed = ledger.failed(1, 'listener api2: 127.0.0.1:1 is already in use');
    expect(failed).toEqual({ ok: false, time: expect.any(String), generation: 1, error: 'listener api2: 127.0.0.1:1 is already in use' });
    ledger.record({ ok: true, time: 't', generation: 2 }, { success: 'configuration reloaded in every worker' });
    ledger.unchanged(['admin', 'log']);
    ledger.unchanged([]);
    expect(ledger.last).toEqual({ ok: true, time: 't', generation: 2 });
    expect(counts).toEqual(['failure', 'success']);
    expect(gauge).toEqual([0, 1]);
    expect(lines).toEqual([
      ['error', { event: 'reload', ok: false, generation: 1, error: 'listener api2: 127.0.0.1:1 is already in use' }, 'configuration rejected; the previous one stays in force'],
      ['info', { event: 'reload', ok: true, generation: 2 }, 'configuration reloaded in every worker'],
      ['warn', { event: 'reload', unchanged: ['admin', 'log'] }, 'admin, log take effect only after a restart'],
    ]);
  });
});
