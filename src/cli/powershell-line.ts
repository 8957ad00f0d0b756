/**
 * Parser for one PowerShell command line, the way admins type the Get-/New-/Set-/Remove-
 * CsXmppAllowedPartner cmdlets (docs/design.md section 7), plus an evaluator for Where-Object filters.
 *
 * A tokenizer turns the text into words, -Parameters, strings, $variables and punctuation; a
 * recursive-descent parser turns those into statements (pipelines and assignments) whose
 * values are typed (strings, numbers, $True/$False/$Null, lists, @(...), @{...}, variables,
 * script blocks). Only the part of the language the cmdlet examples need is accepted; anything
 * else is a UsageError naming the problem and its column. Nothing is executed or resolved here:
 * parameter names, variables and command names are kept as written for the executor.
 */
import { UsageError } from '../errors.js';
import { matchesWildcard, wildcardToRegExp } from '../policy/wildcard.js';

// ---------------------------------------------------------------------------------------------
// AST

export interface StringValue { kind: 'string'; value: string }
export interface NumberValue { kind: 'number'; value: number }
export interface BooleanValue { kind: 'boolean'; value: boolean }
export interface NullValue { kind: 'null' }
/** `"a","b"`, `@("a","b")` or `("a","b")`. Items may themselves be arrays (`@(1,2),3`). */
export interface ArrayValue { kind: 'array'; items: Value[] }
/** `@{Add="x"; Remove="y","z"}`: entries in written order, keys as spelled (unique ignoring case). */
export interface HashtableValue { kind: 'hashtable'; entries: HashtableEntry[] }
export interface HashtableEntry { key: string; value: Value }
/** `$p` (path []) or `$p.Description` (path ['Description']); name without the `$`. */
export interface VariableValue { kind: 'variable'; name: string; path: string[] }
/** `{ $_.Prop -eq "x" }`: the text between the braces and the parsed filter. */
export interface ScriptBlockValue { kind: 'scriptblock'; text: string; expr: FilterExpr }

export type Value =
  | StringValue | NumberValue | BooleanValue | NullValue | ArrayValue | HashtableValue
  | VariableValue | ScriptBlockValue;

/**
 * `-Name value`, `-Name:value`, or a switch `-Name` (value null). `colon` tells `-Confirm:$false`
 * from `-Confirm $false`: without a colon a switch parameter that got a value really got a
 * positional argument (`-WhatIf contoso.com`), which only the executor can know.
 */
export interface Parameter { name: string; value: Value | null; colon: boolean; column: number }
export interface Argument { value: Value; column: number }

export interface Command {
  /** As written: `Get-CsXmppAllowedPartner`, `where`, `?`; compare ignoring case. */
  name: string;
  column: number;
  parameters: Parameter[];
  /** Positional arguments in order. */
  arguments: Argument[];
  /** Only on Where-Object (`Where-Object`, `where`, `?`): the filter, from whichever syntax. */
  filter?: FilterExpr;
}

/** `cmd | cmd | ...`; `input` is a leading expression (`$p | Set-...`, or just `$p`). */
export interface Pipeline { kind: 'pipeline'; column: number; input: Value | null; commands: Command[] }

/** `$p = <pipeline>` or `$p.Description = <value>`; a plain expression on the right is a Value. */
export interface Assignment {
  kind: 'assignment';
  column: number;
  variable: string;
  path: string[];
  value: Value | Pipeline;
}

export type Statement = Pipeline | Assignment;

export type CompareOp =
  | 'eq' | 'ne' | 'gt' | 'ge' | 'lt' | 'le' | 'like' | 'notlike' | 'match' | 'notmatch'
  | 'contains' | 'notcontains' | 'in' | 'notin';

export type FilterLiteral = string | number | boolean | null;

/** Expression inside a Where-Object script block; `property` is `$_.A.B` (path [] is `$_`). */
export type FilterExpr =
  | { kind: 'property'; path: string[] }
  | { kind: 'literal'; value: FilterLiteral }
  | { kind: 'list'; items: FilterExpr[] }
  | { kind: 'compare'; op: CompareOp; caseSensitive: boolean; left: FilterExpr; right: FilterExpr }
  | { kind: 'logical'; op: 'and' | 'or' | 'xor'; left: FilterExpr; right: FilterExpr }
  | { kind: 'not'; operand: FilterExpr };

/** Parse one command line (statements separated by `;` or line breaks). Throws UsageError. */
export function parsePowerShellLine(line: string): Statement[] {
  const tokens = new Tokenizer(line).run();
  return new Parser(line, tokens).parseProgram();
}

// ---------------------------------------------------------------------------------------------
// Tokenizer

type Punct = '|' | ';' | ',' | '=' | '(' | ')' | '{' | '}' | '@(' | '@{' | '!';

type TokenKind =
  | { type: 'word'; text: string }
  | { type: 'param'; name: string; colon: boolean }
  | { type: 'dash' }
  | { type: 'string'; value: string }
  | { type: 'variable'; name: string; path: string[] }
  | { type: 'punct'; text: Punct }
  | { type: 'newline' }
  | { type: 'eof' };

/** `spaceBefore`: blanks, a comment or a line continuation separate it from the previous token. */
type Token = TokenKind & { start: number; end: number; spaceBefore: boolean };

// PowerShell also accepts typographic dashes and quotes (text pasted from documents).
const DASHES = '-\u2013\u2014\u2015';
const DOUBLE_QUOTES = '"\u201c\u201d\u201e';
const SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b";
const PUNCTUATION = '|;,(){}=';
const UNSUPPORTED = '&<>';
const ESCAPES: Record<string, string> = {
  '0': '\0', a: '\x07', b: '\b', e: '\x1b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v',
};

