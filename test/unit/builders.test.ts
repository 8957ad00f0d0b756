import { describe, expect, it } from 'vitest';
import type { StreamError } from '../../src/errors.js';
import {
  dialbackFeature,
  sanitize,
  saslMechanismsFeature,
  starttlsFeature,
  STREAM_CLOSE,
  streamError,
  streamFeatures,
  streamHeader,
} from '../../src/xml/builders.js';
import type { Element } from '../../src/xml/ltx.js';
import {
  NS_DIALBACK,
  NS_DIALBACK_FEATURE,
  NS_SASL,
  NS_SERVER,
  NS_STREAM_ERRORS,
  NS_STREAMS,
  NS_TLS,
  NS_XMPP_ERRORS,
} from '../../src/xml/namespaces.js';
import { isElement, nsOf, StreamParser } from '../../src/xml/stream-parser.js';

/** Parse what we would send with our own (strict) parser. */
function roundTrip(xml: string): { attrs: Record<string, string>[]; elements: Element[]; ended: boolean; errors: StreamError[] } {
  const out = { attrs: [] as Record<string, string>[], elements: [] as Element[], ended: false, errors: [] as StreamError[] };
  const p = new StreamParser({ maxStanzaBytes: 65536 });
  p.handler = {
    streamStart: (a) => out.attrs.push({ ...a }),
    element: (el) => out.elements.push(el),
    streamEnd: () => (out.ended = true),
    whitespace: () => {},
    error: (e) => out.errors.push(e),
  };
  p.write(Buffer.from(xml));
  return out;
}

describe('streamHeader', () => {
  it('builds the full header in a fixed order', () => {
    expect(streamHeader({ from: 'gw.example', to: 'partner.example', id: 'abc', version: '1.0', lang: 'en', dialback: true })).toBe(
      "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' " +
        "xmlns:db='jabber:server:dialback' from='gw.example' to='partner.example' id='abc' version='1.0' xml:lang='en'>",
    );
  });

  it('omits xmlns:db without dialback and empty or undefined attributes', () => {
    const h = streamHeader({ from: 'gw.example', to: '', id: undefined, version: '1.0', dialback: false });
    expect(h).toBe(
      "<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='gw.example' version='1.0'>",
    );
    expect(h).not.toContain('xmlns:db');
    expect(h).not.toContain('to=');
    expect(h).not.toContain('id=');
    expect(h.endsWith('/>')).toBe(false);
  });

  it('escapes attribute values and replaces characters XML cannot carry', () => {
    const h = streamHeader({ from: `a'b"c<d>&e`, to: 'x\u0000y\uFFFEz\uD800', dialback: false });
    expect(h).toContain("from='a&apos;b&quot;c&lt;d&gt;&amp;e'");
    expect(h).toContain("to='x\uFFFDy\uFFFDz\uFFFD'");
    const r = roundTrip(h);
    expect(r.errors).toEqual([]);
    expect(r.attrs[0]!['from']).toBe(`a'b"c<d>&e`);
  });

  it('parses back with our parser (dialback prefix usable), and closes with STREAM_CLOSE', () => {
    const h = streamHeader({ from: 'a.test', to: 'b.test', id: 'i1', version: '1.0', lang: 'en', dialback: true });
    const r = roundTrip(`${h}<db:result from='a.test' to='b.test'>k</db:result>${STREAM_CLOSE}`);
    expect(r.errors).toEqual([]);
    expect(r.attrs[0]).toMatchObject({ xmlns: NS_SERVER, 'xmlns:stream': NS_STREAMS, 'xmlns:db': NS_DIALBACK, id: 'i1' });
    expect(isElement(r.elements[0]!, 'result', NS_DIALBACK)).toBe(true);
    expect(r.ended).toBe(true);
    expect(STREAM_CLOSE).toBe('</stream:stream>');
  });
});

describe('streamError', () => {
  it('builds condition and English text in the streams error namespace', () => {
    expect(streamError('policy-violation', 'TLS required')).toBe(
      "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" +
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>TLS required</text></stream:error>",
    );
  });

  it('omits empty text and adds an application condition', () => {
    expect(streamError('host-unknown')).toBe("<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>");
    expect(streamError('host-unknown', '')).not.toContain('<text');
    expect(streamError('policy-violation', 'too big', { name: 'stanza-too-big', ns: NS_XMPP_ERRORS })).toContain(
      "<stanza-too-big xmlns='urn:xmpp:errors'/></stream:error>",
    );
  });

  it('escapes text and never produces unparsable XML', () => {
    const text = "bad <host> & 'x'\u0001";
    const xml = streamError('improper-addressing', text);
    const r = roundTrip(`${streamHeader({ dialback: false })}${xml}`);
    expect(r.errors).toEqual([]);
    const err = r.elements[0]!;
    expect(isElement(err, 'error', NS_STREAMS)).toBe(true);
    const cond = err.getChild('improper-addressing', NS_STREAM_ERRORS);
    expect(cond).toBeDefined();
    expect(err.getChildText('text', NS_STREAM_ERRORS)).toBe("bad <host> & 'x'\uFFFD");
    expect(err.getChild('text')!.attrs['xml:lang']).toBe('en');
  });
});

describe('features', () => {
  it('builds empty and populated <stream:features>', () => {
    expect(streamFeatures([])).toBe('<stream:features/>');
    const xml = streamFeatures([starttlsFeature(true), saslMechanismsFeature(['EXTERNAL']), dialbackFeature(true)]);
    const r = roundTrip(`${streamHeader({ dialback: true })}${xml}`);
    expect(r.errors).toEqual([]);
    const f = r.elements[0]!;
    expect(isElement(f, 'features', NS_STREAMS)).toBe(true);
    const tls = f.getChild('starttls', NS_TLS)!;
    expect(tls.getChild('required')).toBeDefined();
    expect(nsOf(tls.getChild('required')!)).toBe(NS_TLS);
    expect(f.getChild('mechanisms', NS_SASL)!.getChildText('mechanism')).toBe('EXTERNAL');
    expect(f.getChild('dialback', NS_DIALBACK_FEATURE)!.getChild('errors')).toBeDefined();
  });

  it('omits <required/> and <errors/> when not asked, accepts raw strings', () => {
    expect(starttlsFeature(false).toString()).toBe(`<starttls xmlns="${NS_TLS}"/>`);
    expect(dialbackFeature(false).toString()).toBe(`<dialback xmlns="${NS_DIALBACK_FEATURE}"/>`);
    expect(streamFeatures(["<bidi xmlns='urn:xmpp:features:bidi'/>"])).toBe(
      "<stream:features><bidi xmlns='urn:xmpp:features:bidi'/></stream:features>",
    );
  });
});

describe('sanitize', () => {
  it('keeps legal text unchanged and replaces illegal characters', () => {
    expect(sanitize('plain é € 😀 \t\n\r')).toBe('plain é € 😀 \t\n\r');
    expect(sanitize('a\u0000b\u001fc\uffffd\udc00')).toBe('a\uFFFDb\uFFFDc\uFFFDd\uFFFD');
    expect(sanitize('\u0000')).toBe('\uFFFD'); // the global regex's lastIndex is reset between calls
  });
});
