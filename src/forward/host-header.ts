/**
 * Strict parsing of the HTTP Host header (RFC 9110 §7.2, RFC 3986 §3.2.2)
 * for the route check: `host[:port]` only, where host is a DNS name
 * (ASCII A-labels of letters/digits/hyphen/underscore, 1..63 octets each,
 * 253 in all, one trailing dot allowed and removed), a dotted IPv4 address
 * or an IPv6 address in brackets, and port is 1..5 digits. Userinfo, a
 * second colon, an empty port, percent-escapes, spaces and non-ASCII are
 * refused, so that the name the route check sees is the name every backend
 * sees. Pure.
 */
import { isIPv4, isIPv6 } from 'node:net';

export type HostResult =
  { readonly ok: true; /** Lowercase, no trailing dot, IPv6 without brackets. */ readonly host: string; readonly port: number | undefined } | { readonly ok: false; readonly reason: string };

const MAX_HOST_LENGTH = 253;
const MAX_LABEL_LENGTH = 63;
const LABEL = /^[a-z0-9_-]{1,63}$/;
const PORT = /^[0-9]{1,5}$/;

function fail(reason: string): HostResult {
  return { ok: false, reason };
}

function parsePort(text: string | undefined): number | undefined | { readonly error: string } {
  if (text === undefined) return undefined;
  if (!PORT.test(text)) return { error: 'the port must be 1 to 5 digits' };
  const port = Number(text);
  if (port > 65535) return { error: 'the port is above 65535' };
  return port;
}

/** Parse one Host header value, or say exactly why it is not `host[:port]`. */
export function parseHostHeader(value: string): HostResult {
  // Bounded before anything else: brackets, an IPv6 address and a port are well under this.
  if (value.length === 0) return fail('the Host header is empty');
  if (value.length > MAX_HOST_LENGTH + 1 + 6) return fail(`the Host header is longer than ${MAX_HOST_LENGTH + 7} characters`);
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code <= 0x20 || code >= 0x7f) return fail(`the Host header contains a space, control or non-ASCII character at position ${i}`);
  }
  let hostText: string;
  let portText: string | undefined;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close === -1) return fail('an IPv6 address in the Host header lacks its closing bracket');
    hostText = value.slice(1, close);
    const rest = value.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return fail('only :port may follow a bracketed IPv6 address');
      portText = rest.slice(1);
    }
    if (!isIPv6(hostText) || hostText.includes('%')) return fail('the bracketed host is not an IPv6 address');
    const port = parsePort(portText);
    if (typeof port === 'object') return fail(port.error);
    return { ok: true, host: hostText.toLowerCase(), port };
  }
  const colon = value.indexOf(':');
  if (colon === -1) hostText = value;
  else {
    hostText = value.slice(0, colon);
    portText = value.slice(colon + 1);
  }
  const port = parsePort(portText);
  if (typeof port === 'object') return fail(port.error);
  let host = hostText.toLowerCase();
  // One trailing dot is the root of a fully qualified name; more is not a name.
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host.length === 0) return fail('the Host header names no host');
  if (host.length > MAX_HOST_LENGTH) return fail(`the host name is longer than ${MAX_HOST_LENGTH} characters`);
  if (isIPv4(host)) return { ok: true, host, port };
  const labels = host.split('.');
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i] as string;
    if (label.length === 0) return fail(`label ${i + 1} of the host name is empty`);
    if (label.length > MAX_LABEL_LENGTH) return fail(`label ${i + 1} of the host name is longer than ${MAX_LABEL_LENGTH} characters`);
    if (!LABEL.test(label)) {
      const bad = [...label].find((c) => !/[a-z0-9_-]/.test(c)) ?? '';
      return fail(`label ${i + 1} of the host name contains '${bad}'; only letters, digits, '-' and '_' are allowed`);
    }
  }
  // All-numeric dotted names that are not valid IPv4 (1.2.3, 999.1.1.1) are refused: resolvers
  // and URL parsers disagree on what they mean.
  if (/^[0-9.]+$/.test(host)) return fail('the host looks like an IPv4 address but is not a valid one');
  return { ok: true, host, port };
}