function oneOf(chars: string, c: string | undefined): boolean {
  return c !== undefined && c.length === 1 && chars.includes(c);
}

function isBlank(c: string | undefined): boolean {
  return c !== undefined && c !== '\n' && /\s/.test(c);
}

/** Characters that may continue a bare word (a backtick is handled separately, as an escape). */
function isWordChar(c: string | undefined): boolean {
  return c !== undefined && c !== '\n' && c !== '`' && !isBlank(c) && !oneOf(PUNCTUATION, c)
    && !oneOf(DOUBLE_QUOTES, c) && !oneOf(SINGLE_QUOTES, c) && !oneOf(UNSUPPORTED, c);
}

/** 1-based column of `offset` within its line. */
function columnOf(src: string, offset: number): number {
  const lineStart = offset > 0 ? src.lastIndexOf('\n', offset - 1) + 1 : 0;
  return offset - lineStart + 1;
}

/** "column 12", or "line 2, column 5" when the input spans several lines. */
function location(src: string, offset: number): string {
  const column = columnOf(src, offset);
  if (!src.trimEnd().includes('\n')) return `column ${column}`;
  return `line ${src.slice(0, offset).split('\n').length}, column ${column}`;
}

class Tokenizer {
  private i = 0;
  private readonly tokens: Token[] = [];

  constructor(private readonly src: string) {}

  run(): Token[] {
    for (;;) {
      const spaced = this.skipBlanks() || this.tokens.length === 0 || this.tokens.at(-1)?.type === 'newline';
      const start = this.i;
      const c = this.src[start];
      const kind: TokenKind = c === undefined ? { type: 'eof' } : this.read(c);
      this.tokens.push({ ...kind, start, end: this.i, spaceBefore: spaced });
      if (kind.type === 'eof') return this.tokens;
    }
  }

  private fail(message: string): never {
    throw new UsageError(message);
  }

  private at(offset: number): string {
    return location(this.src, offset);
  }

  private read(c: string): TokenKind {
    const start = this.i;
    if (c === '\n') {
      this.i += 1;
      return { type: 'newline' };
    }
    if (oneOf(DOUBLE_QUOTES, c)) return this.readQuoted(DOUBLE_QUOTES, true);
    if (oneOf(SINGLE_QUOTES, c)) return this.readQuoted(SINGLE_QUOTES, false);
    if (c === '$') return this.readVariable();
    if (c === '@') return this.readAt();
    if (oneOf(PUNCTUATION, c)) {
      this.i += 1;
      return { type: 'punct', text: c as Punct };
    }
    const next = this.src[start + 1];
    if (c === '!' && (next === '$' || next === '(' || next === '!' || isBlank(next))) {
      this.i += 1;
      return { type: 'punct', text: '!' };
    }
    if (oneOf(UNSUPPORTED, c)) this.fail(`unsupported '${c}' at ${this.at(start)}`);
    if (oneOf(DASHES, c)) return this.readDash();
    return this.readWord();
  }

  /** Blanks, `# comments`, `<# block comments #>` and backtick line continuations. */
  private skipBlanks(): boolean {
    let skipped = false;
    for (;;) {
      const c = this.src[this.i];
      if (isBlank(c)) {
        this.i += 1;
      } else if (c === '`' && this.lineBreakAt(this.i + 1)) {
        this.i += this.src[this.i + 1] === '\r' ? 3 : 2;
      } else if (c === '#') {
        const end = this.src.indexOf('\n', this.i);
        this.i = end < 0 ? this.src.length : end;
      } else if (c === '<' && this.src[this.i + 1] === '#') {
        const end = this.src.indexOf('#>', this.i + 2);
        if (end < 0) this.fail(`unterminated comment starting at ${this.at(this.i)}`);
        this.i = end + 2;
      } else {
        return skipped;
      }
      skipped = true;
    }
  }

  private lineBreakAt(i: number): boolean {
    return this.src[i] === '\n' || (this.src[i] === '\r' && this.src[i + 1] === '\n');
  }

  /** Backtick escape at `i` (in double-quoted strings and bare words): `n, `t, `u{263A}, `x -> x. */
  private readEscape(i: number): { text: string; next: number } {
    const c = this.src.charAt(i + 1);
    if (c === 'u' && this.src[i + 2] === '{') {
      const m = /^\{([0-9a-fA-F]{1,6})\}/.exec(this.src.slice(i + 2));
      const code = m?.[1] === undefined ? NaN : parseInt(m[1], 16);
      if (!m || !(code <= 0x10ffff)) this.fail(`invalid Unicode escape at ${this.at(i)}`);
      return { text: String.fromCodePoint(code), next: i + 2 + m[0].length };
    }
    return { text: ESCAPES[c] ?? c, next: i + 2 };
  }

  /**
   * "..." (backtick escapes, "" is a quote; `$var` is kept literally, never expanded) or
   * '...' ('' is a quote, nothing else is special).
   */
  private readQuoted(quotes: string, expandable: boolean): TokenKind {
    const start = this.i;
    let value = '';
    let i = start + 1;
    while (i < this.src.length) {
      const c = this.src.charAt(i);
      if (expandable && c === '`' && i + 1 < this.src.length) {
        const escape = this.readEscape(i);
        value += escape.text;
        i = escape.next;
      } else if (oneOf(quotes, c) && oneOf(quotes, this.src[i + 1])) {
        value += this.src.charAt(i + 1); // two quotes in a row: the second one, as PowerShell does
        i += 2;
      } else if (oneOf(quotes, c)) {
        this.i = i + 1;
        return { type: 'string', value };
      } else {
        value += c;
        i += 1;
      }
    }
    return this.fail(`unterminated string starting at ${this.at(start)}`);
  }

