import { X509Certificate } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { createCa, generateKeyPem, issueCertificate, type CertificateAndKey, type IssueOptions } from '../../src/tls/cert-factory.js';
import {
  certificateNames, matchesDomain, parseSubjectAltName, toALabel, type CertificateNames,
} from '../../src/tls/identity.js';

let key: string;
let ca: CertificateAndKey;

beforeAll(() => {
  key = generateKeyPem(); // one key for every certificate in this file
  ca = createCa({ commonName: 'Identity Test CA', keyPem: key });
});

function certFor(opts: IssueOptions): X509Certificate {
  return new X509Certificate(issueCertificate(ca, { keyPem: key, ...opts }).certPem);
}

function names(partial: Partial<CertificateNames>): CertificateNames {
  return { dnsIds: [], srvIds: [], xmppAddrs: [], commonNames: [], otherIds: [], ...partial };
}

/** A stand-in for certificates we cannot mint with forge (URI SANs, <unsupported> otherNames). */
function fakeCert(subjectAltName: string | undefined, cn?: string): X509Certificate {
  return {
    subjectAltName,
    toLegacyObject: () => ({ subject: cn === undefined ? {} : { CN: cn } }),
  } as unknown as X509Certificate;
}

describe('parseSubjectAltName (Node 20 rendering)', () => {
  it('splits the plain form, keeping colons inside othername values', () => {
    expect(parseSubjectAltName('DNS:a.example, othername:XmppAddr:a.example, othername:SRVName:_xmpp-server.a.example, IP Address:::1'))
      .toEqual([
        { kind: 'DNS', value: 'a.example' },
        { kind: 'othername', value: 'XmppAddr:a.example' },
        { kind: 'othername', value: 'SRVName:_xmpp-server.a.example' },
        { kind: 'IP Address', value: '::1' },
      ]);
  });

  it('decodes the JSON-quoted form Node uses for values with , " \\ or control characters', () => {
    // Literal output of Node 20.20 for a certificate carrying these names (see identity.ts header).
    expect(parseSubjectAltName('DNS:"a\\u002cb.example", othername:"XmppAddr:q\\"x.example", DNS:c.example'))
      .toEqual([
        { kind: 'DNS', value: 'a,b.example' },
        { kind: 'othername', value: 'XmppAddr:q"x.example' },
        { kind: 'DNS', value: 'c.example' },
      ]);
  });

  it('stops at the first entry it cannot read instead of guessing', () => {
    expect(parseSubjectAltName('DNS:a.example, DNS:"unterminated, DNS:b.example')).toEqual([{ kind: 'DNS', value: 'a.example' }]);
    expect(parseSubjectAltName('DNS:a.example,DNS:b.example')).toEqual([{ kind: 'DNS', value: 'a.example,DNS:b.example' }]);
    expect(parseSubjectAltName('')).toEqual([]);
  });
});

describe('certificateNames', () => {
  it('reads every identifier kind from a real certificate, as Node 20 renders it', () => {
    const cert = certFor({
      domain: 'a.example',
      dnsNames: ['a.example', '*.a.example', 'x,y.example'],
      srvNames: ['_xmpp-server.srv.example', '_xmpp-client.a.example', '_XMPP-Server.upper.example'],
      xmppAddrs: ['xmpp.example', 'user@a.example', 'a.example/res', 'bücher.example', 'q"x.example'],
      commonName: 'cn.example',
    });
    // Pin the rendering this module parses, so a Node upgrade that changes it fails here first.
    expect(cert.subjectAltName).toContain('DNS:"x\\u002cy.example"');
    expect(cert.subjectAltName).toContain('othername:"XmppAddr:q\\"x.example"');
    expect(certificateNames(cert)).toEqual({
      dnsIds: ['a.example', '*.a.example', 'x,y.example'],
      srvIds: ['srv.example', 'upper.example'],
      xmppAddrs: ['xmpp.example', 'bücher.example', 'q"x.example'],
      commonNames: ['cn.example'],
      otherIds: ['SRVName:_xmpp-client.a.example', 'XmppAddr:user@a.example', 'XmppAddr:a.example/res'],
    });
  });

  it('returns only the CN for a certificate without subjectAltName', () => {
    expect(certificateNames(certFor({ domain: 'cn-only.example', dnsNames: [] }))).toEqual(names({ commonNames: ['cn-only.example'] }));
  });

  it('keeps URI-IDs as other identifiers and ignores unsupported otherNames, IPs and e-mail', () => {
    const n = certificateNames(fakeCert('URI:xmpp:a.example, othername:<unsupported>, IP Address:127.0.0.1, email:a@a.example', 'a.example'));
    expect(n).toEqual(names({ otherIds: ['URI:xmpp:a.example'], commonNames: ['a.example'] }));
  });
});

