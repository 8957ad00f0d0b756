/**
 * The single entry point to ltx (pinned to 3.1.2; upstream is changing its exports, see
 * docs/protocol.md §10). No other file imports `ltx` directly.
 *
 * - `Element`: ltx's DOM element. Names are raw qualified names; namespaces resolve via `parent`.
 * - `SaxLtx`: ltx's streaming tokenizer, deep-imported (`ltx/src/parsers/ltx.js`) because the
 *   package root does not export it. Use it only through `StreamParser`, which validates the
 *   input before ltx sees it.
 */
export { Element, escapeXML, escapeXMLText, unescapeXML } from 'ltx';
export type { Node as XmlNode } from 'ltx';
import SaxLtx from 'ltx/src/parsers/ltx.js';

export { SaxLtx };