  /** `$name` with any `.Member.Member` directly after it. */
  private readVariable(): TokenKind {
    const start = this.i;
    const name = /[A-Za-z0-9_]+/y;
    name.lastIndex = start + 1;
    const found = name.exec(this.src)?.[0];
    if (found === undefined) return this.fail(`missing variable name after '$' at ${this.at(start)}`);
    let i = start + 1 + found.length;
    if (this.src[i] === ':' && /[A-Za-z_]/.test(this.src.charAt(i + 1))) {
      this.fail(`scoped variables like '$${found}:...' are not supported (at ${this.at(start)})`);
    }
    const path: string[] = [];
    const member = /\.([A-Za-z_][A-Za-z0-9_]*)/y;
    for (;;) {
      member.lastIndex = i;
      const m = member.exec(this.src);
      if (!m?.[1]) break;
      path.push(m[1]);
      i += m[0].length;
    }
    this.i = i;
    return { type: 'variable', name: found, path };
  }

  private readAt(): TokenKind {
    const next = this.src[this.i + 1];
    if (next === '(' || next === '{') {
      this.i += 2;
      return { type: 'punct', text: next === '(' ? '@(' : '@{' };
    }
    return this.fail(`unexpected '@' at ${this.at(this.i)} (only @(...) and @{...} are supported)`);
  }

  /** `-Name`, `-Name:`, a lone `-` (followed by a blank), or a word such as `-5` or `-a.b`. */
  private readDash(): TokenKind {
    const start = this.i;
    const next = this.src[start + 1];
    if (!isWordChar(next) && next !== '`') {
      this.i += 1;
      return { type: 'dash' };
    }
    if (/[A-Za-z_]/.test(next ?? '')) {
      let j = start + 1;
      while (/\w/.test(this.src.charAt(j))) j += 1;
      const name = this.src.slice(start + 1, j);
      const after = this.src[j];
      if (after === ':') {
        this.i = j + 1;
        return { type: 'param', name, colon: true };
      }
      if (!isWordChar(after) && after !== '`') {
        this.i = j;
        return { type: 'param', name, colon: false };
      }
    }
    return this.readWord();
  }

  private readWord(): TokenKind {
    let text = '';
    let i = this.i;
    while (i < this.src.length) {
      const c = this.src.charAt(i);
      if (c === '`') {
        if (i + 1 >= this.src.length) this.fail(`nothing follows the escape character '\`' at ${this.at(i)}`);
        if (this.lineBreakAt(i + 1)) break;
        const escape = this.readEscape(i);
        text += escape.text;
        i = escape.next;
      } else if (isWordChar(c)) {
        text += c;
        i += 1;
      } else {
        break;
      }
    }
    this.i = i;
    return { type: 'word', text };
  }
}

// ---------------------------------------------------------------------------------------------
// Parser

const WHERE_OBJECT_NAMES = new Set(['where-object', 'where', '?']);
const COMPARE_OPS: readonly CompareOp[] = [
  'eq', 'ne', 'gt', 'ge', 'lt', 'le', 'like', 'notlike', 'match', 'notmatch',
  'contains', 'notcontains', 'in', 'notin',
];

interface Operator { op: CompareOp; caseSensitive: boolean }

/** `-eq`, `-ieq` (explicitly case-insensitive) or `-ceq` (case-sensitive); any letter case. */
function compareOperator(name: string): Operator | undefined {
  const lower = name.toLowerCase();
  const whole = COMPARE_OPS.find((op) => op === lower);
  if (whole) return { op: whole, caseSensitive: false };
  const rest = COMPARE_OPS.find((op) => op === lower.slice(1));
  if (rest && (lower.startsWith('i') || lower.startsWith('c'))) return { op: rest, caseSensitive: lower.startsWith('c') };
  return undefined;
}

