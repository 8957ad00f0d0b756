/**
 * Where a YAML syntax error is, for `file:line:` messages. The yaml library reports an
 * unterminated construct (a `[` or `{` never closed, a quote never closed) at the place it
 * noticed, which is the next line's first token or the end of the input: one line (or more)
 * past the line the admin has to fix. Those are reported at the last content before that point.
 */
import type { LineCounter, YAMLError } from 'yaml';

const UNTERMINATED = /end with a [\]}]|Missing closing/;

export function yamlErrorLine(text: string, lines: LineCounter, error: YAMLError): number {
  let offset = error.pos[0];
  if (UNTERMINATED.test(error.message) || text.slice(offset).trim() === '') {
    const before = text.slice(0, offset).trimEnd();
    if (before !== '') offset = before.length - 1;
  }
  return lines.linePos(offset).line;
}
