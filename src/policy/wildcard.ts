/**
 * PowerShell `-like` wildcards, as System.Management.Automation.WildcardPattern reads them:
 * `*` matches any run of characters (including none), `?` exactly one character, `[abc]` one of
 * a set, `[a-z]` one of a range, and a backtick makes the next character literal (`` `* ``).
 * A match covers the whole text and ignores case unless asked otherwise.
 *
 * PowerShell details kept: no negation inside brackets (`[!a]` means '!' or 'a'), a `]` right
 * after `[` is a member, a range written backwards (`[z-a]`) or a `[` without its `]` is an
 * invalid pattern (UsageError), and a lone trailing backtick is a literal backtick.
 */
import { UsageError } from '../errors.js';

export interface WildcardOptions {
  /** `-clike` semantics; the default (`-like`, `-ilike`) ignores case. */
  caseSensitive?: boolean;
}

/** Translate a wildcard pattern into an anchored RegExp. Throws UsageError if it is invalid. */
export function wildcardToRegExp(pattern: string, options: WildcardOptions = {}): RegExp {
  let source = '';
  let i = 0;
  while (i < pattern.length) {
    const c = pattern.charAt(i);
    if (c === '`') {
      if (i + 1 < pattern.length) source += escapeLiteral(pattern.charAt(i + 1));
      else if (pattern !== '`') source += escapeLiteral('`'); // PowerShell: "`" alone means ""
      i += 2;
    } else if (c === '*') {
      source += '.*';
      i += 1;
    } else if (c === '?') {
      source += '.';
      i += 1;
    } else if (c === '[') {
      const bracket = readBracket(pattern, i);
      source += bracket.source;
      i = bracket.next;
    } else {
      source += escapeLiteral(c);
      i += 1;
    }
  }
  // 's' so that '*' and '?' also match line breaks, as .NET's Singleline option does.
  return new RegExp(`^${source}$`, options.caseSensitive ? 's' : 'is');
}

/** PowerShell's `text -like pattern`. Throws UsageError if the pattern is invalid. */
export function matchesWildcard(pattern: string, text: string, options: WildcardOptions = {}): boolean {
  return wildcardToRegExp(pattern, options).test(text);
}

interface BracketMember {
  ch: string;
  escaped: boolean;
}

/** Read `[...]` starting at `open`; returns the regex character class and where to go on. */
function readBracket(pattern: string, open: number): { source: string; next: number } {
  const members: BracketMember[] = [];
  let i = open + 1;
  while (i < pattern.length) {
    const c = pattern.charAt(i);
    if (c === ']' && i !== open + 1) return { source: characterClass(members, pattern), next: i + 1 };
    if (c === '`') {
      if (i + 1 < pattern.length) members.push({ ch: pattern.charAt(i + 1), escaped: true });
      i += 2;
      continue;
    }
    members.push({ ch: c, escaped: false });
    i += 1;
  }
  throw new UsageError(`invalid wildcard pattern '${pattern}': the '[' at position ${open + 1} has no closing ']'`);
}

/** Members of a bracket expression: `x-y` (unescaped dash between two members) is a range. */
function characterClass(members: BracketMember[], pattern: string): string {
  let body = '';
  let k = 0;
  while (k < members.length) {
    const low = members[k] as BracketMember;
    const dash = members[k + 1];
    const high = members[k + 2];
    if (dash !== undefined && high !== undefined && dash.ch === '-' && !dash.escaped) {
      if (low.ch > high.ch) {
        throw new UsageError(`invalid wildcard pattern '${pattern}': range '${low.ch}-${high.ch}' is out of order`);
      }
      body += `${unicodeEscape(low.ch)}-${unicodeEscape(high.ch)}`;
      k += 3;
    } else {
      body += unicodeEscape(low.ch);
      k += 1;
    }
  }
  return `[${body}]`;
}

function escapeLiteral(c: string): string {
  return c.replace(/[\\^$.*+?()[\]{}|/]/g, '\\$&');
}

/** `\uXXXX` for one UTF-16 unit: never special inside a character class. */
function unicodeEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}
