/**
 * How dancegate compares HTTP header names, everywhere: case-insensitively
 * (Node lowercases them) and with '_' the same as '-' (CGI/WSGI stacks and
 * some backends fold one into the other, so `X_Client` reaches them as
 * `X-Client`). Pure.
 */
export function headerKey(name: string): string {
  return name.toLowerCase().replaceAll('_', '-');
}

export interface IdentityHeaderNames {
  readonly identityHeader: string;
  readonly statusHeader: string;
  readonly tlsaHeader?: string | undefined;
  readonly forwardClientCert: boolean;
  readonly forwardXfcc: boolean;
}

/**
 * Headers of one listener that would be the same header to a backend: each
 * as [key of the configured name, message naming both]. The forwarded
 * certificate headers (`Client-Cert`, `X-Forwarded-Client-Cert`) count when
 * switched on.
 */
export function identityHeaderCollisions(http: IdentityHeaderNames): Array<[key: string, message: string]> {
  const named: Array<[key: string, name: string]> = [
    ['identityHeader', http.identityHeader],
    ['statusHeader', http.statusHeader],
  ];
  if (http.tlsaHeader !== undefined) named.push(['tlsaHeader', http.tlsaHeader]);
  if (http.forwardClientCert) named.push(['forwardClientCert', 'Client-Cert']);
  if (http.forwardXfcc) named.push(['forwardXfcc', 'X-Forwarded-Client-Cert']);
  const out: Array<[string, string]> = [];
  const seen = new Map<string, [key: string, name: string]>();
  for (const [key, name] of named) {
    const earlier = seen.get(headerKey(name));
    if (earlier === undefined) {
      seen.set(headerKey(name), [key, name]);
      continue;
    }
    const what = (k: string, n: string): string => (k.startsWith('forward') ? `the ${n} header that ${k} adds` : `${k} '${n}'`);
    out.push([
      key.startsWith('forward') ? earlier[0] : key,
      `${what(key, name)} is the same header as ${what(earlier[0], earlier[1])} (header names are compared ignoring case, and '_' is the same as '-')`,
    ]);
  }
  return out;
}
