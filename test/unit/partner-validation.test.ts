import { describe, expect, it } from 'vitest';
import { normalizeDomain, normalizeHostPort } from '../../src/policy/domain.js';
import { PartnerDocument } from '../../src/policy/partner-file.js';
import { NEGOTIATION_MATRIX } from '../fixtures/negotiation-matrix.js';
import { checkCombination, newRecord, recordFromObject } from '../../src/policy/validate.js';
import type { Negotiation } from '../../src/policy/types.js';

describe('the negotiation combination matrix (docs/design.md section 3)', () => {
  for (const row of NEGOTIATION_MATRIX) {
    const name = `TLS ${row.tls} × SASL ${row.sasl} × dialback ${row.dialback} ⇒ ${row.verdict}`;
    it(name, () => {
      const record = {
        ...newRecord('m.example'),
        TlsNegotiation: row.tls as Negotiation,
        SaslNegotiation: row.sasl as Negotiation,
        SupportDialbackNegotiation: row.dialback,
      };
      const { errors, warnings } = checkCombination(record);
      expect(errors.length > 0 ? 'invalid' : warnings.length > 0 ? 'warning' : 'valid').toBe(row.verdict);
    });
  }
});

describe('domains', () => {
  it('normalises case, IDNA and a trailing dot', () => {
    expect(normalizeDomain('XMPP.Contoso.COM.')).toBe('xmpp.contoso.com');
    expect(normalizeDomain('bücher.example')).toBe('xn--bcher-kva.example');
  });
  it.each(['', 'a b.example', '-x.example', 'x-.example', 'a..example', 'x_y.example', `${'a'.repeat(64)}.example`, '10.0.0.1', '[::1]', 'example.123'])(
    'refuses %j',
    (bad) => {
      expect(() => normalizeDomain(bad)).toThrow();
    },
  );
  it('ProxyFqdn accepts host, host:port, IPv4 and [IPv6]:port only', () => {
    expect(normalizeHostPort('Proxy.Example:5270')).toBe('proxy.example:5270');
    expect(normalizeHostPort('127.0.0.11:25269')).toBe('127.0.0.11:25269');
    expect(normalizeHostPort('[::1]:5269')).toBe('[::1]:5269');
    expect(() => normalizeHostPort('proxy.example:0')).toThrow(/port/);
    expect(() => normalizeHostPort('::1')).toThrow(/brackets/);
  });
});

describe('records from the file', () => {
  it('omitted properties take their defaults', () => {
    expect(recordFromObject({ Identity: 'A.Example' })).toEqual(newRecord('a.example'));
  });
  it('a file that is not a list is refused with its line', () => {
    expect(() => PartnerDocument.parse('Identity: a.example\n', 'p.yaml')).toThrow(/^p\.yaml:1: the file must be a YAML list/);
  });
  it('an invalid combination in the file names the line of the record', () => {
    const text = '- Identity: a.example\n- Identity: b.example\n  TlsNegotiation: NotSupported\n  SaslNegotiation: Required\n';
    expect(() => PartnerDocument.parse(text, 'p.yaml')).toThrow(/^p\.yaml:3: TlsNegotiation: b\.example: invalid combination/);
  });
});