/** An all-digit word (optionally negative) is a number; too large for a double stays text. */
function integerValue(text: string): number | undefined {
  if (!/^-?\d+$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n + 0 : undefined; // + 0 turns -0 into 0
}

function constantValue(name: string): BooleanValue | NullValue | undefined {
  switch (name.toLowerCase()) {
    case 'true': return { kind: 'boolean', value: true };
    case 'false': return { kind: 'boolean', value: false };
    case 'null': return { kind: 'null' };
    default: return undefined;
  }
}

function isCurrentItem(name: string): boolean {
  const lower = name.toLowerCase();
  return lower === '_' || lower === 'psitem';
}

type Mode = 'command' | 'expression';

class Parser {
  private pos = 0;
  /** Innermost first: inside (...) and {...} line breaks are blanks; elsewhere they separate. */
  private readonly newlineIsBlank: boolean[] = [false];
  /** Source offsets of AST nodes, for messages about them after they are built. */
  private readonly offsets = new WeakMap<object, number>();

  constructor(private readonly src: string, private readonly tokens: Token[]) {}

  parseProgram(): Statement[] {
    const statements: Statement[] = [];
    for (;;) {
      this.skipSeparators();
      if (this.peek().type === 'eof') return statements;
      statements.push(this.parseStatement());
      const t = this.peek();
      if (!this.isStatementEnd(t)) this.unexpected(t);
    }
  }

  // --- token helpers ---------------------------------------------------------------------

  private peek(): Token {
    if (this.newlineIsBlank.at(-1)) {
      while (this.tokens[this.pos]?.type === 'newline') this.pos += 1;
    }
    return this.tokens[this.pos] ?? this.eof();
  }

  private next(): Token {
    const t = this.peek();
    if (t.type !== 'eof') this.pos += 1;
    return t;
  }

  private eof(): Token {
    return { type: 'eof', start: this.src.length, end: this.src.length, spaceBefore: true };
  }

  private skipNewlines(): void {
    while (this.peek().type === 'newline') this.pos += 1;
  }

  private skipSeparators(): void {
    for (let t = this.peek(); t.type === 'newline' || isPunct(t, ';'); t = this.peek()) this.pos += 1;
  }

  private withNewlines<T>(blank: boolean, parse: () => T): T {
    this.newlineIsBlank.push(blank);
    try {
      return parse();
    } finally {
      this.newlineIsBlank.pop();
    }
  }

  private isStatementEnd(t: Token): boolean {
    return t.type === 'eof' || t.type === 'newline' || isPunct(t, ';');
  }

  private isCommandEnd(t: Token): boolean {
    return this.isStatementEnd(t) || isPunct(t, '|') || isPunct(t, ')') || isPunct(t, '}');
  }

  private isCommandName(t: Token): t is Token & { type: 'word' } {
    return t.type === 'word' && integerValue(t.text) === undefined;
  }

  private startsValue(t: Token): boolean {
    if (t.type === 'string' || t.type === 'word' || t.type === 'variable') return true;
    return t.type === 'punct' && ['@(', '@{', '{', '('].includes(t.text);
  }

  private at(offset: number): string {
    return location(this.src, offset);
  }

  private column(offset: number): number {
    return columnOf(this.src, offset);
  }

  private fail(message: string): never {
    throw new UsageError(message);
  }

  private describe(t: Token): string {
    if (t.type === 'eof') return 'end of line';
    if (t.type === 'newline') return 'line break';
    const text = this.src.slice(t.start, t.end);
    return `'${text.length > 30 ? `${text.slice(0, 27)}...` : text}'`;
  }

  private unexpected(t: Token): never {
    return this.fail(`unexpected ${this.describe(t)} at ${this.at(t.start)}`);
  }

  private expectClose(close: ')' | '}', open: Token): Token {
    const t = this.peek();
    if (isPunct(t, close)) return this.next();
    return this.failInside(t, close, open);
  }

  private remember<T extends object>(node: T, offset: number): T {
    this.offsets.set(node, offset);
    return node;
  }

  private offsetOf(node: object): number {
    return this.offsets.get(node) ?? 0;
  }

  // --- statements ------------------------------------------------------------------------

  private parseStatement(): Statement {
    const t = this.peek();
    const following = this.tokens[this.pos + 1];
    if (t.type === 'variable' && following && isPunct(following, '=')) return this.parseAssignment(t);
    return this.parsePipeline();
  }

  private parseAssignment(target: Token & { type: 'variable' }): Assignment {
    this.next();
    if (target.path.length === 0 && constantValue(target.name)) {
      this.fail(`cannot assign to $${target.name} at ${this.at(target.start)}`);
    }
    const equals = this.next();
    this.skipNewlines();
    if (this.isCommandEnd(this.peek())) this.fail(`missing value after '=' at ${this.at(equals.start)}`);
    const rhs = this.parsePipeline();
    const value = rhs.commands.length === 0 && rhs.input ? rhs.input : rhs;
    return {
      kind: 'assignment', column: this.column(target.start), variable: target.name, path: target.path, value,
    };
  }

  private parsePipeline(): Pipeline {
    const first = this.peek();
    const pipeline: Pipeline = { kind: 'pipeline', column: this.column(first.start), input: null, commands: [] };
    if (this.isCommandName(first)) pipeline.commands.push(this.parseCommand());
    else if (this.startsValue(first)) pipeline.input = this.parseValueList('expression');
    else this.unexpected(first);
    while (isPunct(this.peek(), '|')) {
      const bar = this.next();
      this.skipNewlines();
      const t = this.peek();
      if (this.isCommandName(t)) pipeline.commands.push(this.parseCommand());
      else if (this.isCommandEnd(t)) this.fail(`missing command after '|' at ${this.at(bar.start)}`);
      else this.fail(`expected a command name after '|' but found ${this.describe(t)} at ${this.at(t.start)}`);
    }
    return pipeline;
  }

  // --- commands --------------------------------------------------------------------------

  private parseCommand(): Command {
    const nameToken = this.next() as Token & { type: 'word' };
    const command: Command = { name: nameToken.text, column: this.column(nameToken.start), parameters: [], arguments: [] };
    let previous: Token = nameToken;
    for (let t = this.peek(); !this.isCommandEnd(t); t = this.peek()) {
      this.checkSpaceBetween(previous, t);
      if (t.type === 'param') {
        this.next();
        command.parameters.push(this.parseParameter(t.name, t.colon, t.start));
      } else if (t.type === 'dash') {
        command.parameters.push(this.parseSpacedParameter(t));
      } else if (this.startsValue(t)) {
        const argument = { value: this.parseValueList('command'), column: this.column(t.start) };
        command.arguments.push(this.remember(argument, t.start));
      } else {
        this.unexpected(t);
      }
      previous = this.tokens[this.pos - 1] ?? t;
    }
    if (WHERE_OBJECT_NAMES.has(command.name.toLowerCase())) {
      command.filter = this.whereObjectFilter(command, nameToken.start);
    }
    return command;
  }

  /** `"a""b"` is one string, but `"a"'b'` or `"a"b` are two values run together: refuse. */
  private checkSpaceBetween(previous: Token, t: Token): void {
    const valueLike = (x: Token): boolean => x.type === 'string' || x.type === 'word' || x.type === 'variable';
    if (!t.spaceBefore && valueLike(previous) && (valueLike(t) || t.type === 'param' || t.type === 'dash')) {
      this.fail(`missing space before ${this.describe(t)} at ${this.at(t.start)}`);
    }
  }

  /** Value of `-Name` / `-Name:`: a switch when nothing that can be a value follows. */
  private parseParameter(name: string, colon: boolean, start: number): Parameter {
    let value: Value | null = null;
    if (colon) {
      if (!this.startsValue(this.peek())) this.fail(`missing value after '-${name}:' at ${this.at(start)}`);
      value = this.parseValueList('command');
    } else if (this.startsValue(this.peek())) {
      value = this.parseValueList('command');
    }
    return this.remember({ name, value, colon, column: this.column(start) }, start);
  }

  /**
   * The Get-CsXmppAllowedPartner page's Example 3 reads `- Filter "*.org"` (a dash, a space,
   * then the name). PowerShell itself would pass "-" and "Filter" as positional arguments; we
   * read a lone `-` followed by a blank and a bare name as the parameter `-Filter`.
   */
  private parseSpacedParameter(dash: Token): Parameter {
    this.next();
    const word = this.peek();
    if (word.type !== 'word' || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(word.text)) {
      return this.fail(`unexpected '-' at ${this.at(dash.start)} (a parameter name must follow the dash)`);
    }
    this.next();
    return this.parseParameter(word.text, false, dash.start);
  }

  // --- values ----------------------------------------------------------------------------

  /** One value, or a comma list of them (`"a","b", "c"`), which becomes an array. */
  private parseValueList(mode: Mode): Value {
    const start = this.peek().start;
    const first = this.parsePrimary(mode);
    if (!isPunct(this.peek(), ',')) return first;
    const items = [first];
    while (isPunct(this.peek(), ',')) {
      const comma = this.next();
      this.skipNewlines();
      if (!this.startsValue(this.peek())) this.fail(`missing value after ',' at ${this.at(comma.start)}`);
      items.push(this.parsePrimary(mode));
    }
    return this.remember({ kind: 'array', items }, start);
  }

  /** In command mode a bare word is a string; in expression mode (inside @(), @{}, ()) it must be quoted. */
  private parsePrimary(mode: Mode): Value {
    const t = this.next();
    return this.remember(this.primaryValue(t, mode), t.start);
  }

  private primaryValue(t: Token, mode: Mode): Value {
    switch (t.type) {
      case 'string':
        return { kind: 'string', value: t.value };
      case 'word':
        return this.wordValue(t, mode);
      case 'variable':
        return (t.path.length === 0 ? constantValue(t.name) : undefined) ?? { kind: 'variable', name: t.name, path: t.path };
      case 'punct':
        if (t.text === '@(') return this.parseArrayExpression(t);
        if (t.text === '@{') return this.parseHashtable(t);
        if (t.text === '{') return this.parseScriptBlock(t);
        if (t.text === '(') return this.parseParenthesized(t);
        return this.unexpected(t);
      default:
        return this.unexpected(t);
    }
  }

  private wordValue(t: Token & { type: 'word' }, mode: Mode): Value {
    const n = integerValue(t.text);
    if (n === undefined && mode === 'command') return { kind: 'string', value: t.text };
    return { kind: 'number', value: this.numberWord(t) };
  }

  /** Outside command arguments a bare word must be a number (PowerShell would run it as a command). */
  private numberWord(t: Token & { type: 'word' }): number {
    const n = integerValue(t.text);
    if (n !== undefined) return n;
    return this.fail(`unquoted text ${this.describe(t)} at ${this.at(t.start)} must be in quotes here`);
  }

  /** Inside (...), @(...) or @{...}: the close is missing (end of line) or `t` is out of place. */
  private failInside(t: Token, close: ')' | '}', open: Token): never {
    if (t.type === 'eof') this.fail(`missing '${close}' for the '${this.src.slice(open.start, open.end)}' at ${this.at(open.start)}`);
    return this.unexpected(t);
  }

  /** `@( a, b; c )`: items separated by commas, `;` or line breaks; nested lists are unrolled. */
  private parseArrayExpression(open: Token): ArrayValue {
    return this.withNewlines(false, () => {
      const items: Value[] = [];
      for (;;) {
        this.skipSeparators();
        const t = this.peek();
        if (isPunct(t, ')')) break;
        if (this.isCommandName(t)) this.fail(`commands inside @( ) are not supported (at ${this.at(t.start)})`);
        if (!this.startsValue(t)) this.failInside(t, ')', open);
        const value = this.parseValueList('expression');
        if (value.kind === 'array') items.push(...value.items);
        else items.push(value);
        const after = this.peek();
        if (after.type === 'eof' || (!this.isStatementEnd(after) && !isPunct(after, ')'))) this.failInside(after, ')', open);
      }
      this.next();
      return { kind: 'array', items };
    });
  }

  /** `@{ Key = value; Key2 = value }`: keys are bare words, strings or numbers, unique ignoring case. */
  private parseHashtable(open: Token): HashtableValue {
    return this.withNewlines(false, () => {
      const entries: HashtableEntry[] = [];
      const seen = new Set<string>();
      for (;;) {
        this.skipSeparators();
        const keyToken = this.next();
        if (isPunct(keyToken, '}')) break;
        if (keyToken.type === 'eof') this.failInside(keyToken, '}', open);
        const key = this.hashtableKey(keyToken);
        const equals = this.peek();
        if (!isPunct(equals, '=')) this.fail(`missing '=' after key '${key}' at ${this.at(equals.start)}`);
        this.next();
        this.skipNewlines();
        if (!this.startsValue(this.peek())) this.fail(`missing value for key '${key}' at ${this.at(equals.start)}`);
        const value = this.parseValueList('expression');
        if (seen.has(key.toLowerCase())) this.fail(`duplicate key '${key}' at ${this.at(keyToken.start)}`);
        seen.add(key.toLowerCase());
        entries.push({ key, value });
        const after = this.peek();
        if (after.type === 'eof' || (!this.isStatementEnd(after) && !isPunct(after, '}'))) this.failInside(after, '}', open);
      }
      return { kind: 'hashtable', entries };
    });
  }

  private hashtableKey(t: Token): string {
    if (t.type === 'word') return t.text;
    if (t.type === 'string') return t.value;
    return this.unexpected(t);
  }

  /** `( value )`: a value in parentheses; a command in parentheses is not supported. */
  private parseParenthesized(open: Token): Value {
    return this.withNewlines(true, () => {
      const t = this.peek();
      if (isPunct(t, ')')) this.fail(`empty parentheses at ${this.at(open.start)}`);
      if (this.isCommandName(t)) {
        this.fail(`commands in parentheses are not supported (at ${this.at(t.start)}); `
          + `assign the result to a variable first: $x = ${t.text} ...; then use $x`);
      }
      if (!this.startsValue(t)) this.failInside(t, ')', open);
      const value = this.parseValueList('expression');
      this.expectClose(')', open);
      return value;
    });
  }

  private parseScriptBlock(open: Token): ScriptBlockValue {
    return this.withNewlines(true, () => {
      if (isPunct(this.peek(), '}')) this.fail(`empty script block at ${this.at(open.start)}`);
      const expr = this.parseFilter();
      const close = this.expectClose('}', open);
      return { kind: 'scriptblock', text: this.src.slice(open.end, close.start).trim(), expr };
    });
  }

  // --- script block expressions ------------------------------------------------------------
  //
  // PowerShell precedence, tightest first: ! -not, then comparisons (left to right), then
  // -and -or -xor, which share ONE level and group left to right: `a -or b -and c` is
  // `(a -or b) -and c`. Note `-not $_.A -eq 1` is `(-not $_.A) -eq 1`, as in PowerShell.

  private parseFilter(): FilterExpr {
    let left = this.parseComparison();
    for (let t = this.peek(); t.type === 'param'; t = this.peek()) {
      const op = t.name.toLowerCase();
      if (op !== 'and' && op !== 'or' && op !== 'xor') {
        if (op === 'not') this.unexpected(t);
        this.fail(`unknown operator '-${t.name}' at ${this.at(t.start)}`);
      }
      this.next();
      left = { kind: 'logical', op, left, right: this.parseComparison(t) };
    }
    return left;
  }

  private parseComparison(after?: Token): FilterExpr {
    let left = this.parseUnary(after);
    for (let t = this.peek(); t.type === 'param'; t = this.peek()) {
      const operator = compareOperator(t.name);
      if (!operator) break;
      if (t.colon) this.unexpected(t);
      this.next();
      const rightStart = this.peek().start;
      const right = this.parseUnary(t);
      this.checkPattern(operator.op, right, rightStart);
      left = { kind: 'compare', op: operator.op, caseSensitive: operator.caseSensitive, left, right };
    }
    return left;
  }

  private parseUnary(after?: Token): FilterExpr {
    const t = this.peek();
    if (isPunct(t, '!') || (t.type === 'param' && t.name.toLowerCase() === 'not' && !t.colon)) {
      this.next();
      return { kind: 'not', operand: this.parseUnary(t) };
    }
    const first = this.parseOperand(after);
    if (!isPunct(this.peek(), ',')) return first;
    const items = [first];
    while (isPunct(this.peek(), ',')) items.push(this.parseOperand(this.next()));
    return { kind: 'list', items };
  }

  private parseOperand(after?: Token): FilterExpr {
    const t = this.peek();
    const ends = this.isCommandEnd(t) || isPunct(t, ',');
    if (ends && after) this.fail(`missing value after ${this.describe(after)} at ${this.at(after.start)}`);
    switch (t.type) {
      case 'variable':
        this.next();
        return this.variableOperand(t);
      case 'string':
        this.next();
        return { kind: 'literal', value: t.value };
      case 'word':
        this.next();
        return { kind: 'literal', value: this.numberWord(t) };
      case 'punct':
        if (t.text === '(') return this.parseGroup(this.next());
        if (t.text === '@(') return this.valueToFilter(this.parseArrayExpression(this.next()));
        return this.unexpected(t);
      default:
        return this.unexpected(t);
    }
  }

  private variableOperand(t: Token & { type: 'variable' }): FilterExpr {
    if (isCurrentItem(t.name)) return { kind: 'property', path: t.path };
    const constant = t.path.length === 0 ? constantValue(t.name) : undefined;
    if (constant) return { kind: 'literal', value: constant.kind === 'null' ? null : constant.value };
    return this.fail(`variable $${t.name} at ${this.at(t.start)} cannot be used in a script block (only $_ or $PSItem)`);
  }

  private parseGroup(open: Token): FilterExpr {
    return this.withNewlines(true, () => {
      if (isPunct(this.peek(), ')')) this.fail(`empty parentheses at ${this.at(open.start)}`);
      const expr = this.parseFilter();
      this.expectClose(')', open);
      return expr;
    });
  }

  /** Parsed values inside a filter (`@("a","b")`, Where-Object -Value) as filter expressions. */
  private valueToFilter(value: Value): FilterExpr {
    switch (value.kind) {
      case 'string':
      case 'number':
      case 'boolean':
        return { kind: 'literal', value: value.value };
      case 'null':
        return { kind: 'literal', value: null };
      case 'array':
        return { kind: 'list', items: value.items.map((item) => this.valueToFilter(item)) };
      case 'variable':
        if (isCurrentItem(value.name)) return { kind: 'property', path: value.path };
        return this.fail(`variable $${value.name} at ${this.at(this.offsetOf(value))} cannot be used in a filter`);
      default:
        return this.fail(`a ${value.kind} at ${this.at(this.offsetOf(value))} cannot be compared in a filter`);
    }
  }

  /** Refuse an invalid literal `-like` wildcard or `-match` regular expression now, with its column. */
  private checkPattern(op: CompareOp, right: FilterExpr, offset: number): void {
    if (right.kind !== 'literal' || typeof right.value !== 'string') return;
    if (op === 'like' || op === 'notlike') {
      try {
        wildcardToRegExp(right.value);
      } catch (e) {
        this.fail(`${(e as Error).message} at ${this.at(offset)}`);
      }
    } else if (op === 'match' || op === 'notmatch') {
      if (!isValidRegExp(right.value)) this.fail(`invalid regular expression '${right.value}' at ${this.at(offset)}`);
    }
  }

  // --- Where-Object ----------------------------------------------------------------------

  /**
   * The filter of a Where-Object command, from a script block (`Where-Object {...}`,
   * `-FilterScript {...}`) or the simplified syntax (`Where-Object Prop -eq Value`,
   * `Where-Object -Property Prop -EQ -Value Value`, `Where-Object Prop` for "is truthy",
   * `Where-Object -Not Prop`). The operator parameters are switches, so a value written after
   * one (`-eq "Required"`) is really the next positional argument.
   */
  private whereObjectFilter(command: Command, start: number): FilterExpr {
    const positional = command.arguments.map((a) => a.value);
    let script: FilterExpr | undefined;
    let property: Value | undefined;
    let value: Value | undefined;
    let operator: Operator | 'not' | undefined;
    let operatorName = '';
    for (const p of command.parameters) {
      const lower = p.name.toLowerCase();
      const where = this.at(this.offsetOf(p));
      if (lower === 'filterscript') {
        if (p.value?.kind !== 'scriptblock') this.fail(`-${p.name} at ${where} needs a script block {...}`);
        script = p.value.expr;
      } else if (lower === 'property' || lower === 'value') {
        if (p.value === null) this.fail(`-${p.name} at ${where} needs a value`);
        if (lower === 'property') property = p.value;
        else value = p.value;
      } else {
        const found = lower === 'not' ? 'not' : compareOperator(lower);
        if (!found) this.fail(`unknown Where-Object parameter '-${p.name}' at ${where}`);
        if (operator) this.fail(`second Where-Object operator '-${p.name}' at ${where}`);
        operator = found;
        operatorName = p.name;
        if (p.value && !p.colon) positional.push(p.value);
        else if (p.colon && !(p.value?.kind === 'boolean' && p.value.value)) this.fail(`-${p.name}: at ${where} is not supported`);
      }
    }
    positional.sort((a, b) => this.offsetOf(a) - this.offsetOf(b));

    const first = positional[0];
    if (script === undefined && first?.kind === 'scriptblock') {
      positional.shift();
      script = first.expr;
    }
    if (script !== undefined) {
      if (operator || property || value || positional.length > 0) {
        this.fail(`Where-Object at ${this.at(start)} takes a script block or 'Property -Operator Value', not both`);
      }
      return script;
    }
    property ??= positional.shift();
    value ??= positional.shift();
    const extra = positional[0];
    if (extra) this.fail(`unexpected Where-Object argument at ${this.at(this.offsetOf(extra))}`);
    if (!property) this.fail(`Where-Object at ${this.at(start)} needs a script block {...} or a property name`);
    if (property.kind !== 'string') this.fail(`Where-Object property name at ${this.at(this.offsetOf(property))} must be a name like SaslNegotiation`);
    const left: FilterExpr = { kind: 'property', path: [property.value] };
    if (operator === 'not') {
      if (value) this.fail(`Where-Object -${operatorName} at ${this.at(start)} takes no value`);
      return { kind: 'not', operand: left };
    }
    if (value === undefined) {
      if (operator) this.fail(`Where-Object -${operatorName} at ${this.at(start)} needs a value`);
      return left;
    }
    const right = this.valueToFilter(value);
    const { op, caseSensitive } = operator ?? { op: 'eq', caseSensitive: false };
    this.checkPattern(op, right, this.offsetOf(value));
    return { kind: 'compare', op, caseSensitive, left, right };
  }
}

function isPunct(t: Token, text: Punct): boolean {
  return t.type === 'punct' && t.text === text;
}

function isValidRegExp(source: string): boolean {
  try {
    new RegExp(source);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Evaluator

/**
 * Does `record` pass the filter? PowerShell semantics: string comparisons ignore case (unless
 * the operator is a `-c...` one), `-like` uses PowerShell wildcards, `-match` a regular
 * expression (case-insensitive), property names ignore case and a missing property is $null,
 * the right operand is converted to the left one's type, booleans equal "True"/"False" in any
 * case, and an array on the left passes when any element does. Throws UsageError only for an
 * invalid pattern that came from a record.
 */
export function evaluateFilter(expr: FilterExpr, record: Record<string, unknown>): boolean {
  return isTruthy(evaluate(expr, record));
}

function evaluate(expr: FilterExpr, record: Record<string, unknown>): unknown {
  switch (expr.kind) {
    case 'literal':
      return expr.value;
    case 'list':
      return expr.items.map((item) => evaluate(item, record));
    case 'property':
      return expr.path.reduce<unknown>((value, name) => member(value, name), record);
    case 'not':
      return !isTruthy(evaluate(expr.operand, record));
    case 'logical': {
      const left = isTruthy(evaluate(expr.left, record));
      if (expr.op === 'and') return left && isTruthy(evaluate(expr.right, record));
      if (expr.op === 'or') return left || isTruthy(evaluate(expr.right, record));
      return left !== isTruthy(evaluate(expr.right, record));
    }
    case 'compare':
      return compare(expr.op, evaluate(expr.left, record), evaluate(expr.right, record), expr.caseSensitive);
  }
}

/** `value.Name`, ignoring case; on an array, every element's member (PowerShell member enumeration). */
function member(value: unknown, name: string): unknown {
  if (Array.isArray(value)) {
    if (/^(count|length)$/i.test(name)) return value.length;
    return value.flatMap((item) => {
      const m = member(item, name);
      return m === undefined ? [] : [m];
    });
  }
  if (typeof value === 'string' && /^length$/i.test(name)) return value.length;
  if (value === null || typeof value !== 'object') return undefined;
  const object = value as Record<string, unknown>;
  if (Object.hasOwn(object, name)) return object[name];
  const key = Object.keys(object).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : object[key];
}

function isTruthy(value: unknown): boolean {
  if (value === null || value === undefined) return false;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'number') return value !== 0 && !Number.isNaN(value);
  if (typeof value === 'string') return value.length > 0;
  if (Array.isArray(value)) return value.length === 1 ? isTruthy(value[0]) : value.length > 0;
  return true;
}

function compare(op: CompareOp, left: unknown, right: unknown, caseSensitive: boolean): boolean {
  const asList = (v: unknown): unknown[] => (Array.isArray(v) ? v : [v ?? null]);
  switch (op) {
    case 'contains':
      return asList(left).some((item) => equals(item, right, caseSensitive));
    case 'notcontains':
      return !asList(left).some((item) => equals(item, right, caseSensitive));
    case 'in':
      return asList(right).some((item) => equals(left, item, caseSensitive));
    case 'notin':
      return !asList(right).some((item) => equals(left, item, caseSensitive));
    default:
      if (Array.isArray(left)) return left.some((item) => compareScalar(op, item, right, caseSensitive));
      return compareScalar(op, left, right, caseSensitive);
  }
}

function compareScalar(op: CompareOp, left: unknown, right: unknown, caseSensitive: boolean): boolean {
  switch (op) {
    case 'eq': return equals(left, right, caseSensitive);
    case 'ne': return !equals(left, right, caseSensitive);
    case 'like': return matchesWildcard(toText(right), toText(left), { caseSensitive });
    case 'notlike': return !matchesWildcard(toText(right), toText(left), { caseSensitive });
    case 'match': return regExp(toText(right), caseSensitive).test(toText(left));
    case 'notmatch': return !regExp(toText(right), caseSensitive).test(toText(left));
    case 'gt': return order(left, right, caseSensitive) > 0;
    case 'ge': return order(left, right, caseSensitive) >= 0;
    case 'lt': return order(left, right, caseSensitive) < 0;
    case 'le': return order(left, right, caseSensitive) <= 0;
    default: return false;
  }
}

function equals(left: unknown, right: unknown, caseSensitive: boolean): boolean {
  if (left === null || left === undefined) return right === null || right === undefined;
  if (right === null || right === undefined) return false;
  if (typeof left === 'boolean' && typeof right === 'boolean') return left === right;
  if (typeof left === 'boolean' && typeof right === 'number') return left === (right !== 0);
  if (typeof left === 'number') {
    const n = toNumber(right);
    if (n !== undefined) return left === n;
  }
  return compareText(toText(left), toText(right), caseSensitive) === 0;
}

/** Sign of left - right: numbers numerically, everything else as text; $null sorts first. */
function order(left: unknown, right: unknown, caseSensitive: boolean): number {
  const leftMissing = left === null || left === undefined;
  const rightMissing = right === null || right === undefined;
  if (leftMissing || rightMissing) return leftMissing && rightMissing ? 0 : leftMissing ? -1 : 1;
  if (typeof left === 'number' || typeof left === 'boolean') {
    const a = toNumber(left);
    const b = toNumber(right);
    if (a !== undefined && b !== undefined) return Math.sign(a - b);
  }
  return compareText(toText(left), toText(right), caseSensitive);
}

const IGNORE_CASE = new Intl.Collator('en', { sensitivity: 'accent' });
const MATCH_CASE = new Intl.Collator('en', { sensitivity: 'variant' });

function compareText(a: string, b: string, caseSensitive: boolean): number {
  if (caseSensitive && a === b) return 0;
  return Math.sign((caseSensitive ? MATCH_CASE : IGNORE_CASE).compare(a, b));
}

function toNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'string' && /^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$/.test(value)) return Number(value);
  return undefined;
}

/** PowerShell's conversion to string: True/False, arrays joined by spaces, $null is "". */
function toText(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  if (typeof value === 'number') return String(value);
  if (Array.isArray(value)) return value.map(toText).join(' ');
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value); // cyclic objects, BigInt
  }
}

function regExp(source: string, caseSensitive: boolean): RegExp {
  try {
    return new RegExp(source, caseSensitive ? '' : 'i');
  } catch {
    throw new UsageError(`invalid regular expression '${source}'`);
  }
}
