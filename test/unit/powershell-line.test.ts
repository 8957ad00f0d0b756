import { describe, it, expect } from 'vitest';
import {
  evaluateFilter,
  parsePowerShellLine,
  type Command,
  type FilterExpr,
  type Pipeline,
  type Statement,
  type StringValue,
} from '../../src/cli/powershell-line.js';
import { UsageError } from '../../src/errors.js';

/** The only statement of `line`, which must be a pipeline. */
function pipeline(line: string): Pipeline {
  const statements = parsePowerShellLine(line);
  expect(statements).toHaveLength(1);
  const [first] = statements;
  if (first?.kind !== 'pipeline') throw new Error(`expected a pipeline, got ${first?.kind}`);
  return first;
}

/** The only command of `line`. */
function command(line: string): Command {
  const p = pipeline(line);
  expect(p.commands).toHaveLength(1);
  return p.commands[0] as Command;
}

/** The parsed filter of the Where-Object command at the end of `line`. */
function filterOf(line: string): FilterExpr {
  const commands = pipeline(line).commands;
  const filter = commands.at(-1)?.filter;
  if (!filter) throw new Error('no filter');
  return filter;
}

/** Parse `line` expecting a one-line UsageError whose message matches `message`. */
function usageError(line: string, message: RegExp): void {
  let error: unknown;
  try {
    parsePowerShellLine(line);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(UsageError);
  const text = (error as Error).message;
  expect(text).toMatch(message);
  expect(text).not.toContain('\n');
}

const str = (value: string): StringValue => ({ kind: 'string', value });

describe('seed examples: Get-CsXmppAllowedPartner', () => {
  it('Example 1: Get-CsXmppAllowedPartner', () => {
    expect(parsePowerShellLine('Get-CsXmppAllowedPartner')).toEqual([
      {
        kind: 'pipeline', column: 1, input: null,
        commands: [{ name: 'Get-CsXmppAllowedPartner', column: 1, parameters: [], arguments: [] }],
      },
    ]);
  });

  it('Example 2: -Identity "xmpp.contoso.com"', () => {
    expect(command('Get-CsXmppAllowedPartner -Identity "xmpp.contoso.com"')).toEqual({
      name: 'Get-CsXmppAllowedPartner', column: 1, arguments: [],
      parameters: [{ name: 'Identity', value: str('xmpp.contoso.com'), colon: false, column: 26 }],
    });
  });

  it('Example 3 with its typo: - Filter "*.org" is the parameter -Filter', () => {
    expect(command('Get-CsXmppAllowedPartner - Filter "*.org"')).toEqual({
      name: 'Get-CsXmppAllowedPartner', column: 1, arguments: [],
      parameters: [{ name: 'Filter', value: str('*.org'), colon: false, column: 26 }],
    });
  });

  it('Example 3 as intended: -Filter "*.org"', () => {
    expect(command('Get-CsXmppAllowedPartner -Filter "*.org"').parameters).toEqual([
      { name: 'Filter', value: str('*.org'), colon: false, column: 26 },
    ]);
  });

  it('Example 4: | Where-Object {$_.SaslNegotiation -eq "Required"}', () => {
    const p = pipeline('Get-CsXmppAllowedPartner | Where-Object {$_.SaslNegotiation -eq "Required"}');
    expect(p.commands.map((c) => c.name)).toEqual(['Get-CsXmppAllowedPartner', 'Where-Object']);
    const where = p.commands[1] as Command;
    const expr: FilterExpr = {
      kind: 'compare', op: 'eq', caseSensitive: false,
      left: { kind: 'property', path: ['SaslNegotiation'] },
      right: { kind: 'literal', value: 'Required' },
    };
    expect(where.arguments).toEqual([
      { value: { kind: 'scriptblock', text: '$_.SaslNegotiation -eq "Required"', expr }, column: 41 },
    ]);
    expect(where.filter).toEqual(expr);
  });
});

describe('seed examples: New-CsXmppAllowedPartner', () => {
  it('Example 1: -Identity "contoso.com" -PartnerType "PublicVerified"', () => {
    expect(command('New-CsXmppAllowedPartner -Identity "contoso.com" -PartnerType "PublicVerified"').parameters).toEqual([
      { name: 'Identity', value: str('contoso.com'), colon: false, column: 26 },
      { name: 'PartnerType', value: str('PublicVerified'), colon: false, column: 50 },
    ]);
  });

  it('Example 2: -AdditionalDomains "research.fabrikam2.com"', () => {
    const c = command('New-CsXmppAllowedPartner -Identity "fabrikam.com" -AdditionalDomains "research.fabrikam2.com"');
    expect(c.parameters.map((p) => [p.name, p.value])).toEqual([
      ['Identity', str('fabrikam.com')],
      ['AdditionalDomains', str('research.fabrikam2.com')],
    ]);
  });

  it('the Lync page indents its examples: leading blanks are ignored', () => {
    const c = command('    New-CsXmppAllowedPartner -Identity "contoso.com" -PartnerType "PublicVerified"');
    expect(c.name).toBe('New-CsXmppAllowedPartner');
    expect(c.column).toBe(5);
  });

  it('parameter table: -AdditionalDomains "fabrikam2.com","fabrikam3.com" is one array', () => {
    const c = command('New-CsXmppAllowedPartner -Domain "fabrikam.com" -AdditionalDomains "fabrikam2.com","fabrikam3.com"');
    expect(c.parameters).toEqual([
      { name: 'Domain', value: str('fabrikam.com'), colon: false, column: 26 },
      {
        name: 'AdditionalDomains', colon: false, column: 49,
        value: { kind: 'array', items: [str('fabrikam2.com'), str('fabrikam3.com')] },
      },
    ]);
    expect(c.arguments).toEqual([]);
  });

  it('comma lists allow blanks around the commas and bare words', () => {
    const c = command('New-CsXmppAllowedPartner -Identity a.org -AdditionalDomains "a","b" , c.org,  \'d\'');
    expect(c.parameters[1]?.value).toEqual({ kind: 'array', items: [str('a'), str('b'), str('c.org'), str('d')] });
  });
});

describe('seed examples: Set-CsXmppAllowedPartner', () => {
  it('Example 1: -SupportDialbackNegotiation $False', () => {
    expect(command('Set-CsXmppAllowedPartner -Identity "contoso.com" -SupportDialbackNegotiation $False').parameters).toEqual([
      { name: 'Identity', value: str('contoso.com'), colon: false, column: 26 },
      { name: 'SupportDialbackNegotiation', value: { kind: 'boolean', value: false }, colon: false, column: 50 },
    ]);
  });

  it('Example 2: Get-CsXmppAllowedPartner | Set-CsXmppAllowedPartner -SaslNegotiation "Required"', () => {
    const p = pipeline('Get-CsXmppAllowedPartner | Set-CsXmppAllowedPartner -SaslNegotiation "Required"');
    expect(p.input).toBeNull();
    expect(p.commands).toEqual([
      { name: 'Get-CsXmppAllowedPartner', column: 1, parameters: [], arguments: [] },
      {
        name: 'Set-CsXmppAllowedPartner', column: 28, arguments: [],
        parameters: [{ name: 'SaslNegotiation', value: str('Required'), colon: false, column: 53 }],
      },
    ]);
  });

  it('Example 3: -AdditionalDomains @{Add="na.contoso.com"}', () => {
    const c = command('Set-CsXmppAllowedPartner -Identity "contoso.com" -AdditionalDomains @{Add="na.contoso.com"}');
    expect(c.parameters[1]).toEqual({
      name: 'AdditionalDomains', colon: false, column: 50,
      value: { kind: 'hashtable', entries: [{ key: 'Add', value: str('na.contoso.com') }] },
    });
  });

  it('Example 4: -AdditionalDomains @{Remove="europe.contoso.com"}', () => {
    const c = command('Set-CsXmppAllowedPartner -Identity "contoso.com" -AdditionalDomains @{Remove="europe.contoso.com"}');
    expect(c.parameters[1]?.value).toEqual({
      kind: 'hashtable', entries: [{ key: 'Remove', value: str('europe.contoso.com') }],
    });
  });

  it('Example 5: -AdditionalDomains $Null', () => {
    const c = command('Set-CsXmppAllowedPartner -Identity "contoso.com" -AdditionalDomains $Null');
    expect(c.parameters[1]).toEqual({ name: 'AdditionalDomains', value: { kind: 'null' }, colon: false, column: 50 });
  });

  it('the RBAC line: Where-Object {$_.Cmdlets -match "..."}, also with the Lync page\'s en dash', () => {
    const expected: FilterExpr = {
      kind: 'compare', op: 'match', caseSensitive: false,
      left: { kind: 'property', path: ['Cmdlets'] },
      right: { kind: 'literal', value: 'Set-CsXmppAllowedPartner' },
    };
    expect(filterOf('Get-CsAdminRole | Where-Object {$_.Cmdlets -match "Set-CsXmppAllowedPartner"}')).toEqual(expected);
    expect(filterOf('Get-CsAdminRole | Where-Object {$_.Cmdlets \u2013match "Set-CsXmppAllowedPartner"}')).toEqual(expected);
  });
});

describe('hashtables', () => {
  it('take several entries, list values, any key case, and quoted keys', () => {
    const c = command('Set-CsXmppAllowedPartner -Identity a.org -AdditionalDomains @{ Add = "a","b"; remove="c"; \'x y\'=1 }');
    expect(c.parameters[1]?.value).toEqual({
      kind: 'hashtable',
      entries: [
        { key: 'Add', value: { kind: 'array', items: [str('a'), str('b')] } },
        { key: 'remove', value: str('c') },
        { key: 'x y', value: { kind: 'number', value: 1 } },
      ],
    });
  });

  it('@{Remove="x","y"} and an empty @{}', () => {
    expect(command('Set-X -AdditionalDomains @{Remove="x","y"}').parameters[0]?.value).toEqual({
      kind: 'hashtable', entries: [{ key: 'Remove', value: { kind: 'array', items: [str('x'), str('y')] } }],
    });
    expect(command('Set-X -AdditionalDomains @{}').parameters[0]?.value).toEqual({ kind: 'hashtable', entries: [] });
  });

  it('may span lines, entries separated by line breaks', () => {
    const c = command('Set-X -AdditionalDomains @{\n  Add = "a"\n  Remove = "b"\n}');
    expect(c.parameters[0]?.value).toEqual({
      kind: 'hashtable', entries: [{ key: 'Add', value: str('a') }, { key: 'Remove', value: str('b') }],
    });
  });
});

describe('values', () => {
  it('double-quoted strings: backtick escapes and "" are decoded, $var is kept literally', () => {
    const c = command('Set-X -Description "tab`there `"q`" ""dq"" back``tick line`nbreak $p $(x) `u{263A}"');
    expect(c.parameters[0]?.value).toEqual(str('tab\there "q" "dq" back`tick line\nbreak $p $(x) \u263A'));
  });

  it("single-quoted strings: '' is a quote and backticks are literal", () => {
    expect(command("Set-X -Description 'it''s `n literal'").parameters[0]?.value).toEqual(str("it's `n literal"));
  });

  it('typographic quotes count as quotes', () => {
    expect(command('Set-X -Description \u201chello\u201d').parameters[0]?.value).toEqual(str('hello'));
    expect(command('Set-X -Description \u2018it\u2019\u2019s\u2019').parameters[0]?.value).toEqual(str('it\u2019s'));
  });

  it('an empty string is a value, not a switch', () => {
    expect(command('Set-X -Description ""').parameters[0]?.value).toEqual(str(''));
  });

  it('bare words are strings; all-digit words are numbers', () => {
    const c = command('Set-X -Identity xmpp.contoso.com -SaslNegotiation Required -ConnectionLimit 25 -Offset -3 -Version 1.5 -Big 123456789012345678901234');
    expect(c.parameters.map((p) => p.value)).toEqual([
      str('xmpp.contoso.com'),
      str('Required'),
      { kind: 'number', value: 25 },
      { kind: 'number', value: -3 },
      str('1.5'),
      str('123456789012345678901234'),
    ]);
  });

  it('$True, $False, $Null in any case; other words like true stay strings', () => {
    const c = command('Set-X -A $TRUE -B $false -C $NuLl -D true');
    expect(c.parameters.map((p) => p.value)).toEqual([
      { kind: 'boolean', value: true },
      { kind: 'boolean', value: false },
      { kind: 'null' },
      str('true'),
    ]);
  });

  it('@(...) array literals, nested and empty, and (...) around a list', () => {
    const c = command('Set-X -A @("a", "b") -B @() -C @(@(1,2), 3) -D @("x"; "y") -E ("p","q")');
    expect(c.parameters.map((p) => p.value)).toEqual([
      { kind: 'array', items: [str('a'), str('b')] },
      { kind: 'array', items: [] },
      { kind: 'array', items: [{ kind: 'array', items: [{ kind: 'number', value: 1 }, { kind: 'number', value: 2 }] }, { kind: 'number', value: 3 }] },
      { kind: 'array', items: [str('x'), str('y')] },
      { kind: 'array', items: [str('p'), str('q')] },
    ]);
  });

  it('backtick escapes in bare words', () => {
    expect(command('Set-X -Description a`;b`,c').parameters[0]?.value).toEqual(str('a;b,c'));
  });

  it('wildcard characters and brackets in bare words', () => {
    expect(command('Get-CsXmppAllowedPartner -Filter [a-c]*.org').parameters[0]?.value).toEqual(str('[a-c]*.org'));
  });
});

describe('parameters', () => {
  it('switches: followed by another parameter, |, ;, or the end', () => {
    const statements = parsePowerShellLine('New-X -WhatIf -Force | Set-X -Confirm; Remove-X -Force');
    const [first, second] = statements as [Pipeline, Pipeline];
    expect(first.commands[0]?.parameters).toEqual([
      { name: 'WhatIf', value: null, colon: false, column: 7 },
      { name: 'Force', value: null, colon: false, column: 15 },
    ]);
    expect(first.commands[1]?.parameters).toEqual([{ name: 'Confirm', value: null, colon: false, column: 30 }]);
    expect(second.commands[0]?.parameters).toEqual([{ name: 'Force', value: null, colon: false, column: 49 }]);
  });

  it('-Name:value keeps the colon, with or without a blank after it', () => {
    const c = command('Remove-CsXmppAllowedPartner -Identity:a.org -Confirm:$false -Force: $true');
    expect(c.parameters).toEqual([
      { name: 'Identity', value: str('a.org'), colon: true, column: 29 },
      { name: 'Confirm', value: { kind: 'boolean', value: false }, colon: true, column: 45 },
      { name: 'Force', value: { kind: 'boolean', value: true }, colon: true, column: 61 },
    ]);
  });

  it('parameter names keep their spelling', () => {
    expect(command('get-csxmppallowedpartner -IDENTITY x').parameters[0]?.name).toBe('IDENTITY');
  });

  it('a switch followed by a word takes it as a value without colon (the executor decides)', () => {
    expect(command('New-X -WhatIf contoso.com').parameters).toEqual([
      { name: 'WhatIf', value: str('contoso.com'), colon: false, column: 7 },
    ]);
  });

  it('positional arguments are kept in order with their columns', () => {
    const c = command('Get-CsXmppAllowedPartner xmpp.contoso.com -LocalStore "x"');
    expect(c.arguments).toEqual([{ value: str('xmpp.contoso.com'), column: 26 }]);
    expect(c.parameters).toEqual([{ name: 'LocalStore', value: str('x'), colon: false, column: 43 }]);
  });

  it('a typographic dash starts a parameter too', () => {
    expect(command('Get-CsXmppAllowedPartner \u2013Identity a.org').parameters[0]?.name).toBe('Identity');
  });

  it('a dash inside a word or before a digit is not a parameter', () => {
    const c = command('Get-X -Identity my-host.example -Offset -5 -Name -a.b');
    expect(c.parameters.map((p) => p.value)).toEqual([str('my-host.example'), { kind: 'number', value: -5 }, str('-a.b')]);
  });
});

describe('statements, assignments and variables', () => {
  it('$p = New-... -InMemory; $p.Description = "x"; Set-... -Instance $p', () => {
    const statements = parsePowerShellLine(
      '$p = New-CsXmppAllowedPartner -Identity "a.org" -InMemory; $p.Description = "x"; Set-CsXmppAllowedPartner -Instance $p',
    );
    expect(statements).toEqual<Statement[]>([
      {
        kind: 'assignment', column: 1, variable: 'p', path: [],
        value: {
          kind: 'pipeline', column: 6, input: null,
          commands: [{
            name: 'New-CsXmppAllowedPartner', column: 6, arguments: [],
            parameters: [
              { name: 'Identity', value: str('a.org'), colon: false, column: 31 },
              { name: 'InMemory', value: null, colon: false, column: 49 },
            ],
          }],
        },
      },
      { kind: 'assignment', column: 60, variable: 'p', path: ['Description'], value: str('x') },
      {
        kind: 'pipeline', column: 82, input: null,
        commands: [{
          name: 'Set-CsXmppAllowedPartner', column: 82, arguments: [],
          parameters: [{ name: 'Instance', value: { kind: 'variable', name: 'p', path: [] }, colon: false, column: 107 }],
        }],
      },
    ]);
  });

  it('statements separated by line breaks, with blank lines and comments', () => {
    const statements = parsePowerShellLine('Get-X\n\n# a comment\nRemove-X -Identity a.org # trailing\r\n<# block #> Get-Y');
    expect(statements.map((s) => (s.kind === 'pipeline' ? s.commands[0]?.name : s.kind))).toEqual(['Get-X', 'Remove-X', 'Get-Y']);
  });

  it('an assignment of a list, a property path, and no spaces around =', () => {
    const [a, b] = parsePowerShellLine('$p.AdditionalDomains="a","b"; $x.A.B = 5') as [Statement, Statement];
    expect(a).toEqual({
      kind: 'assignment', column: 1, variable: 'p', path: ['AdditionalDomains'],
      value: { kind: 'array', items: [str('a'), str('b')] },
    });
    expect(b).toMatchObject({ kind: 'assignment', variable: 'x', path: ['A', 'B'], value: { kind: 'number', value: 5 } });
  });

  it('a variable as a statement, and piped into a command', () => {
    const [shown, piped] = parsePowerShellLine('$p; $p | Set-CsXmppAllowedPartner') as [Pipeline, Pipeline];
    expect(shown).toEqual({ kind: 'pipeline', column: 1, input: { kind: 'variable', name: 'p', path: [] }, commands: [] });
    expect(piped.input).toEqual({ kind: 'variable', name: 'p', path: [] });
    expect(piped.commands.map((c) => c.name)).toEqual(['Set-CsXmppAllowedPartner']);
  });

  it('a variable member as a value', () => {
    expect(command('Set-X -Identity $p.Identity').parameters[0]?.value).toEqual({ kind: 'variable', name: 'p', path: ['Identity'] });
  });

  it('empty input and empty statements give no statements', () => {
    expect(parsePowerShellLine('')).toEqual([]);
    expect(parsePowerShellLine('  ;; \n ; ')).toEqual([]);
  });
});

describe('pipelines', () => {
  it('three stages', () => {
    const p = pipeline('Get-CsXmppAllowedPartner -Filter "*.org" | Where-Object {$_.TlsNegotiation -ne "Required"} | Set-CsXmppAllowedPartner -TlsNegotiation Required -WhatIf');
    expect(p.commands.map((c) => c.name)).toEqual(['Get-CsXmppAllowedPartner', 'Where-Object', 'Set-CsXmppAllowedPartner']);
    expect(p.commands[1]?.filter).toMatchObject({ kind: 'compare', op: 'ne' });
    expect(p.commands[2]?.parameters).toEqual([
      { name: 'TlsNegotiation', value: str('Required'), colon: false, column: 119 },
      { name: 'WhatIf', value: null, colon: false, column: 144 },
    ]);
  });

  it('a line break may follow |, and a backtick continues a line', () => {
    const p = pipeline('Get-CsXmppAllowedPartner |\n  Remove-CsXmppAllowedPartner `\n  -WhatIf');
    expect(p.commands.map((c) => c.name)).toEqual(['Get-CsXmppAllowedPartner', 'Remove-CsXmppAllowedPartner']);
    expect(p.commands[1]?.parameters.map((x) => x.name)).toEqual(['WhatIf']);
  });

  it('where and ? are Where-Object, also written without a blank before {', () => {
    expect(filterOf('Get-X | where {$_.A -eq 1}')).toMatchObject({ kind: 'compare', op: 'eq' });
    expect(filterOf('Get-X | ?{$_.A -eq 1}')).toMatchObject({ kind: 'compare', op: 'eq' });
    expect(filterOf('Get-X | WHERE-OBJECT -FilterScript {$_.A}')).toEqual({ kind: 'property', path: ['A'] });
  });

  it('non-Where-Object commands get no filter', () => {
    expect(command('Get-X').filter).toBeUndefined();
  });
});

describe('script blocks', () => {
  const prop = (...path: string[]): FilterExpr => ({ kind: 'property', path });
  const lit = (value: string | number | boolean | null): FilterExpr => ({ kind: 'literal', value });

  it('every comparison operator, with -i and -c variants, in any case', () => {
    const ops = ['eq', 'ne', 'like', 'notlike', 'match', 'notmatch', 'gt', 'ge', 'lt', 'le', 'contains', 'notcontains', 'in', 'notin'];
    for (const op of ops) {
      expect(filterOf(`? {$_.A -${op.toUpperCase()} "x"}`)).toEqual({ kind: 'compare', op, caseSensitive: false, left: prop('A'), right: lit('x') });
      expect(filterOf(`? {$_.A -i${op} "x"}`)).toMatchObject({ op, caseSensitive: false });
      expect(filterOf(`? {$_.A -c${op} "x"}`)).toMatchObject({ op, caseSensitive: true });
    }
  });

  it('-and, -or, -xor share one precedence level and group left to right', () => {
    expect(filterOf('? {$_.A -eq 1 -or $_.B -eq 2 -and $_.C -eq 3}')).toEqual({
      kind: 'logical', op: 'and',
      left: {
        kind: 'logical', op: 'or',
        left: { kind: 'compare', op: 'eq', caseSensitive: false, left: prop('A'), right: lit(1) },
        right: { kind: 'compare', op: 'eq', caseSensitive: false, left: prop('B'), right: lit(2) },
      },
      right: { kind: 'compare', op: 'eq', caseSensitive: false, left: prop('C'), right: lit(3) },
    });
    expect(filterOf('? {$_.A -xor $_.B}')).toEqual({ kind: 'logical', op: 'xor', left: prop('A'), right: prop('B') });
  });

  it('parentheses group; -not and ! bind to the operand next to them', () => {
    expect(filterOf('? {$_.A -or ($_.B -and $_.C)}')).toEqual({
      kind: 'logical', op: 'or', left: prop('A'),
      right: { kind: 'logical', op: 'and', left: prop('B'), right: prop('C') },
    });
    expect(filterOf('? {-not ($_.A -eq "x")}')).toEqual({
      kind: 'not', operand: { kind: 'compare', op: 'eq', caseSensitive: false, left: prop('A'), right: lit('x') },
    });
    expect(filterOf('? {!$_.EnableKeepAlive}')).toEqual({ kind: 'not', operand: prop('EnableKeepAlive') });
    expect(filterOf('? {-NOT $_.A -eq $false}')).toEqual({
      kind: 'compare', op: 'eq', caseSensitive: false, left: { kind: 'not', operand: prop('A') }, right: lit(false),
    });
  });

  it('$PSItem is $_, member paths, constants, numbers and lists', () => {
    expect(filterOf('? {$PSItem.AdditionalDomains.Count -ge -1}')).toEqual({
      kind: 'compare', op: 'ge', caseSensitive: false, left: prop('AdditionalDomains', 'Count'), right: lit(-1),
    });
    expect(filterOf('? {$_.A -in "x", \'y\', $null, $True}')).toMatchObject({
      right: { kind: 'list', items: [lit('x'), lit('y'), lit(null), lit(true)] },
    });
    expect(filterOf('? {$_.A -in @("x","y")}')).toMatchObject({ right: { kind: 'list', items: [lit('x'), lit('y')] } });
    expect(filterOf('? {$_ -like "a*"}')).toMatchObject({ left: prop() });
  });

  it('may span lines and keeps its text', () => {
    const c = command('Where-Object {\n  $_.A -eq 1 -and\n  $_.B -eq 2\n}');
    expect(c.filter).toMatchObject({ kind: 'logical', op: 'and' });
    expect(c.arguments[0]?.value).toMatchObject({ kind: 'scriptblock', text: '$_.A -eq 1 -and\n  $_.B -eq 2' });
  });
});

describe('Where-Object simplified syntax', () => {
  const expected: FilterExpr = {
    kind: 'compare', op: 'eq', caseSensitive: false,
    left: { kind: 'property', path: ['SaslNegotiation'] },
    right: { kind: 'literal', value: 'Required' },
  };

  it('Where-Object SaslNegotiation -eq "Required"', () => {
    expect(filterOf('Get-X | Where-Object SaslNegotiation -eq "Required"')).toEqual(expected);
  });

  it('Where-Object -Property SaslNegotiation -EQ -Value Required', () => {
    expect(filterOf('Get-X | Where-Object -Property SaslNegotiation -EQ -Value Required')).toEqual(expected);
  });

  it('the operator switch may come first, and -EQ may be left out', () => {
    expect(filterOf('Get-X | Where-Object -EQ SaslNegotiation Required')).toEqual(expected);
    expect(filterOf('Get-X | Where-Object SaslNegotiation Required')).toEqual(expected);
    expect(filterOf('Get-X | Where-Object -EQ:$true SaslNegotiation Required')).toEqual(expected);
  });

  it('other operators, numbers, lists', () => {
    expect(filterOf('? Identity -CLike *.org')).toMatchObject({ op: 'like', caseSensitive: true, right: { kind: 'literal', value: '*.org' } });
    expect(filterOf('? ConnectionLimit -gt 5')).toMatchObject({ op: 'gt', right: { kind: 'literal', value: 5 } });
    expect(filterOf('? Identity -in a.org,b.org')).toMatchObject({
      op: 'in', right: { kind: 'list', items: [{ kind: 'literal', value: 'a.org' }, { kind: 'literal', value: 'b.org' }] },
    });
  });

  it('a property alone tests truthiness; -Not negates it', () => {
    expect(filterOf('? EnableKeepAlive')).toEqual({ kind: 'property', path: ['EnableKeepAlive'] });
    expect(filterOf('? -Not EnableKeepAlive')).toEqual({ kind: 'not', operand: { kind: 'property', path: ['EnableKeepAlive'] } });
  });
});

describe('errors', () => {
  it('unterminated strings name their starting column', () => {
    usageError('Get-CsXmppAllowedPartner -Identity "xmpp.contoso.com', /^unterminated string starting at column 36$/);
    usageError("Get-X -Identity 'a.org", /^unterminated string starting at column 17$/);
    usageError('Get-X -Identity "a.org`"', /^unterminated string starting at column 17$/);
  });

  it('stray closing brackets', () => {
    usageError('Get-CsXmppAllowedPartner }', /^unexpected '}' at column 26$/);
    usageError('Get-X -Identity a.org)', /^unexpected '\)' at column 22$/);
  });

  it('missing closing brackets', () => {
    usageError('Get-X | Where-Object {$_.A -eq "x"', /^missing '}' for the '\{' at column 22$/);
    usageError('Set-X -A @("a","b"', /^missing '\)' for the '@\(' at column 10$/);
    usageError('Set-X -A @{Add="x"', /^missing '}' for the '@\{' at column 10$/);
    usageError('Set-X -A ("a"', /^missing '\)' for the '\(' at column 10$/);
    usageError('? {($_.A -eq 1}', /^unexpected '}' at column 15$/);
  });

  it('pipes without a command', () => {
    usageError('Get-X |', /^missing command after '\|' at column 7$/);
    usageError('Get-X | ; Get-Y', /^missing command after '\|' at column 7$/);
    usageError('| Get-X', /^unexpected '\|' at column 1$/);
    usageError('Get-X | "a"', /^expected a command name after '\|' but found '"a"' at column 9$/);
  });

  it('missing values', () => {
    usageError('Set-X -AdditionalDomains "a",', /^missing value after ',' at column 29$/);
    usageError('Set-X -AdditionalDomains "a", -WhatIf', /^missing value after ',' at column 29$/);
    usageError('Set-X -Confirm:', /^missing value after '-Confirm:' at column 7$/);
    usageError('$p =', /^missing value after '=' at column 4$/);
    usageError('$p = ; Get-X', /^missing value after '=' at column 4$/);
  });

  it('a lone dash not followed by a name', () => {
    usageError('Get-X - "a"', /^unexpected '-' at column 7/);
    usageError('Get-X -', /^unexpected '-' at column 7/);
    usageError('Get-X - 5', /^unexpected '-' at column 7/);
  });

  it('variables', () => {
    usageError('Get-X -Identity $', /^missing variable name after '\$' at column 17$/);
    usageError('Get-X -Identity $env:HOST', /scoped variables .* not supported \(at column 17\)/);
    usageError('$true = 1', /^cannot assign to \$true at column 1$/);
  });

  it('unsupported syntax', () => {
    usageError('Get-X > out.txt', /^unsupported '>' at column 7$/);
    usageError('& Get-X', /^unsupported '&' at column 1$/);
    usageError('Set-X @params', /^unexpected '@' at column 7/);
    usageError('Set-X -Instance (Get-X -Identity a.org)', /^commands in parentheses are not supported \(at column 18\)/);
    usageError('Set-X -A @(Get-X)', /^commands inside @\( \) are not supported \(at column 12\)$/);
    usageError('Set-X -A ()', /^empty parentheses at column 10$/);
    usageError('Get-X = 1', /^unexpected '=' at column 7$/);
    usageError('Get-X ,a', /^unexpected ',' at column 7$/);
  });

  it('escapes and comments', () => {
    usageError('Get-X -Identity a.org `', /^nothing follows the escape character '`' at column 23$/);
    usageError('Set-X -Description "`u{zz}"', /^invalid Unicode escape at column 21$/);
    usageError('Get-X <# no end', /^unterminated comment starting at column 7$/);
  });

  it('values run together without a blank', () => {
    usageError('Set-X -Description "a"b', /^missing space before 'b' at column 23$/);
    usageError("Set-X -Description \"a\"'b'", /^missing space before ''b'' at column 23$/);
  });

  it('script blocks', () => {
    usageError('Get-X | ? {$_.A -eq Required}', /^unquoted text 'Required' at column 21 must be in quotes here$/);
    usageError('? {$_.A -foo 1}', /^unknown operator '-foo' at column 9$/);
    usageError('? {$_.A -is "x"}', /^unknown operator '-is' at column 9$/);
    usageError('? {$_.A -eq}', /^missing value after '-eq' at column 9$/);
    usageError('? {$_.A -and}', /^missing value after '-and' at column 9$/);
    usageError('? {$_.A -eq 1,}', /^missing value after ',' at column 14$/);
    usageError('? {$p.A -eq 1}', /^variable \$p at column 4 cannot be used in a script block/);
    usageError('? {}', /^empty script block at column 3$/);
    usageError('? {$_.A -eq 1 2}', /^unexpected '2' at column 15$/);
    usageError('? {$_.A -eq 1; $_.B}', /^unexpected ';' at column 14$/);
    usageError('? {$_.A -eq @{a=1}}', /^unexpected '@\{' at column 13$/);
    usageError('? {$_.A -match "("}', /^invalid regular expression '\(' at column 16$/);
    usageError('? {$_.A -like "[abc"}', /^invalid wildcard pattern '\[abc'.* at column 15$/);
  });

  it('hashtables', () => {
    usageError('Set-X -A @{Add}', /^missing '=' after key 'Add' at column 15$/);
    usageError('Set-X -A @{Add=}', /^missing value for key 'Add' at column 15$/);
    usageError('Set-X -A @{Add="a"; add="b"}', /^duplicate key 'add' at column 21$/);
    usageError('Set-X -A @{Add=na.contoso.com}', /^unquoted text 'na.contoso.com' at column 16 must be in quotes here$/);
    usageError('Set-X -A @{Add="a" Remove="b"}', /^unexpected 'Remove' at column 20$/);
    usageError('Set-X -A @{(1)=2}', /^unexpected '\(' at column 12$/);
  });

  it('Where-Object shapes', () => {
    usageError('Get-X | Where-Object', /^Where-Object at column 9 needs a script block \{...\} or a property name$/);
    usageError('Get-X | Where-Object -Foo x', /^unknown Where-Object parameter '-Foo' at column 22$/);
    usageError('? A -eq 1 -ne 2', /^second Where-Object operator '-ne' at column 11$/);
    usageError('? {$_.A} -eq 1', /^Where-Object at column 1 takes a script block or 'Property -Operator Value', not both$/);
    usageError('? A -eq', /^Where-Object -eq at column 1 needs a value$/);
    usageError('? A B C', /^unexpected Where-Object argument at column 7$/);
    usageError('? -FilterScript "x"', /^-FilterScript at column 3 needs a script block/);
    usageError('? -Property A -Value', /^-Value at column 15 needs a value$/);
    usageError('? -Not A B', /^Where-Object -Not at column 1 takes no value$/);
    usageError('? A -like "[x"', /^invalid wildcard pattern '\[x'.* at column 11$/);
    usageError('? A -eq $p', /^variable \$p at column 9 cannot be used in a filter$/);
    usageError('? A -EQ:$false B', /^-EQ: at column 5 is not supported$/);
  });

  it('line and column when the input spans several lines', () => {
    usageError('Get-X\n  -Identity "x"', /^unexpected '-Identity' at line 2, column 3$/);
    usageError('Get-X |\n  Set-X -Identity "x', /^unterminated string starting at line 2, column 19$/);
  });

  it('never throws anything but a one-line UsageError, whatever the input', () => {
    const alphabet = ['G', 'x', ' ', '-', '$', '_', '.', '"', "'", '`', '|', ';', ',', '=', '(', ')', '{', '}', '@', '!', '#', '<', '>', '&', '*', '?', '[', ']', '\n', '1', ':', 'eq', ' -and ', '\u2013', '\u201c', 'u{', '$_.A'];
    let seed = 12345;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    let failures = 0;
    for (let i = 0; i < 3000; i++) {
      let line = '';
      const length = 1 + random(25);
      for (let j = 0; j < length; j++) line += alphabet[random(alphabet.length)];
      try {
        parsePowerShellLine(line);
      } catch (e) {
        failures += 1;
        if (!(e instanceof UsageError) || e.message.includes('\n')) {
          throw new Error(`input ${JSON.stringify(line)} threw ${String(e)}`);
        }
      }
    }
    expect(failures).toBeGreaterThan(100);
  });
});

describe('evaluateFilter', () => {
  const partner = {
    Identity: 'xmpp.contoso.org',
    SaslNegotiation: 'Required',
    TlsNegotiation: 'Optional',
    EnableKeepAlive: true,
    SupportDialbackNegotiation: false,
    ConnectionLimit: 10,
    Description: null,
    AdditionalDomains: ['na.contoso.org', 'europe.contoso.com'],
  };
  const passes = (line: string, record: Record<string, unknown> = partner): boolean => evaluateFilter(filterOf(line), record);

  it('the seed filter: SaslNegotiation -eq "Required"', () => {
    const line = 'Get-CsXmppAllowedPartner | Where-Object {$_.SaslNegotiation -eq "Required"}';
    expect(passes(line)).toBe(true);
    expect(passes(line, { ...partner, SaslNegotiation: 'Optional' })).toBe(false);
  });

  it('string comparisons ignore case unless -c...; property names ignore case', () => {
    expect(passes('? {$_.saslnegotiation -eq "REQUIRED"}')).toBe(true);
    expect(passes('? {$_.SaslNegotiation -ceq "REQUIRED"}')).toBe(false);
    expect(passes('? {$_.SaslNegotiation -ceq "Required"}')).toBe(true);
    expect(passes('? {$_.SaslNegotiation -ne "required"}')).toBe(false);
    expect(passes('? {$_.SaslNegotiation -cne "required"}')).toBe(true);
  });

  it('-like and -notlike use PowerShell wildcards', () => {
    expect(passes('? {$_.Identity -like "*.ORG"}')).toBe(true);
    expect(passes('? {$_.Identity -like "*.com"}')).toBe(false);
    expect(passes('? {$_.Identity -notlike "*.com"}')).toBe(true);
    expect(passes('? {$_.Identity -clike "*.ORG"}')).toBe(false);
    expect(passes('? {$_.Identity -like "xmpp.[a-d]ontoso.???"}')).toBe(true);
  });

  it('-match and -notmatch are unanchored regular expressions ignoring case', () => {
    expect(passes('? {$_.Identity -match "CONTOSO"}')).toBe(true);
    expect(passes('? {$_.Identity -match "^contoso"}')).toBe(false);
    expect(passes('? {$_.Identity -cmatch "CONTOSO"}')).toBe(false);
    expect(passes('? {$_.Identity -notmatch "fabrikam"}')).toBe(true);
  });

  it('booleans compare to $True/$False and to "True"/"False" in any case', () => {
    expect(passes('? {$_.EnableKeepAlive -eq $true}')).toBe(true);
    expect(passes('? {$_.EnableKeepAlive -eq $false}')).toBe(false);
    expect(passes('? {$_.EnableKeepAlive -eq "true"}')).toBe(true);
    expect(passes('? {$_.EnableKeepAlive -eq "FALSE"}')).toBe(false);
    expect(passes('? {$_.SupportDialbackNegotiation -eq "False"}')).toBe(true);
    expect(passes('? {$_.SupportDialbackNegotiation -eq $False}')).toBe(true);
    expect(passes('? EnableKeepAlive -eq True')).toBe(true);
  });

  it('a property alone is a truthiness test; -not and ! negate', () => {
    expect(passes('? {$_.EnableKeepAlive}')).toBe(true);
    expect(passes('? {$_.SupportDialbackNegotiation}')).toBe(false);
    expect(passes('? {-not $_.SupportDialbackNegotiation}')).toBe(true);
    expect(passes('? {!$_.EnableKeepAlive}')).toBe(false);
    expect(passes('? -Not SupportDialbackNegotiation')).toBe(true);
    expect(passes('? Description')).toBe(false);
  });

  it('a missing property or $null is $null', () => {
    expect(passes('? {$_.NoSuchProperty -eq $null}')).toBe(true);
    expect(passes('? {$_.Description -eq $null}')).toBe(true);
    expect(passes('? {$_.Description -eq ""}')).toBe(false);
    expect(passes('? {$_.Identity -eq $null}')).toBe(false);
    expect(passes('? {$_.Description -like "*"}')).toBe(true);
  });

  it('an array on the left passes when any element does', () => {
    expect(passes('? {$_.AdditionalDomains -eq "EUROPE.contoso.com"}')).toBe(true);
    expect(passes('? {$_.AdditionalDomains -eq "asia.contoso.com"}')).toBe(false);
    expect(passes('? {$_.AdditionalDomains -like "*.org"}')).toBe(true);
    expect(passes('? {$_.AdditionalDomains -like "*.net"}')).toBe(false);
    expect(passes('? {$_.AdditionalDomains -eq "x"}', { AdditionalDomains: [] })).toBe(false);
    expect(passes('? {$_.AdditionalDomains -ne "x"}', { AdditionalDomains: [] })).toBe(false);
  });

  it('-contains, -notcontains, -in, -notin', () => {
    expect(passes('? {$_.AdditionalDomains -contains "NA.contoso.org"}')).toBe(true);
    expect(passes('? {$_.AdditionalDomains -ccontains "NA.contoso.org"}')).toBe(false);
    expect(passes('? {$_.AdditionalDomains -notcontains "x.org"}')).toBe(true);
    expect(passes('? {$_.SaslNegotiation -in "Optional","required"}')).toBe(true);
    expect(passes('? {$_.SaslNegotiation -notin @("Optional","NotSupported")}')).toBe(true);
    expect(passes('? {"na.contoso.org" -in $_.AdditionalDomains}')).toBe(true);
  });

  it('numbers compare numerically, converting the right side', () => {
    expect(passes('? {$_.ConnectionLimit -gt 5}')).toBe(true);
    expect(passes('? {$_.ConnectionLimit -gt 10}')).toBe(false);
    expect(passes('? {$_.ConnectionLimit -ge 10}')).toBe(true);
    expect(passes('? {$_.ConnectionLimit -lt "9"}')).toBe(false);
    expect(passes('? {$_.ConnectionLimit -le "10"}')).toBe(true);
    expect(passes('? {$_.ConnectionLimit -eq "10"}')).toBe(true);
    expect(passes('? ConnectionLimit -eq 10')).toBe(true);
  });

  it('strings order as text, like PowerShell ("10" -gt 9 is False)', () => {
    expect(passes('? {$_.S -gt 9}', { S: '10' })).toBe(false);
    expect(passes('? {$_.S -lt "b"}', { S: 'A' })).toBe(true);
  });

  it('-and, -or, -xor with PowerShell precedence; parentheses', () => {
    const record = { A: 1, B: 0, C: 0 };
    expect(passes('? {$_.A -eq 1 -or $_.B -eq 2 -and $_.C -eq 3}', record)).toBe(false);
    expect(passes('? {$_.A -eq 1 -or ($_.B -eq 2 -and $_.C -eq 3)}', record)).toBe(true);
    expect(passes('? {$_.A -eq 1 -and $_.B -eq 0}', record)).toBe(true);
    expect(passes('? {$_.A -xor $_.B}', record)).toBe(true);
    expect(passes('? {$_.A -xor $_.A}', record)).toBe(false);
  });

  it('$PSItem, nested members, member enumeration and Count', () => {
    const record = { Owner: { Name: 'Alice' }, Links: [{ Host: 'a.org' }, { Host: 'b.org' }] };
    expect(passes('? {$PSItem.owner.name -eq "alice"}', record)).toBe(true);
    expect(passes('? {$_.Links.Host -eq "b.org"}', record)).toBe(true);
    expect(passes('? {$_.Links.Count -eq 2}', record)).toBe(true);
    expect(passes('? {$_.AdditionalDomains.Count -gt 2}')).toBe(false);
    expect(passes('? {$_.Identity.Length -eq 16}')).toBe(true);
  });

  it('an invalid pattern that comes from the record is a UsageError', () => {
    expect(() => passes('? {$_.A -match $_.B}', { A: 'x', B: '(' })).toThrow(UsageError);
    expect(() => passes('? {$_.A -like $_.B}', { A: 'x', B: '[x' })).toThrow(UsageError);
  });
});
