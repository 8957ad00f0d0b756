/**
 * Domain names of partners: normalised to lowercase A-labels (IDNA ToASCII, RFC 5890, via the
 * WHATWG URL host parser that Node exposes as `url.domainToASCII`) and checked against the
 * hostname rules of RFC 1035 section 2.3.1 / RFC 1123 section 2.1, because an XMPP domainpart
 * (RFC 7622 section 3.2) used for s2s must be resolvable through DNS.
 */
import { domainToASCII } from 'node:url';
import { isIP } from 'node:net';

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** Returns the normalised domain, or throws an Error whose message says what is wrong. */
export function normalizeDomain(input: string): string {
  const trimmed = input.trim().replace(/\.$/, '');
  if (trimmed === '') throw new Error('a domain is required');
  if (isIP(trimmed) || isIP(trimmed.replace(/^\[|\]$/g, ''))) {
    throw new Error(`'${input}' is an IP address, not a domain`);
  }
  const ascii = domainToASCII(trimmed);
  if (ascii === '') throw new Error(`'${input}' is not a valid domain name`);
  if (ascii.length > 253) throw new Error(`'${input}' is longer than 253 characters`);
  const labels = ascii.split('.');
  for (const label of labels) {
    if (!LABEL.test(label)) {
      throw new Error(`'${input}' is not a valid domain name (label '${label}')`);
    }
  }
  // RFC 3696 section 2: a top-level label is never all-numeric.
  if (/^[0-9]+$/.test(labels[labels.length - 1] ?? '')) {
    throw new Error(`'${input}' is not a valid domain name (numeric top-level label)`);
  }
  return ascii;
}

/**
 * ProxyFqdn: `host[:port]` where host is a domain, an IPv4 address or a bracketed IPv6 address.
 * Returns the normalised form.
 */
export function normalizeHostPort(input: string): string {
  const text = input.trim();
  let host: string;
  let port: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (v6) {
    host = v6[1] ?? '';
    port = v6[2];
    if (isIP(host) !== 6) throw new Error(`'${input}' is not a valid host[:port]`);
    return port === undefined ? `[${host}]` : `[${host}]:${checkPort(port, input)}`;
  }
  const parts = text.split(':');
  if (parts.length > 2) throw new Error(`'${input}' is not a valid host[:port] (IPv6 needs [brackets])`);
  host = parts[0] ?? '';
  port = parts[1];
  const normalisedHost = isIP(host) === 4 ? host : normalizeDomain(host);
  return port === undefined ? normalisedHost : `${normalisedHost}:${checkPort(port, input)}`;
}

function checkPort(port: string, input: string): number {
  const n = /^\d{1,5}$/.test(port) ? Number(port) : NaN;
  if (!(n >= 1 && n <= 65535)) throw new Error(`'${input}' has an invalid port '${port}'`);
  return n;
}