describe('toALabel', () => {
  it('lowercases, applies IDNA ToASCII and drops one final dot', () => {
    expect(toALabel('Example.ORG.')).toBe('example.org');
    expect(toALabel('BÜCHER.example')).toBe('xn--bcher-kva.example');
  });

  it('refuses names that only match through URL host rewriting', () => {
    expect(toALabel('ex%61mple.org')).toBeNull();
    expect(toALabel('0x7f.1')).toBeNull(); // would become 127.0.0.1
    expect(toALabel('bü%63her.example')).toBeNull();
    expect(toALabel('127.0.0.1')).toBeNull();
    expect(toALabel('*.example.org')).toBeNull();
    expect(toALabel('')).toBeNull();
  });
});

describe('matchesDomain', () => {
  it('matches a DNS-ID exactly and case-insensitively', () => {
    expect(matchesDomain(names({ dnsIds: ['Example.ORG'] }), 'example.org')).toEqual({ ok: true, via: 'dns-id' });
    expect(matchesDomain(names({ dnsIds: ['example.org'] }), 'EXAMPLE.org.')).toEqual({ ok: true, via: 'dns-id' });
    expect(matchesDomain(names({ dnsIds: ['example.org'] }), 'example.net').ok).toBe(false);
    expect(matchesDomain(names({ dnsIds: ['sub.example.org'] }), 'example.org').ok).toBe(false);
  });

  it('compares IDNs as A-labels (RFC 6125 6.4.2)', () => {
    expect(matchesDomain(names({ dnsIds: ['xn--bcher-kva.example'] }), 'bücher.example')).toEqual({ ok: true, via: 'dns-id' });
    expect(matchesDomain(names({ dnsIds: ['xn--bcher-kva.example'] }), 'BÜCHER.example')).toEqual({ ok: true, via: 'dns-id' });
    expect(matchesDomain(names({ xmppAddrs: ['bücher.example'] }), 'xn--bcher-kva.example')).toEqual({ ok: true, via: 'xmpp-addr' });
  });

  it('honours a wildcard only as the whole left-most label, for exactly one label (RFC 6125 6.4.3)', () => {
    const wild = names({ dnsIds: ['*.example.org'] });
    expect(matchesDomain(wild, 'a.example.org')).toEqual({ ok: true, via: 'dns-id' });
    expect(matchesDomain(wild, 'A.Example.Org')).toEqual({ ok: true, via: 'dns-id' });
    expect(matchesDomain(wild, 'example.org').ok).toBe(false);
    expect(matchesDomain(wild, 'a.b.example.org').ok).toBe(false);
    expect(matchesDomain(names({ dnsIds: ['f*.example.org'] }), 'foo.example.org').ok).toBe(false);
    expect(matchesDomain(names({ dnsIds: ['*oo.example.org'] }), 'foo.example.org').ok).toBe(false);
    expect(matchesDomain(names({ dnsIds: ['a.*.example.org'] }), 'a.b.example.org').ok).toBe(false);
    expect(matchesDomain(names({ dnsIds: ['*.*.example.org'] }), 'a.b.example.org').ok).toBe(false);
    expect(matchesDomain(names({ dnsIds: ['*'] }), 'example').ok).toBe(false);
    // RFC 6125 7.2: a wildcard directly under a public suffix would speak for every domain in it.
    expect(matchesDomain(names({ dnsIds: ['*.org'] }), 'example.org').ok).toBe(false);
  });

  it('matches SRV-IDs for _xmpp-server only, wildcards included', () => {
    expect(matchesDomain(names({ srvIds: ['example.org'] }), 'example.org')).toEqual({ ok: true, via: 'srv-id' });
    expect(matchesDomain(names({ srvIds: ['*.example.org'] }), 'chat.example.org')).toEqual({ ok: true, via: 'srv-id' });
    expect(matchesDomain(names({ srvIds: ['*.example.org'] }), 'example.org').ok).toBe(false);
    // An _xmpp-client SRV-ID never authenticates a server (RFC 6120 13.7.1.2.1).
    const client = certificateNames(certFor({ domain: 'example.org', dnsNames: [], srvNames: ['_xmpp-client.example.org'], commonName: 'x' }));
    expect(matchesDomain(client, 'example.org').ok).toBe(false);
  });

  it('matches XmppAddr exactly, never as a wildcard, never a user or resource JID', () => {
    expect(matchesDomain(names({ xmppAddrs: ['example.org'] }), 'example.org')).toEqual({ ok: true, via: 'xmpp-addr' });
    expect(matchesDomain(names({ xmppAddrs: ['*.example.org'] }), 'a.example.org').ok).toBe(false);
    const users = certificateNames(certFor({ domain: 'example.org', dnsNames: [], xmppAddrs: ['admin@example.org', 'example.org/x'], commonName: 'x' }));
    expect(matchesDomain(users, 'example.org').ok).toBe(false);
  });

  it('reports the first identifier type that matches, in RFC 6125 order', () => {
    const all = names({ dnsIds: ['example.org'], srvIds: ['example.org'], xmppAddrs: ['example.org'], commonNames: ['example.org'] });
    expect(matchesDomain(all, 'example.org')).toEqual({ ok: true, via: 'dns-id' });
    expect(matchesDomain(names({ srvIds: ['example.org'], xmppAddrs: ['example.org'] }), 'example.org')).toEqual({ ok: true, via: 'srv-id' });
  });

  it('uses the CN only when allowed and the certificate has no SAN identifier (RFC 6125 6.4.4)', () => {
    const cnOnly = names({ commonNames: ['example.org'] });
    expect(matchesDomain(cnOnly, 'example.org').ok).toBe(false);
    expect(matchesDomain(cnOnly, 'example.org', { allowCommonName: true })).toEqual({ ok: true, via: 'cn' });
    expect(matchesDomain(cnOnly, 'other.org', { allowCommonName: true }).ok).toBe(false);
    for (const san of [
      { dnsIds: ['other.org'] }, { srvIds: ['other.org'] }, { xmppAddrs: ['other.org'] }, { otherIds: ['URI:xmpp:other.org'] },
    ]) {
      expect(matchesDomain(names({ ...san, commonNames: ['example.org'] }), 'example.org', { allowCommonName: true }).ok).toBe(false);
    }
    // No wildcard in the legacy CN fallback.
    expect(matchesDomain(names({ commonNames: ['*.example.org'] }), 'a.example.org', { allowCommonName: true }).ok).toBe(false);
  });

  it('never matches through names that are not DNS names', () => {
    expect(matchesDomain(names({ dnsIds: ['ex%61mple.org'] }), 'example.org').ok).toBe(false);
    expect(matchesDomain(names({ dnsIds: ['x,y.example'] }), 'x,y.example').ok).toBe(false);
    expect(matchesDomain(names({ dnsIds: ['example.org'] }), '').ok).toBe(false);
    expect(matchesDomain(names({ dnsIds: ['*.example.org'] }), '*.example.org').ok).toBe(false);
    expect(matchesDomain(names({}), 'example.org').ok).toBe(false);
  });
});
