import { describe, it, expect } from 'vitest';
import { matchesWildcard, wildcardToRegExp } from '../../src/policy/wildcard.js';
import { UsageError } from '../../src/errors.js';

describe('matchesWildcard: PowerShell -like', () => {
  it('* matches any run of characters, including none', () => {
    expect(matchesWildcard('*.org', 'xmpp.contoso.org')).toBe(true);
    expect(matchesWildcard('*.org', '.org')).toBe(true);
    expect(matchesWildcard('*.org', 'xmpp.org.com')).toBe(false);
    expect(matchesWildcard('xmpp.*.com', 'xmpp.contoso.com')).toBe(true);
    expect(matchesWildcard('*', '')).toBe(true);
  });

  it('is anchored at both ends', () => {
    expect(matchesWildcard('contoso', 'contoso')).toBe(true);
    expect(matchesWildcard('contoso', 'xcontoso')).toBe(false);
    expect(matchesWildcard('contoso', 'contosox')).toBe(false);
  });

  it('? matches exactly one character', () => {
    expect(matchesWildcard('a?c', 'abc')).toBe(true);
    expect(matchesWildcard('a?c', 'ac')).toBe(false);
    expect(matchesWildcard('a?c', 'abbc')).toBe(false);
  });

  it('[abc] matches one of a set and [a-z] one of a range', () => {
    expect(matchesWildcard('[bc]ook', 'book')).toBe(true);
    expect(matchesWildcard('[bc]ook', 'hook')).toBe(false);
    expect(matchesWildcard('[a-l]ook', 'look')).toBe(true);
    expect(matchesWildcard('[a-l]ook', 'took')).toBe(false);
    expect(matchesWildcard('node[0-9].example', 'node7.example')).toBe(true);
    expect(matchesWildcard('node[0-9].example', 'nodex.example')).toBe(false);
  });

  it('ignores case by default, including in sets and ranges', () => {
    expect(matchesWildcard('*.ORG', 'xmpp.contoso.org')).toBe(true);
    expect(matchesWildcard('[A-C]at', 'bat')).toBe(true);
    expect(matchesWildcard('[x]', 'X')).toBe(true);
  });

  it('can match case-sensitively (-clike)', () => {
    expect(matchesWildcard('*.ORG', 'xmpp.contoso.org', { caseSensitive: true })).toBe(false);
    expect(matchesWildcard('*.org', 'xmpp.contoso.org', { caseSensitive: true })).toBe(true);
    expect(matchesWildcard('[A-C]at', 'bat', { caseSensitive: true })).toBe(false);
  });

  it('backtick escapes the next character', () => {
    expect(matchesWildcard('a`*b', 'a*b')).toBe(true);
    expect(matchesWildcard('a`*b', 'axb')).toBe(false);
    expect(matchesWildcard('a`?', 'a?')).toBe(true);
    expect(matchesWildcard('a`?', 'ab')).toBe(false);
    expect(matchesWildcard('`[a`]', '[a]')).toBe(true);
    expect(matchesWildcard('`[a`]', 'a')).toBe(false);
    expect(matchesWildcard('a``b', 'a`b')).toBe(true);
  });

  it('a lone trailing backtick is literal, and "`" alone is the empty pattern', () => {
    expect(matchesWildcard('a`', 'a`')).toBe(true);
    expect(matchesWildcard('a`', 'a')).toBe(false);
    expect(matchesWildcard('`', '')).toBe(true);
    expect(matchesWildcard('`', '`')).toBe(false);
  });

  it('has no bracket negation; ] first in a set and escaped or trailing dashes are members', () => {
    expect(matchesWildcard('[!a]', '!')).toBe(true);
    expect(matchesWildcard('[!a]', 'b')).toBe(false);
    expect(matchesWildcard('[^a]', '^')).toBe(true);
    expect(matchesWildcard('[]a]', ']')).toBe(true);
    expect(matchesWildcard('[]a]', 'a')).toBe(true);
    expect(matchesWildcard('[a`-c]', '-')).toBe(true);
    expect(matchesWildcard('[a`-c]', 'b')).toBe(false);
    expect(matchesWildcard('[a-]', '-')).toBe(true);
    expect(matchesWildcard('[a-]', 'b')).toBe(false);
    expect(matchesWildcard('[`]]', ']')).toBe(true);
  });

  it('treats regular-expression characters literally', () => {
    expect(matchesWildcard('a.b', 'axb')).toBe(false);
    expect(matchesWildcard('a.b', 'a.b')).toBe(true);
    expect(matchesWildcard('(x)+|y', '(x)+|y')).toBe(true);
    expect(matchesWildcard('(x)+|y', 'xx')).toBe(false);
    expect(matchesWildcard('^a$\\', '^a$\\')).toBe(true);
    expect(matchesWildcard('{1}', '{1}')).toBe(true);
    expect(matchesWildcard('[.]', 'x')).toBe(false);
    expect(matchesWildcard('[\\]', '\\')).toBe(true);
  });

  it('lets * and ? match line breaks', () => {
    expect(matchesWildcard('a*b', 'a\nb')).toBe(true);
    expect(matchesWildcard('a?b', 'a\nb')).toBe(true);
  });

  it('the empty pattern matches only the empty text', () => {
    expect(matchesWildcard('', '')).toBe(true);
    expect(matchesWildcard('', 'a')).toBe(false);
  });
});

describe('wildcardToRegExp', () => {
  it('returns a case-insensitive RegExp unless asked otherwise', () => {
    const re = wildcardToRegExp('xmpp.*');
    expect(re).toBeInstanceOf(RegExp);
    expect(re.flags).toContain('i');
    expect(re.test('XMPP.contoso.com')).toBe(true);
    expect(wildcardToRegExp('xmpp.*', { caseSensitive: true }).flags).not.toContain('i');
  });

  it('refuses a [ without its ]', () => {
    expect(() => wildcardToRegExp('[abc')).toThrow(UsageError);
    expect(() => wildcardToRegExp('[abc')).toThrow(/invalid wildcard pattern '\[abc'.*no closing '\]'/);
    expect(() => wildcardToRegExp('[]')).toThrow(UsageError);
    expect(() => wildcardToRegExp('a[b`]')).toThrow(UsageError);
  });

  it('refuses a range written backwards', () => {
    expect(() => wildcardToRegExp('[z-a]')).toThrow(UsageError);
    expect(() => wildcardToRegExp('[z-a]')).toThrow(/range 'z-a' is out of order/);
    expect(() => wildcardToRegExp('[a-a]')).not.toThrow();
  });
});
