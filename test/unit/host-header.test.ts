import { describe, expect, it } from 'vitest';
import { parseHostHeader } from '../../src/forward/host-header.js';

describe('parseHostHeader: accepted', () => {
  it.each([
    ['api.example.test', 'api.example.test', undefined],
    ['API.Example.TEST', 'api.example.test', undefined],
    ['api.example.test.', 'api.example.test', undefined],
    ['api.example.test:443', 'api.example.test', 443],
    ['api.example.test.:8443', 'api.example.test', 8443],
    ['api.example.test:0', 'api.example.test', 0],
    ['api.example.test:65535', 'api.example.test', 65535],
    ['localhost', 'localhost', undefined],
    ['sensor_1._device.example.test', 'sensor_1._device.example.test', undefined],
    ['xn--bcher-kva.example.test', 'xn--bcher-kva.example.test', undefined],
    ['192.0.2.1', '192.0.2.1', undefined],
    ['192.0.2.1:80', '192.0.2.1', 80],
    ['[2001:db8::1]', '2001:db8::1', undefined],
    ['[2001:DB8::1]:443', '2001:db8::1', 443],
    ['[::ffff:192.0.2.1]', '::ffff:192.0.2.1', undefined],
    [`${'a'.repeat(63)}.test`, `${'a'.repeat(63)}.test`, undefined],
  ])('%j -> %s port %s', (value, host, port) => {
    expect(parseHostHeader(value)).toEqual({ ok: true, host, port });
  });
});

describe('parseHostHeader: refused with the reason', () => {
  it.each([
    ['', 'the Host header is empty'],
    ['admin.example.test:x', 'the port must be 1 to 5 digits'],
    ['admin.example.test:', 'the port must be 1 to 5 digits'],
    ['admin.example.test:443:443', 'the port must be 1 to 5 digits'],
    ['admin.example.test:+443', 'the port must be 1 to 5 digits'],
    ['admin.example.test:123456', 'the port must be 1 to 5 digits'],
    ['admin.example.test:65536', 'the port is above 65535'],
    ['x@admin.example.test', "label 1 of the host name contains '@'; only letters, digits, '-' and '_' are allowed"],
    ['user:pw@admin.example.test', 'the port must be 1 to 5 digits'],
    ['admin.example.test..', 'label 4 of the host name is empty'],
    ['.admin.example.test', 'label 1 of the host name is empty'],
    ['admin..example.test', 'label 2 of the host name is empty'],
    ['.', 'the Host header names no host'],
    [':443', 'the Host header names no host'],
    ['admin.example.test/x', "label 3 of the host name contains '/'; only letters, digits, '-' and '_' are allowed"],
    ['admin%2eexample.test', "label 1 of the host name contains '%'; only letters, digits, '-' and '_' are allowed"],
    ['admin.example.test\\', "label 3 of the host name contains '\\'; only letters, digits, '-' and '_' are allowed"],
    ['admin.example.test#', "label 3 of the host name contains '#'; only letters, digits, '-' and '_' are allowed"],
    ['admin.example.test?', "label 3 of the host name contains '?'; only letters, digits, '-' and '_' are allowed"],
    ['*.example.test', "label 1 of the host name contains '*'; only letters, digits, '-' and '_' are allowed"],
    ['admin example.test', 'the Host header contains a space, control or non-ASCII character at position 5'],
    ['admin.example.test\t', 'the Host header contains a space, control or non-ASCII character at position 18'],
    ['bücher.example.test', 'the Host header contains a space, control or non-ASCII character at position 1'],
    [`${'a'.repeat(64)}.test`, 'label 1 of the host name is longer than 63 characters'],
    [`${'a.'.repeat(127)}ab`, 'the host name is longer than 253 characters'],
    ['a'.repeat(300), 'the Host header is longer than 260 characters'],
    ['1.2.3', 'the host looks like an IPv4 address but is not a valid one'],
    ['999.1.1.1', 'the host looks like an IPv4 address but is not a valid one'],
    ['2001:db8::1', 'the port must be 1 to 5 digits'],
    ['[2001:db8::1', 'an IPv6 address in the Host header lacks its closing bracket'],
    ['[2001:db8::1]x', 'only :port may follow a bracketed IPv6 address'],
    ['[2001:db8::1]:', 'the port must be 1 to 5 digits'],
    ['[admin.example.test]', 'the bracketed host is not an IPv6 address'],
    ['[fe80::1%25eth0]', 'the bracketed host is not an IPv6 address'],
    ['[v1.x]', 'the bracketed host is not an IPv6 address'],
  ])('%j: %s', (value, reason) => {
    expect(parseHostHeader(value)).toEqual({ ok: false, reason });
  });
});
