/**
 * The four parsers under fuzzing, each with its seeds, its mutation strategy
 * and a `run` that feeds one input to the parser and returns the verdict as
 * a string (compared across two runs for determinism) and a coarse class
 * (counted, to show how many distinct outcomes the mutations reach).
 *
 * Contracts (what counts as a failure is decided in harness.ts):
 *  - parseClientHello, parseProxyHeader, judgeTlsaResponse must never throw on
 *    any bytes: they return an 'invalid'/'malformed' result. A ClientHello
 *    reason starting with INTERNAL_ERROR_PREFIX is the parser's own catch-all
 *    firing, so it counts as an exception too.
 *  - parseCertificateDer / parseTlsPeerCertificate and every lazily parsed
 *    field of ParsedCertificate may throw only CertificateParseError (their
 *    documented contract); any other exception is a failure.
 *  - ClientHello and PROXY parsers are incremental: a decision other than
 *    'incomplete' on a prefix of the input must be the decision on the whole
 *    input (their documented contract), checked on one prefix per input; the
 *    PROXY parser also promises the same reason, the ClientHello parser does
 *    not (its reason for a non-TLS stream is a guess from the bytes so far).
 */
import { X509Certificate as NodeX509Certificate } from 'node:crypto';
import * as dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { CertificateParseError, parseCertificateDer, parseTlsPeerCertificate, type ParsedCertificate } from '../src/dane/certificate.js';
import { judgeTlsaResponse } from '../src/lookup/tlsa-answer.js';
import { INTERNAL_ERROR_PREFIX, parseClientHello } from '../src/protocol/client-hello.js';
import { parseProxyHeader } from '../src/protocol/proxy-protocol.js';
import { applyByteOps, byteOpArb, byteOpsArb } from './bytes.js';
import { loadSeeds, type SeedFile } from './corpus.js';
import { applyDerOps, derOpArb, parseDer } from './der.js';
import { applyProxyOps, parseProxySeed, proxyOpArb, type ProxyModel } from './proxy.js';
import { applyHelloOps, fragmentArb, helloOpArb, parseHelloSeed, type HelloModel } from './tls.js';

export interface FuzzInput<C> {
  readonly bytes: Buffer;
  /** What the parser is told besides the bytes (the DNS query the response answers). */
  readonly context: C;
  /** Where to cut the input for the incremental check (modulo its length). */
  readonly cut: number;
}

export interface Verdict {
  /** Everything the parser returned, serialised; two runs on the same bytes must give the same string. */
  readonly full: string;
  /** A coarse class (status and reason with numbers blanked) for the distinct-verdict count. */
  readonly kind: string;
}

export class ContractViolation extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContractViolation';
  }
}

export interface FuzzTarget<C> {
  readonly name: string;
  readonly seeds: readonly SeedFile[];
  readonly arbitrary: fc.Arbitrary<FuzzInput<C>>;
  /** The unmutated seeds as inputs, once per context they are fuzzed with. */
  seedInputs(): Array<FuzzInput<C>>;
  /** Run the parser; throws what the parser threw outside its contract, or a ContractViolation. */
  run(input: FuzzInput<C>): Verdict;
  /** The incremental check, for parsers that have one: throws ContractViolation when a prefix disagrees. */
  checkPrefix?(input: FuzzInput<C>, whole: Verdict): void;
}

/** Blank numbers and hex so that reasons differing only in a length fall in one class. */
const normalise = (s: string): string =>
  s
    .replace(/0x[0-9a-f]+/gi, '0x#')
    .replace(/[0-9]+/g, '#')
    .slice(0, 100);

/** JSON with Buffers as hex and Dates as their time value (an invalid date would make toJSON throw). */
function serialise(value: unknown): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, key: string, v: unknown) {
    const raw = this[key];
    if (Buffer.isBuffer(raw) || raw instanceof Uint8Array) return `hex:${Buffer.from(raw).toString('hex')}`;
    if (raw instanceof Date) return `date:${raw.getTime()}`;
    return v;
  });
}

