import fc from 'fast-check';
import { generate, parser, type IConnectPacket, type Packet } from 'mqtt-packet';
import { describe, expect, it } from 'vitest';
import { applyMqttPolicy, CLIENT_ID_REFUSALS, readConnect, refusalConnack, type ConnectRead, type MqttPolicy, type MqttPolicyResult } from '../../src/protocol/mqtt-connect.js';

/** Hex with '#' comments to end of line and any whitespace. */
const hex = (s: string): Buffer => Buffer.from(s.replace(/#[^\n]*/g, '').replace(/\s+/g, ''), 'hex');

const NAME = 'sensor7._device.fleet.test';

/** Every packet mqtt-packet's own parser reads from `bytes` (the test's reference reading), and its first error. */
function parseAll(bytes: Buffer, protocolVersion = 4): { packets: Packet[]; error: string | undefined; left: number } {
  const p = parser({ protocolVersion });
  const packets: Packet[] = [];
  let error: string | undefined;
  p.on('packet', (packet) => packets.push(packet));
  p.on('error', (err: Error) => (error ??= err.message));
  const left = p.parse(bytes);
  return { packets, error, left };
}

/** The one CONNECT in `bytes`, as mqtt-packet reads it. */
function parseConnect(bytes: Buffer): IConnectPacket {
  const { packets, error, left } = parseAll(bytes);
  if (error !== undefined || packets.length !== 1 || left !== 0 || packets[0]?.cmd !== 'connect') throw new Error(`not one CONNECT: ${error ?? packets.length}`);
  return packets[0];
}

function complete(r: ConnectRead): Extract<ConnectRead, { status: 'complete' }> {
  if (r.status !== 'complete') throw new Error(`expected a complete CONNECT, got ${JSON.stringify(r)}`);
  return r;
}

// ---------------------------------------------------------------------------------------------
// CONNECTs made by mqtt-packet's generator (what real clients such as MQTT.js send).

const V3: IConnectPacket = { cmd: 'connect', protocolId: 'MQIsdp', protocolVersion: 3, clean: true, keepalive: 60, clientId: 'dev1' };
const V4: IConnectPacket = {
  cmd: 'connect',
  protocolId: 'MQTT',
  protocolVersion: 4,
  clean: false,
  keepalive: 120,
  clientId: NAME,
  username: 'bob',
  password: Buffer.from('secret'),
  will: { topic: 'fleet/status', payload: Buffer.from('gone'), qos: 1, retain: true },
};
const V5: IConnectPacket = {
  cmd: 'connect',
  protocolId: 'MQTT',
  protocolVersion: 5,
  clean: false,
  keepalive: 30,
  clientId: NAME,
  username: 'bob',
  password: Buffer.from('secret'),
  will: {
    topic: 'fleet/status',
    payload: Buffer.from('gone'),
    qos: 2,
    retain: false,
    properties: {
      willDelayInterval: 5,
      payloadFormatIndicator: true,
      messageExpiryInterval: 60,
      contentType: 'text/plain',
      responseTopic: 'fleet/reply',
      correlationData: Buffer.from([1, 2, 3]),
      userProperties: { a: 'b', multi: ['1', '2'] },
    },
  },
  properties: {
    sessionExpiryInterval: 3600,
    receiveMaximum: 10,
    maximumPacketSize: 65536,
    topicAliasMaximum: 5,
    requestResponseInformation: true,
    requestProblemInformation: false,
    userProperties: { site: 'north', repeated: ['1', '2'] },
    authenticationMethod: 'SCRAM-SHA-256',
    authenticationData: Buffer.from([9, 8, 7]),
  },
};
/** A long client id: the remaining length takes two bytes. */
const V4_LONG: IConnectPacket = { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId: `${NAME}/${'x'.repeat(200)}` };

const publish = (protocolVersion: number): Buffer =>
  generate({ cmd: 'publish', topic: 'fleet/t', payload: Buffer.from('hello'), qos: 1, messageId: 7, retain: false, dup: false }, { protocolVersion });

// A v3.1.1 CONNECT written byte by byte from the specification (not by the generator).
const GOLDEN_V4 = hex(`
  10 10               # CONNECT, remaining length 16
  00 04 4d 51 54 54   # "MQTT"
  04                  # level 4
  02                  # flags: clean session
  00 3c               # keep alive 60
  00 04 64 65 76 31   # client id "dev1"
`);

describe('readConnect: a whole CONNECT', () => {
  const cases: { name: string; connect: IConnectPacket; headerBytes: number }[] = [
    { name: 'MQTT 3.1', connect: V3, headerBytes: 2 },
    { name: 'MQTT 3.1.1 with will, username and password', connect: V4, headerBytes: 2 },
    { name: 'MQTT 5 with properties and will properties (remaining length 231: two bytes)', connect: V5, headerBytes: 3 },
    { name: 'MQTT 3.1.1 with a two-byte remaining length', connect: V4_LONG, headerBytes: 3 },
  ];
  for (const c of cases) {
    it(`${c.name}: exactly its length, its fields as mqtt-packet reads them`, () => {
      const bytes = generate(c.connect);
      const read = complete(readConnect(bytes, 16384));
      expect(read.bytes).toBe(bytes.length);
      expect(read.connect.length).toBe(bytes.length - c.headerBytes);
      expect(read.connect).toEqual(parseConnect(bytes));
      expect(read.connect.protocolVersion).toBe(c.connect.protocolVersion);
      expect(read.connect.clientId).toBe(c.connect.clientId);
    });

    it(`${c.name}: followed by a PUBLISH and a PINGREQ in the same buffer, exactly the CONNECT's length`, () => {
      const connect = generate(c.connect);
      const after = Buffer.concat([publish(c.connect.protocolVersion ?? 4), hex('c0 00')]);
      const read = complete(readConnect(Buffer.concat([connect, after]), 16384));
      expect(read.bytes).toBe(connect.length);
      expect(read.connect).toEqual(parseConnect(connect));
    });

    it(`${c.name}: every shorter prefix is incomplete, with the full length once the fixed header is in`, () => {
      const bytes = generate(c.connect);
      expect(readConnect(Buffer.alloc(0), 16384)).toEqual({ status: 'incomplete' });
      for (let n = 1; n < bytes.length; n++) {
        const expected = n < c.headerBytes ? { status: 'incomplete' } : { status: 'incomplete', packetBytes: bytes.length };
        expect(readConnect(bytes.subarray(0, n), 16384)).toEqual(expected);
      }
    });
  }

  it('the golden 3.1.1 CONNECT: 18 bytes, its fields', () => {
    const read = complete(readConnect(Buffer.concat([GOLDEN_V4, hex('e0 00')]), 18));
    expect(read.bytes).toBe(18);
    expect(read.connect).toMatchObject({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 60, clientId: 'dev1', length: 16 });
    expect(read.connect.username).toBeUndefined();
    expect(read.connect.password).toBeUndefined();
  });

  it('a CONNECT followed by the start of another packet: the CONNECT, whatever follows', () => {
    const read = complete(readConnect(Buffer.concat([GOLDEN_V4, hex('30 ff ff')]), 18));
    expect(read.bytes).toBe(18);
  });

  it('a remaining length in more bytes than needed (0x90 0x00 for 16) is read as mqtt-packet reads it (the CONNECT is rewritten anyway)', () => {
    const padded = Buffer.concat([hex('10 90 00'), GOLDEN_V4.subarray(2)]);
    const read = complete(readConnect(padded, 19));
    expect(read.bytes).toBe(19);
    expect(read.connect.clientId).toBe('dev1');
  });

  it('an MQTT 3.1.1 empty client id with clean session 0 is read (the policy decides)', () => {
    const bytes = hex('10 0c 00 04 4d 51 54 54 04 00 00 3c 00 00');
    const read = complete(readConnect(bytes, 100));
    expect(read.connect).toMatchObject({ clientId: '', clean: false, protocolVersion: 4 });
  });

  it('an MQTT 5 password without a username is read (MQTT 5 allows it)', () => {
    const bytes = hex('10 15 00 04 4d 51 54 54 05 42 00 3c 00 00 04 64 65 76 31 00 02 70 77');
    const read = complete(readConnect(bytes, 100));
    expect(read.connect.username).toBeUndefined();
    expect(read.connect.password).toEqual(Buffer.from('pw'));
  });

  it('a CONNECT of exactly maxBytes is accepted; one byte less is over the bound', () => {
    expect(complete(readConnect(GOLDEN_V4, 18)).bytes).toBe(18);
    expect(readConnect(GOLDEN_V4, 17)).toEqual({ status: 'invalid', reason: 'the CONNECT announces 18 bytes, over the 17-byte bound', tooLarge: true });
  });

  it('refuses a maxBytes that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) expect(() => readConnect(GOLDEN_V4, bad)).toThrow(`maxBytes must be a positive integer, got ${bad}`);
  });
});

describe('readConnect: refused first packets', () => {
  const cases: { name: string; bytes: Buffer; maxBytes?: number; reason: string; tooLarge?: boolean }[] = [
    { name: 'a PUBLISH', bytes: publish(4), reason: 'the first packet is PUBLISH, not CONNECT' },
    { name: 'a PINGREQ', bytes: hex('c0 00'), reason: 'the first packet is PINGREQ, not CONNECT' },
    { name: 'a PINGREQ, its first byte only', bytes: hex('c0'), reason: 'the first packet is PINGREQ, not CONNECT' },
    { name: 'a CONNACK', bytes: hex('20 02 00 00'), reason: 'the first packet is CONNACK, not CONNECT' },
    { name: 'a SUBSCRIBE with wrong flags', bytes: hex('80 05 00 01 00 00 00'), reason: 'the first packet is SUBSCRIBE, not CONNECT' },
    { name: 'a DISCONNECT', bytes: hex('e0 00'), reason: 'the first packet is DISCONNECT, not CONNECT' },
    { name: 'an AUTH', bytes: hex('f0 00'), reason: 'the first packet is AUTH, not CONNECT' },
    { name: 'packet type 0 (reserved)', bytes: hex('00 00'), reason: 'the first packet is RESERVED, not CONNECT' },
    // 0x16: type 1 (CONNECT) with flags 6.
    { name: 'TLS bytes (a ClientHello)', bytes: hex('16 03 01 00 f1 01'), reason: 'malformed CONNECT: Invalid header flag bits, must be 0x0 for connect packet' },
    // 'G' (0x47): type 4 (PUBACK).
    { name: 'HTTP', bytes: Buffer.from('GET / HTTP/1.1\r\n'), reason: 'the first packet is PUBACK, not CONNECT' },
    { name: 'a CONNECT with header flags set', bytes: hex('11 10'), reason: 'malformed CONNECT: Invalid header flag bits, must be 0x0 for connect packet' },
    { name: 'a remaining length in 5 bytes', bytes: hex('10 ff ff ff ff'), reason: 'malformed CONNECT: Invalid variable byte integer' },
    { name: 'remaining length 0', bytes: hex('10 00'), reason: 'malformed CONNECT: Cannot parse protocolId' },
    {
      name: 'the largest remaining length, before its bytes arrive',
      bytes: hex('10 ff ff ff 7f'),
      reason: 'the CONNECT announces 268435460 bytes, over the 16384-byte bound',
      tooLarge: true,
    },
    { name: '16384 bytes of remaining length, header only', bytes: hex('10 80 80 01'), reason: 'the CONNECT announces 16388 bytes, over the 16384-byte bound', tooLarge: true },
    { name: 'more than maxBytes without a whole fixed header', bytes: hex('10 80 80'), maxBytes: 2, reason: 'no CONNECT fixed header within 2 bytes', tooLarge: true },
    { name: 'protocol name MQTX', bytes: hex('10 10 00 04 4d 51 54 58 04 02 00 3c 00 04 64 65 76 31'), reason: 'malformed CONNECT: Invalid protocolId' },
    { name: 'protocol level 6', bytes: hex('10 10 00 04 4d 51 54 54 06 02 00 3c 00 04 64 65 76 31'), reason: 'malformed CONNECT: Invalid protocol version' },
    {
      name: 'protocol level 0x84 (bridge)',
      bytes: hex('10 10 00 04 4d 51 54 54 84 02 00 3c 00 04 64 65 76 31'),
      reason: "malformed CONNECT: protocol level 132 (a bridge's private flag) is not 3, 4 or 5",
    },
    {
      name: 'protocol name MQIsdp with level 4',
      bytes: hex('10 12 00 06 4d 51 49 73 64 70 04 02 00 3c 00 04 64 65 76 31'),
      reason: 'malformed CONNECT: protocol name "MQIsdp" does not go with protocol level 4 (MQTT does)',
    },
    {
      name: 'protocol name MQTT with level 3',
      bytes: hex('10 10 00 04 4d 51 54 54 03 02 00 3c 00 04 64 65 76 31'),
      reason: 'malformed CONNECT: protocol name "MQTT" does not go with protocol level 3 (MQIsdp does)',
    },
    { name: 'the reserved connect flag', bytes: hex('10 10 00 04 4d 51 54 54 04 03 00 3c 00 04 64 65 76 31'), reason: 'malformed CONNECT: Connect flag bit 0 must be 0, but got 1' },
    {
      name: 'will QoS without the will flag',
      bytes: hex('10 10 00 04 4d 51 54 54 04 0a 00 3c 00 04 64 65 76 31'),
      reason: 'malformed CONNECT: Will QoS must be set to zero when Will Flag is set to 0',
    },
    {
      name: 'will QoS 3',
      bytes: hex('10 15 00 04 4d 51 54 54 04 1e 00 3c 00 04 64 65 76 31 00 01 74 00 00'),
      reason: 'malformed CONNECT: will QoS 3 (at most 2)',
    },
    {
      name: 'an empty will topic',
      bytes: hex('10 14 00 04 4d 51 54 54 04 06 00 3c 00 04 64 65 76 31 00 00 00 00'),
      reason: 'malformed CONNECT: mqtt-packet cannot write this CONNECT again: Invalid will topic',
    },
    {
      name: 'MQTT 3.1.1 password without username',
      bytes: hex('10 14 00 04 4d 51 54 54 04 42 00 3c 00 04 64 65 76 31 00 02 70 77'),
      reason: 'malformed CONNECT: the password flag is set without the username flag (not allowed before MQTT 5)',
    },
    {
      name: 'MQTT 3.1 password without username',
      bytes: hex('10 16 00 06 4d 51 49 73 64 70 03 42 00 3c 00 04 64 65 76 31 00 02 70 77'),
      reason: 'malformed CONNECT: the password flag is set without the username flag (not allowed before MQTT 5)',
    },
    {
      name: 'three bytes after the last field, inside the remaining length',
      bytes: hex('10 13 00 04 4d 51 54 54 04 02 00 3c 00 04 64 65 76 31 01 02 03'),
      reason: 'malformed CONNECT: its fields take 16 of its 19 bytes of remaining length',
    },
    {
      name: 'a client id running past the remaining length',
      bytes: hex('10 0e 00 04 4d 51 54 54 04 02 00 3c 00 04 64 65 76 31'),
      reason: 'malformed CONNECT: Packet too short',
    },
    {
      name: 'a client id that is not UTF-8',
      bytes: hex('10 10 00 04 4d 51 54 54 04 02 00 3c 00 04 64 65 76 ff'),
      reason: 'malformed CONNECT: its fields take 18 of its 16 bytes of remaining length',
    },
    {
      name: 'an MQTT 5 property sent twice',
      bytes: hex('10 1b 00 04 4d 51 54 54 05 02 00 3c 0a 11 00 00 00 0a 11 00 00 00 14 00 04 64 65 76 31'),
      reason: 'malformed CONNECT: property sessionExpiryInterval appears more than once',
    },
    {
      name: 'an unknown MQTT 5 property',
      bytes: hex('10 13 00 04 4d 51 54 54 05 02 00 3c 02 7f 00 00 04 64 65 76 31'),
      reason: 'malformed CONNECT: Unknown property',
    },
  ];
  for (const c of cases) {
    it(`${c.name}: invalid`, () => {
      expect(readConnect(c.bytes, c.maxBytes ?? 16384)).toEqual({ status: 'invalid', reason: c.reason, tooLarge: c.tooLarge ?? false });
    });
  }

  it('every decision is stable: a prefix is incomplete or already the final decision, and more bytes change nothing', () => {
    for (const c of cases) {
      const max = c.maxBytes ?? 16384;
      const final = readConnect(c.bytes, max);
      for (let n = 1; n < c.bytes.length; n++) {
        const partial = readConnect(c.bytes.subarray(0, n), max);
        if (partial.status !== 'incomplete') expect(partial, `${c.name}, ${n} bytes`).toEqual(final);
      }
      expect(readConnect(Buffer.concat([c.bytes, publish(4)]), max), c.name).toEqual(final);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// applyMqttPolicy

const STRICT: MqttPolicy = { clientId: 'require-identity', username: 'identity', password: 'keep' };
const policy = (overrides: Partial<MqttPolicy>): MqttPolicy => ({ ...STRICT, ...overrides });

function accepted(r: MqttPolicyResult): Extract<MqttPolicyResult, { ok: true }> {
  if (!r.ok) throw new Error(`expected the CONNECT to pass, got ${r.reason}: ${r.detail}`);
  return r;
}

/** `connect` as a client sends it, read back as the gate would read it. */
const sent = (connect: IConnectPacket): IConnectPacket => complete(readConnect(generate(connect), 1 << 20)).connect;

/** A CONNECT mqtt-packet will not write (an empty client id it refuses, an MQTT 5 password alone), from its bytes. */
const fromHex = (h: string): IConnectPacket => complete(readConnect(hex(h), 1 << 20)).connect;
const u16 = (n: number): string => n.toString(16).padStart(4, '0');
const NAME_HEX = `${u16(NAME.length)} ${Buffer.from(NAME).toString('hex')}`;
/** 3.1.1, clean session 0, keep alive 60, empty client id. */
const V4_EMPTY_PERSISTENT = '10 0c 00 04 4d 51 54 54 04 00 00 3c 00 00';
/** 5, clean start 0, keep alive 60, no properties, empty client id. */
const V5_EMPTY_PERSISTENT = '10 0d 00 04 4d 51 54 54 05 00 00 3c 00 00 00';
/** 3.1, clean session 1, keep alive 60, empty client id. */
const V3_EMPTY = '10 0e 00 06 4d 51 49 73 64 70 03 02 00 3c 00 00';
/** 5, clean start 1, client id NAME, password "pw", no username. */
const V5_PASSWORD_ONLY = `10 ${(17 + NAME.length).toString(16)} 00 04 4d 51 54 54 05 42 00 3c 00 ${NAME_HEX} 00 02 70 77`;

const base = (version: 3 | 4 | 5, fields: Partial<IConnectPacket>): IConnectPacket => ({
  cmd: 'connect',
  protocolId: version === 3 ? 'MQIsdp' : 'MQTT',
  protocolVersion: version,
  clean: true,
  keepalive: 60,
  clientId: NAME,
  ...fields,
});

describe('applyMqttPolicy: accepted CONNECTs', () => {
  const SET_CLIENT_ID = 'client id set to the identity (the client sent an empty one)';
  const SET_USERNAME = 'username set to the identity (the client sent none)';
  const prefix = policy({ clientId: 'prefix-identity' });
  const cases: { name: string; connect: IConnectPacket; policy: MqttPolicy; clientId: string; username: string | undefined; password: string | undefined; changes: string[] }[] = [
    { name: 'require-identity, the name, username set', connect: sent(base(4, {})), policy: STRICT, clientId: NAME, username: NAME, password: undefined, changes: [SET_USERNAME] },
    {
      name: 'require-identity, the name and username already the name: no change',
      connect: sent(base(5, { username: NAME })),
      policy: STRICT,
      clientId: NAME,
      username: NAME,
      password: undefined,
      changes: [],
    },
    {
      name: 'require-identity, an empty client id is set to the name',
      connect: sent(base(4, { clientId: '', username: NAME })),
      policy: STRICT,
      clientId: NAME,
      username: NAME,
      password: undefined,
      changes: [SET_CLIENT_ID],
    },
    {
      name: 'require-identity, 3.1.1 empty client id with clean session 0 is set (the broker never sees it empty)',
      connect: fromHex(V4_EMPTY_PERSISTENT),
      policy: STRICT,
      clientId: NAME,
      username: NAME,
      password: undefined,
      changes: [SET_CLIENT_ID, SET_USERNAME],
    },
    { name: 'require-identity, 3.1 empty client id is set', connect: fromHex(V3_EMPTY), policy: STRICT, clientId: NAME, username: NAME, password: undefined, changes: [SET_CLIENT_ID, SET_USERNAME] },
    {
      name: 'require-identity, 5 empty client id with clean start 0 is set',
      connect: fromHex(V5_EMPTY_PERSISTENT),
      policy: STRICT,
      clientId: NAME,
      username: NAME,
      password: undefined,
      changes: [SET_CLIENT_ID, SET_USERNAME],
    },
    {
      name: 'another username is replaced, the password kept',
      connect: sent(base(4, { username: 'admin', password: Buffer.from('pw') })),
      policy: STRICT,
      clientId: NAME,
      username: NAME,
      password: 'pw',
      changes: ['username "admin" replaced by the identity'],
    },
    { name: 'username keep', connect: sent(base(4, { username: 'admin' })), policy: policy({ username: 'keep' }), clientId: NAME, username: 'admin', password: undefined, changes: [] },
    { name: 'username keep, none sent', connect: sent(base(4, {})), policy: policy({ username: 'keep' }), clientId: NAME, username: undefined, password: undefined, changes: [] },
    {
      name: 'password drop: removed, its flag cleared',
      connect: sent(base(4, { username: NAME, password: Buffer.from('pw') })),
      policy: policy({ password: 'drop' }),
      clientId: NAME,
      username: NAME,
      password: undefined,
      changes: ['password dropped'],
    },
    {
      name: 'password drop, none sent: nothing to drop',
      connect: sent(base(4, { username: NAME })),
      policy: policy({ password: 'drop' }),
      clientId: NAME,
      username: NAME,
      password: undefined,
      changes: [],
    },
    {
      name: 'MQTT 5 password without username, username identity: forwarded with the name as username',
      connect: fromHex(V5_PASSWORD_ONLY),
      policy: STRICT,
      clientId: NAME,
      username: NAME,
      password: 'pw',
      changes: [SET_USERNAME],
    },
    {
      name: 'MQTT 5 password without username, username keep, password drop',
      connect: fromHex(V5_PASSWORD_ONLY),
      policy: policy({ username: 'keep', password: 'drop' }),
      clientId: NAME,
      username: undefined,
      password: undefined,
      changes: ['password dropped'],
    },
    { name: 'prefix-identity, the name', connect: sent(base(4, { username: NAME })), policy: prefix, clientId: NAME, username: NAME, password: undefined, changes: [] },
    {
      name: "prefix-identity, name + '/' + the device's part",
      connect: sent(base(4, { clientId: `${NAME}/pump-2`, username: NAME })),
      policy: prefix,
      clientId: `${NAME}/pump-2`,
      username: NAME,
      password: undefined,
      changes: [],
    },
    {
      name: "prefix-identity, name + ':' + anything but wildcards",
      connect: sent(base(5, { clientId: `${NAME}:a/b:c`, username: NAME })),
      policy: prefix,
      clientId: `${NAME}:a/b:c`,
      username: NAME,
      password: undefined,
      changes: [],
    },
    {
      name: "prefix-identity, name + '/' alone",
      connect: sent(base(4, { clientId: `${NAME}/`, username: NAME })),
      policy: prefix,
      clientId: `${NAME}/`,
      username: NAME,
      password: undefined,
      changes: [],
    },
    { name: 'prefix-identity, empty is set to the name', connect: fromHex(V3_EMPTY), policy: prefix, clientId: NAME, username: NAME, password: undefined, changes: [SET_CLIENT_ID, SET_USERNAME] },
    {
      name: 'any: whatever the client sent',
      connect: sent(base(4, { clientId: 'other+#', username: NAME })),
      policy: policy({ clientId: 'any' }),
      clientId: 'other+#',
      username: NAME,
      password: undefined,
      changes: [],
    },
    {
      name: 'any: empty with clean session stays empty',
      connect: sent(base(4, { clientId: '', username: NAME })),
      policy: policy({ clientId: 'any' }),
      clientId: '',
      username: NAME,
      password: undefined,
      changes: [],
    },
    {
      name: 'every change at once, in order',
      connect: sent(base(4, { clientId: '', username: 'x'.repeat(100), password: Buffer.from('pw') })),
      policy: policy({ password: 'drop' }),
      clientId: NAME,
      username: NAME,
      password: undefined,
      changes: [SET_CLIENT_ID, `username ${JSON.stringify('x'.repeat(64))}…(100 characters) replaced by the identity`, 'password dropped'],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const result = accepted(applyMqttPolicy(c.connect, NAME, c.policy));
      expect(result.changes).toEqual(c.changes);
      const out = parseConnect(result.bytes);
      expect(out.clientId).toBe(c.clientId);
      expect(out.username).toBe(c.username);
      expect(out.password?.toString()).toBe(c.password);
      // Everything else as the client sent it.
      const { clientId: _c, username: _u, password: _p, length: _l, ...rest } = c.connect;
      const { clientId: _c2, username: _u2, password: _p2, length: _l2, ...restOut } = out;
      expect(restOut).toEqual(rest);
      expect(result.connect).toEqual(out);
    });
  }

  const withoutEnhancedAuth = (c: IConnectPacket): IConnectPacket => {
    if (c.properties === undefined) return c;
    const { authenticationMethod: _method, authenticationData: _data, ...properties } = c.properties;
    return { ...c, properties };
  };

  it('MQTT 5 enhanced authentication is refused under username: identity (CONNACK 0x87) and kept under username: keep', () => {
    const refused = applyMqttPolicy(sent(V5), NAME, STRICT);
    expect(refused.ok ? undefined : [refused.reason, refused.detail, refused.connack.toString('hex')]).toEqual([
      'enhanced-auth-not-allowed',
      'MQTT 5 enhanced authentication (method "SCRAM-SHA-256") is refused under username: identity: its AUTH exchange could give the broker another username than the identity',
      '20030087' + '00',
    ]);
    const kept = parseConnect(accepted(applyMqttPolicy(sent(V5), NAME, policy({ username: 'keep' }))).bytes);
    expect([kept.properties?.authenticationMethod, kept.username]).toEqual(['SCRAM-SHA-256', 'bob']);
  });

  const full: { name: string; connect: IConnectPacket }[] = [
    { name: 'MQTT 3.1', connect: { ...V3, clientId: NAME, username: 'u', password: Buffer.from('p'), will: { topic: 'w', payload: Buffer.from('x'), qos: 2, retain: true } } },
    { name: 'MQTT 3.1.1', connect: V4 },
    { name: 'MQTT 5 (properties, will properties, repeated user properties)', connect: V5 },
  ];
  for (const f of full) {
    for (const p of [STRICT, policy({ clientId: 'prefix-identity', password: 'drop' }), policy({ clientId: 'any', username: 'keep' })]) {
      it(`${f.name} under ${p.clientId}/${p.username}/${p.password}: same level, every other field and property survives`, () => {
        // Enhanced authentication is refused under username: identity (its own test below): the MQTT 5 case drops it there.
        const input = sent(p.username === 'identity' ? withoutEnhancedAuth(f.connect) : f.connect);
        const out = parseConnect(accepted(applyMqttPolicy(input, NAME, p)).bytes);
        const expected = {
          ...input,
          username: p.username === 'identity' ? NAME : input.username,
          password: p.password === 'drop' ? undefined : input.password,
        };
        const { length: _l, ...expectedRest } = expected;
        const { length: _l2, ...outRest } = out;
        expect(outRest).toEqual(expectedRest);
        expect(out.protocolVersion).toBe(f.connect.protocolVersion);
        expect(out.protocolId).toBe(f.connect.protocolId);
      });
    }
  }

  it('the bytes forwarded, written out: a 3.1.1 CONNECT with the name as client id and username', () => {
    const expected = hex(`
      10 ${(10 + 2 * (2 + NAME.length)).toString(16)}  # CONNECT, remaining length
      00 04 4d 51 54 54 04                               # "MQTT", level 4
      82                                                 # flags: username, clean session
      00 3c                                              # keep alive 60
      ${NAME_HEX}                                        # client id
      ${NAME_HEX}                                        # username
    `);
    const result = accepted(applyMqttPolicy(fromHex('10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00'), NAME, STRICT));
    expect(result.bytes).toEqual(expected);
  });
});

describe('applyMqttPolicy: refusals and their CONNACKs', () => {
  const prefix = policy({ clientId: 'prefix-identity' });
  const any = policy({ clientId: 'any' });
  const FORBIDDEN = '(topic wildcards and U+0000 are refused)';
  const cases: { name: string; connect: IConnectPacket; policy: MqttPolicy; reason: string; detail: string; connack: string }[] = [
    {
      name: 'require-identity, another client id, 3.1.1',
      connect: sent(base(4, { clientId: 'other' })),
      policy: STRICT,
      reason: 'client-id-not-identity',
      detail: `client id "other" is not the identity ${NAME}`,
      connack: '20 02 00 02',
    },
    {
      name: 'require-identity, another client id, 3.1',
      connect: sent(base(3, { clientId: 'other' })),
      policy: STRICT,
      reason: 'client-id-not-identity',
      detail: `client id "other" is not the identity ${NAME}`,
      connack: '20 02 00 02',
    },
    {
      name: 'require-identity, another client id, 5',
      connect: sent(base(5, { clientId: 'other' })),
      policy: STRICT,
      reason: 'client-id-not-identity',
      detail: `client id "other" is not the identity ${NAME}`,
      connack: '20 03 00 85 00',
    },
    {
      name: 'require-identity, the name in capitals',
      connect: sent(base(4, { clientId: NAME.toUpperCase() })),
      policy: STRICT,
      reason: 'client-id-not-identity',
      detail: `client id "${NAME.toUpperCase()}" is not the identity ${NAME}`,
      connack: '20 02 00 02',
    },
    {
      name: 'require-identity, the name with a suffix',
      connect: sent(base(5, { clientId: `${NAME}/x` })),
      policy: STRICT,
      reason: 'client-id-not-identity',
      detail: `client id "${NAME}/x" is not the identity ${NAME}`,
      connack: '20 03 00 85 00',
    },
    {
      name: 'prefix-identity, the name followed by more name',
      connect: sent(base(4, { clientId: `${NAME}.evil` })),
      policy: prefix,
      reason: 'client-id-not-prefixed',
      detail: `client id "${NAME}.evil" is neither the identity ${NAME} nor starts with ${NAME}/ or ${NAME}:`,
      connack: '20 02 00 02',
    },
    {
      name: 'prefix-identity, the name after something',
      connect: sent(base(5, { clientId: `x/${NAME}` })),
      policy: prefix,
      reason: 'client-id-not-prefixed',
      detail: `client id "x/${NAME}" is neither the identity ${NAME} nor starts with ${NAME}/ or ${NAME}:`,
      connack: '20 03 00 85 00',
    },
    {
      name: "prefix-identity, '+' in the device's part",
      connect: sent(base(4, { clientId: `${NAME}/+` })),
      policy: prefix,
      reason: 'client-id-forbidden-character',
      detail: `client id "${NAME}/+" holds "+" ${FORBIDDEN}`,
      connack: '20 02 00 02',
    },
    {
      name: "prefix-identity, '#' in the device's part",
      connect: sent(base(5, { clientId: `${NAME}:a#` })),
      policy: prefix,
      reason: 'client-id-forbidden-character',
      detail: `client id "${NAME}:a#" holds "#" ${FORBIDDEN}`,
      connack: '20 03 00 85 00',
    },
    {
      name: 'prefix-identity, U+0000',
      connect: sent(base(4, { clientId: `${NAME}/\u0000` })),
      policy: prefix,
      reason: 'client-id-forbidden-character',
      detail: `client id "${NAME}/\\u0000" holds "\\u0000" ${FORBIDDEN}`,
      connack: '20 02 00 02',
    },
    {
      name: 'any, 3.1.1 empty client id with clean session 0',
      connect: fromHex(V4_EMPTY_PERSISTENT),
      policy: any,
      reason: 'client-id-empty',
      detail: 'an empty client id with clean session 0',
      connack: '20 02 00 02',
    },
    { name: 'any, 3.1 empty client id', connect: fromHex(V3_EMPTY), policy: any, reason: 'client-id-empty', detail: 'an empty client id with MQTT 3.1', connack: '20 02 00 02' },
    {
      name: 'any, 5 empty client id with clean start 0',
      connect: fromHex(V5_EMPTY_PERSISTENT),
      policy: any,
      reason: 'client-id-empty',
      detail: 'an empty client id with clean session 0',
      connack: '20 03 00 85 00',
    },
    {
      name: 'MQTT 5 password without username, both kept',
      connect: fromHex(V5_PASSWORD_ONLY),
      policy: policy({ username: 'keep' }),
      reason: 'password-without-username',
      detail: 'a password without a username cannot be forwarded (mqtt-packet writes none): use username: identity or password: drop',
      connack: '20 03 00 87 00',
    },
    {
      name: 'a long client id is quoted cut',
      connect: sent(base(4, { clientId: 'y'.repeat(70) })),
      policy: STRICT,
      reason: 'client-id-not-identity',
      detail: `client id ${JSON.stringify('y'.repeat(64))}…(70 characters) is not the identity ${NAME}`,
      connack: '20 02 00 02',
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const result = applyMqttPolicy(c.connect, NAME, c.policy);
      expect(result).toEqual({ ok: false, reason: c.reason, detail: c.detail, connack: hex(c.connack) });
      // The CONNACK is one whole CONNACK, as mqtt-packet reads it at that level.
      const { packets, error, left } = parseAll(hex(c.connack), c.connect.protocolVersion);
      expect([error, left, packets[0]?.cmd]).toEqual([undefined, 0, 'connack']);
    });
  }

  const unusable = ['', 'single', 'bad name.test', 'é.test', `${'a'.repeat(64)}.test`, `${'a.'.repeat(127)}test`, 'a.test/x', 'a..test'];
  for (const name of unusable) {
    it(`an identity that is not an ASCII DNS name (${JSON.stringify(name.slice(0, 20))}): refused, not authorized`, () => {
      const shown = name.length > 64 ? `${JSON.stringify(name.slice(0, 64))}…(${name.length} characters)` : JSON.stringify(name);
      for (const [version, connack] of [
        [3, '20 02 00 05'],
        [4, '20 02 00 05'],
        [5, '20 03 00 87 00'],
      ] as const) {
        const result = applyMqttPolicy(sent(base(version, {})), name, any);
        expect(result).toEqual({ ok: false, reason: 'identity-unusable', detail: `the identity ${shown} is not an ASCII DNS name`, connack: hex(connack) });
      }
    });
  }

  it('a client id mqtt-packet cannot write (over 65535 bytes once encoded): not forwardable, not a broken packet', () => {
    const connect = { ...sent(base(4, {})), clientId: 'x'.repeat(70_000) };
    const result = applyMqttPolicy(connect, NAME, any);
    expect(result).toEqual({ ok: false, reason: 'connect-not-forwardable', detail: 'the client id is over 65535 bytes', connack: hex('20 02 00 05') });
  });

  it('a bridge-mode MQTT 5 object (mqtt-packet would write level 3): not forwardable', () => {
    const connect = { ...sent(base(5, {})), bridgeMode: true } as IConnectPacket;
    const result = applyMqttPolicy(connect, NAME, STRICT);
    expect(result).toMatchObject({ ok: false, reason: 'connect-not-forwardable', connack: hex('20 03 00 87 00') });
  });

  it('refusalConnack: the client-id reasons are exactly the four; the others are not authorized', () => {
    expect([...CLIENT_ID_REFUSALS].sort()).toEqual(['client-id-empty', 'client-id-forbidden-character', 'client-id-not-identity', 'client-id-not-prefixed']);
    expect(refusalConnack(4, 'connect-not-forwardable')).toEqual(hex('20 02 00 05'));
    expect(refusalConnack(3, 'password-without-username')).toEqual(hex('20 02 00 05'));
    expect(refusalConnack(5, 'client-id-empty')).toEqual(hex('20 03 00 85 00'));
  });
});

describe('hostile bytes (fast-check)', () => {
  const seeds = [GOLDEN_V4, generate(V3), generate(V4), generate(V5), generate(V4_LONG)];
  /** A valid CONNECT with some bytes overwritten, cut, or followed by junk. */
  const mutated = fc
    .record({
      seed: fc.constantFrom(...seeds),
      edits: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
      cut: fc.option(fc.nat(), { nil: undefined }),
      tail: fc.uint8Array({ maxLength: 16 }),
    })
    .map(({ seed, edits, cut, tail }) => {
      const bytes = Buffer.from(seed);
      for (const [at, value] of edits) bytes[at % bytes.length] = value;
      return Buffer.concat([cut === undefined ? bytes : bytes.subarray(0, cut % (bytes.length + 1)), tail]);
    });
  const anything = fc.oneof(
    mutated,
    fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
  );

  it('never throws; a complete CONNECT is at most the buffer; every prefix is incomplete or the same decision', () => {
    fc.assert(
      fc.property(anything, fc.integer({ min: 1, max: 400 }), (bytes, maxBytes) => {
        const final = readConnect(bytes, maxBytes);
        if (final.status === 'complete') expect(final.bytes).toBeLessThanOrEqual(Math.min(bytes.length, maxBytes));
        for (let n = 0; n < bytes.length; n++) {
          const partial = readConnect(bytes.subarray(0, n), maxBytes);
          if (partial.status !== 'incomplete') expect(partial).toEqual(final);
        }
      }),
      { numRuns: 1500, seed: 14 },
    );
  });

  it('whatever passes readConnect and the policy is forwarded as one CONNECT carrying the name', () => {
    const policies: MqttPolicy[] = [STRICT, policy({ clientId: 'prefix-identity', password: 'drop' })];
    fc.assert(
      fc.property(mutated, fc.constantFrom(...policies), (bytes, p) => {
        const read = readConnect(bytes, 4096);
        if (read.status !== 'complete') return;
        const result = applyMqttPolicy(read.connect, NAME, p);
        if (!result.ok) return;
        const out = parseConnect(result.bytes);
        expect(out.username).toBe(NAME);
        expect(out.clientId === NAME || out.clientId.startsWith(`${NAME}/`) || out.clientId.startsWith(`${NAME}:`)).toBe(true);
        expect(out.protocolVersion).toBe(read.connect.protocolVersion);
      }),
      { numRuns: 3000, seed: 14 },
    );
  });
});
