/**
 * stanzaHead (src/routing/stanza-errors.ts): the router bounces a relayed stanza it kept only as
 * text, so the error reply must come out exactly as from the parsed Element.
 */
import { describe, expect, it } from 'vitest';
import { errorReply, mayBounce, stanzaHead } from '../../src/routing/stanza-errors.js';
import { Element } from '../../src/xml/ltx.js';

describe('stanzaHead', () => {
  it('reads name and attributes, quotes of both kinds, entities, and > inside a value', () => {
    const head = stanzaHead(`<message from='a@x.test/r' to="b@y.test" type='chat' id='q&apos;1&gt;&amp;' data='a>b'><body>hi</body></message>`);
    expect(head.name).toBe('message');
    expect(head.attrs).toEqual({ from: 'a@x.test/r', to: 'b@y.test', type: 'chat', id: "q'1>&", data: 'a>b' });
    expect(head.children).toEqual([]);
  });

  it('handles self-closing tags, whitespace around = and prefixed attributes', () => {
    const head = stanzaHead(`<iq\ttype = 'result' xml:lang='en'\nid='r1'/>`);
    expect(head.name).toBe('iq');
    expect(head.attrs).toEqual({ type: 'result', 'xml:lang': 'en', id: 'r1' });
    expect(mayBounce(head)).toBe(false);
  });

  it('gives the same error reply as the Element it was serialised from', () => {
    const el = new Element('presence', { from: 'a@x.test/r', to: 'b@y.test', type: 'subscribe', id: 'p<1' }).c('status').t('x').up();
    const fromText = errorReply(stanzaHead(el.toString()), 'remote-server-timeout', 'gone').toString();
    expect(fromText).toBe(errorReply(el, 'remote-server-timeout', 'gone').toString());
  });
});