/** Choose a seed, apply structural then byte operations, and a cut point. */
function mutationArb<M, O, C>(
  models: readonly M[],
  structuralOp: fc.Arbitrary<O>,
  build: (seed: M, ops: readonly O[], extra: number) => Buffer,
  extraArb: fc.Arbitrary<number>,
  context: (seedIndex: number) => C,
  rawSeeds: readonly Buffer[],
): fc.Arbitrary<FuzzInput<C>> {
  return fc
    .record({
      seed: fc.nat({ max: models.length - 1 }),
      structural: fc.array(structuralOp, { maxLength: 4 }),
      extra: extraArb,
      bytes: fc.oneof({ weight: 3, arbitrary: fc.constant([]) }, { weight: 2, arbitrary: byteOpsArb(4) }),
      cut: fc.nat(),
    })
    .map(({ seed, structural, extra, bytes, cut }) => {
      const model = models[seed] as M;
      const built = build(model, structural, extra);
      return { bytes: applyByteOps(built, bytes, rawSeeds), context: context(seed), cut };
    });
}

// --- ClientHello ---------------------------------------------------------------------------

const HELLO_OPTIONS = [{}, { maxBytes: 512 }, { daneClientIdType: 0xff00 }] as const;

export function clientHelloTarget(): FuzzTarget<number> {
  const seeds = loadSeeds('client-hello');
  const models = seeds.map((s) => parseHelloSeed(s.bytes)).filter((m): m is HelloModel => m !== undefined);
  if (models.length !== seeds.length) throw new Error('a client-hello seed is not a TLS ClientHello');
  const parse = (bytes: Buffer, options: number): ReturnType<typeof parseClientHello> => {
    const result = parseClientHello(bytes, HELLO_OPTIONS[options]);
    if (result.status === 'invalid' && result.reason.startsWith(INTERNAL_ERROR_PREFIX)) {
      throw new ContractViolation(`the parser caught an exception of its own: ${result.reason}`);
    }
    return result;
  };
  return {
    name: 'client-hello',
    seeds,
    arbitrary: mutationArb(
      models,
      helloOpArb,
      (m, ops, fragment) => applyHelloOps(m, ops, models, fragment),
      fragmentArb,
      (i) => i % HELLO_OPTIONS.length,
      seeds.map((s) => s.bytes),
    ),
    seedInputs: () => seeds.map((s, i) => ({ bytes: s.bytes, context: i % HELLO_OPTIONS.length, cut: 0 })),
    run({ bytes, context }) {
      const result = parse(bytes, context);
      return { full: serialise(result), kind: result.status === 'invalid' ? `invalid: ${normalise(result.reason)}` : result.status };
    },
    checkPrefix({ bytes, context, cut }, whole) {
      if (bytes.length === 0) return;
      const prefix = parse(bytes.subarray(0, cut % bytes.length), context);
      // The decision may not change as bytes arrive: 'complete' with the same hello, or 'invalid'.
      // An invalid reason may (the guess for a stream that is not TLS: 'M' is "plain HTTP", 'M\x03' is not).
      const same = prefix.status === 'complete' ? serialise(prefix) === whole.full : prefix.status === 'incomplete' || whole.full.startsWith('{"status":"invalid"');
      if (!same) throw new ContractViolation(`prefix of ${cut % bytes.length} bytes gives ${serialise(prefix)}, the whole input ${whole.full}`);
    },
  };
}

// --- PROXY v1/v2 ---------------------------------------------------------------------------

const PROXY_OPTIONS = [{}, { maxHeaderBytes: 65551 }, { maxHeaderBytes: 64 }] as const;

export function proxyProtocolTarget(): FuzzTarget<number> {
  const seeds = loadSeeds('proxy-protocol');
  const models = seeds.map((s) => parseProxySeed(s.bytes)).filter((m): m is ProxyModel => m !== undefined);
  if (models.length !== seeds.length) throw new Error('a proxy-protocol seed is not a PROXY v1 line or v2 header');
  const parse = (bytes: Buffer, options: number): ReturnType<typeof parseProxyHeader> => parseProxyHeader(bytes, PROXY_OPTIONS[options % PROXY_OPTIONS.length]);
  return {
    name: 'proxy-protocol',
    seeds,
    arbitrary: mutationArb(
      models,
      proxyOpArb,
      (m, ops, fixCrc) => applyProxyOps(m, ops, models, fixCrc !== 0),
      fc.integer({ min: 0, max: 1 }),
      (i) => i,
      seeds.map((s) => s.bytes),
    ).chain((input) => fc.nat({ max: PROXY_OPTIONS.length - 1 }).map((options) => ({ ...input, context: options }))),
    seedInputs: () => seeds.map((s) => ({ bytes: s.bytes, context: 0, cut: 0 })),
    run({ bytes, context }) {
      const result = parse(bytes, context);
      const kind =
        result.status === 'invalid'
          ? `invalid: ${normalise(result.reason)}`
          : result.status === 'complete'
            ? `complete v${result.version} ${result.header.command} ${result.header.addresses?.family ?? 'none'}${result.header.crc32cValid === undefined ? '' : ` crc ${result.header.crc32cValid}`}`
            : result.status;
      return { full: serialise(result), kind };
    },
    checkPrefix({ bytes, context, cut }, whole) {
      if (bytes.length === 0) return;
      const prefix = parse(bytes.subarray(0, cut % bytes.length), context);
      if (prefix.status !== 'incomplete' && serialise(prefix) !== whole.full) {
        throw new ContractViolation(`prefix of ${cut % bytes.length} bytes gives ${serialise(prefix)}, the whole input ${whole.full}`);
      }
    },
  };
}

// --- DNS responses -------------------------------------------------------------------------

export interface DnsQuery {
  readonly id: number;
  readonly name: string;
}

export function dnsResponseTarget(): FuzzTarget<DnsQuery> {
  const seeds = loadSeeds('dns-response');
  // The query each captured response answers: its ID and question name.
  const queries = seeds.map((s) => {
    const packet = dnsPacket.decode(s.bytes);
    const name = packet.questions?.[0]?.name;
    if (name === undefined) throw new Error(`dns-response seed ${s.name} has no question`);
    return { id: packet.id ?? 0, name };
  });
  return {
    name: 'dns-response',
    seeds,
    arbitrary: mutationArb(
      seeds.map((s) => s.bytes),
      byteOpArb,
      (bytes, ops) =>
        applyByteOps(
          bytes,
          ops,
          seeds.map((s) => s.bytes),
        ),
      fc.constant(0),
      (i) => queries[i] as DnsQuery,
      seeds.map((s) => s.bytes),
    ),
    seedInputs: () => seeds.map((s, i) => ({ bytes: s.bytes, context: queries[i] as DnsQuery, cut: 0 })),
    run({ bytes, context }) {
      const udp = judgeTlsaResponse(context, bytes, true);
      const stream = judgeTlsaResponse(context, bytes, false);
      const kind = udp.action === 'final' ? `final ${udp.outcome.kind}: ${normalise(udp.outcome.detail)}` : udp.action === 'ignore' ? `ignore: ${normalise(udp.detail)}` : udp.action;
      return { full: serialise([udp, stream]), kind };
    },
  };
}

// --- Certificates --------------------------------------------------------------------------

/** Every field of a ParsedCertificate, each as its value or the CertificateParseError it threw. */
function describeCertificate(cert: ParsedCertificate): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const field = (name: string, read: () => unknown): void => {
    try {
      out[name] = read();
    } catch (err) {
      if (!(err instanceof CertificateParseError)) throw err;
      out[name] = `CertificateParseError: ${err.message}`;
    }
  };
  field('der', () => cert.der.length);
  field('spki', () => cert.spki);
  field('sha256Hex', () => cert.sha256Hex);
  field('dnsNames', () => cert.dnsNames);
  field('subject', () => cert.subject);
  field('issuer', () => cert.issuer);
  field('notBefore', () => cert.notBefore);
  field('notAfter', () => cert.notAfter);
  field('isCA', () => cert.isCA);
  field('pathLength', () => cert.pathLength);
  field('keyCertSign', () => cert.keyCertSign);
  field('node', () => cert.node.fingerprint256);
  return out;
}

/**
 * OpenSSL's error text in a refusal names whatever sits on OpenSSL's error queue, which can be a
 * stale entry left by an earlier parse ("PEM routines::no start line" for DER input): the refusal
 * is deterministic, that text is not, so it is blanked before verdicts are compared.
 */
const blankOpenSslError = (message: string): string => message.replace(/error:[0-9A-F]{8}:[^\n]*/g, 'error:<openssl>');

function certificateVerdict(parse: () => ParsedCertificate): Record<string, unknown> | string {
  let cert: ParsedCertificate;
  try {
    cert = parse();
  } catch (err) {
    if (!(err instanceof CertificateParseError)) throw err;
    return `refused: ${blankOpenSslError(err.message)}`;
  }
  const fields = describeCertificate(cert);
  for (const [k, v] of Object.entries(fields)) if (typeof v === 'string') fields[k] = blankOpenSslError(v);
  return fields;
}

/** The three ways the proxy parses a certificate; each input goes through one of them (chosen by the input). */
const CERTIFICATE_MODES = ['eager', 'lazy', 'tls-peer'] as const;

export function certificateTarget(): FuzzTarget<number> {
  const seeds = loadSeeds('certificate');
  const trees = seeds.map((s) => parseDer(s.bytes));
  return {
    name: 'certificate',
    seeds,
    arbitrary: mutationArb(
      trees,
      derOpArb,
      (tree, ops) => applyDerOps(tree, ops, trees),
      fc.constant(0),
      () => 0,
      seeds.map((s) => s.bytes),
    ).chain((input) => fc.nat({ max: CERTIFICATE_MODES.length - 1 }).map((mode) => ({ ...input, context: mode }))),
    seedInputs: () => seeds.flatMap((s) => CERTIFICATE_MODES.map((_, mode) => ({ bytes: s.bytes, context: mode, cut: 0 }))),
    run({ bytes, context }) {
      const mode = CERTIFICATE_MODES[context] ?? 'eager';
      let verdict: Record<string, unknown> | string;
      if (mode === 'eager') verdict = certificateVerdict(() => parseCertificateDer(bytes));
      else if (mode === 'lazy') verdict = certificateVerdict(() => parseCertificateDer(bytes, { lazy: true }));
      else {
        // The proxy's hot path: OpenSSL parsed the certificate in the handshake and renders its SANs.
        let subjectaltname: string | undefined;
        let openSslParses = true;
        try {
          subjectaltname = new NodeX509Certificate(bytes).subjectAltName;
        } catch {
          openSslParses = false;
        }
        verdict = openSslParses ? certificateVerdict(() => parseTlsPeerCertificate({ raw: bytes, subjectaltname })) : 'OpenSSL refuses it';
      }
      const kind =
        typeof verdict === 'string'
          ? `${mode} ${normalise(verdict)}`
          : `${mode} parsed, failing fields: ${Object.entries(verdict)
              .filter(([, v]) => typeof v === 'string' && v.startsWith('CertificateParseError'))
              .map(([k]) => k)
              .join(',')}`;
      return { full: serialise(verdict), kind };
    },
  };
}

/** Every target, by name. */
export const TARGETS: Readonly<Record<string, () => FuzzTarget<unknown>>> = {
  'client-hello': clientHelloTarget as () => FuzzTarget<unknown>,
  'proxy-protocol': proxyProtocolTarget as () => FuzzTarget<unknown>,
  'dns-response': dnsResponseTarget as () => FuzzTarget<unknown>,
  certificate: certificateTarget as () => FuzzTarget<unknown>,
};
