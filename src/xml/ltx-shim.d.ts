/**
 * Type declarations for the parts of ltx@3.1.2 we use (the package ships no types).
 * Only src/xml/ltx.ts imports these modules; everything else imports from './ltx.js'.
 * Kept in a global (script) file so the `declare module` blocks are ambient.
 */

declare module 'ltx' {
  /** A child node: an element or a text string (text is stored unescaped). */
  export type Node = Element | string;

  /** Attribute values are strings on parsed elements; builders may pass numbers (serialised with toString). */
  export type Attrs = Record<string, string>;

  export class Element {
    constructor(name: string, attrs?: Record<string, string | number | null | undefined> | string);
    /** The raw qualified name as written (`db:result`, `message`). */
    name: string;
    parent: Element | null;
    children: Node[];
    attrs: Attrs;

    /** Local name match plus, if `xmlns` is given, resolved namespace match (walks `parent`). */
    is(name: string, xmlns?: string): boolean;
    /** Local name (prefix stripped). */
    getName(): string;
    /** Resolved namespace, walking `parent` links; undefined if unbound. */
    getNS(): string | undefined;
    findNS(prefix?: string): string | undefined;
    getXmlns(): Record<string, string>;
    setAttrs(attrs: Record<string, string | number | null | undefined> | string | undefined): void;
    getAttr(name: string, xmlns?: string): string | undefined | null;
    getChild(name: string, xmlns?: string): Element | undefined;
    getChildren(name: string, xmlns?: string): Element[];
    getChildByAttr(attr: string, val: string, xmlns?: string, recursive?: boolean): Element | undefined;
    getChildrenByAttr(attr: string, val: string, xmlns?: string, recursive?: boolean): Element[];
    getChildrenByFilter(filter: (child: Node) => boolean, recursive?: boolean): Node[];
    getText(): string;
    getChildText(name: string, xmlns?: string): string | null;
    getChildElements(): Element[];
    root(): Element;
    up(): Element;
    /** Create a child element and return it. */
    c(name: string, attrs?: Record<string, string | number | null | undefined> | string): Element;
    cnode<T extends Node>(child: T): T;
    append(...nodes: Node[]): void;
    prepend(...nodes: Node[]): void;
    /** Append a text child and return this element. */
    t(text: string): Element;
    remove(el: Element | string, xmlns?: string): Element;
    text(val?: string): string | Element;
    attr(attr: string, val?: string | number | null): string | undefined | Element;
    toString(): string;
    write(writer: (chunk: string) => void): void;
  }

  /** Escapes `& < > " '` (attribute values). */
  export function escapeXML(s: string): string;
  /** Escapes `& < >` (text content). */
  export function escapeXMLText(s: string): string;
  /** Unescapes the five predefined entities and numeric references; throws on anything else. */
  export function unescapeXML(s: string): string;
  export function unescapeXMLText(s: string): string;
}

declare module 'ltx/src/parsers/ltx.js' {
  import { EventEmitter } from 'node:events';

  /**
   * ltx's own streaming tokenizer. Emits `startElement(name, attrs)`, `endElement(name, selfClosing)`
   * and `text(unescapedText)`; never emits `error` (it throws from write() on unknown entities).
   * No reset: `end()` disables the instance.
   */
  export default class SaxLtx extends EventEmitter {
    write(data: string | Buffer): void;
    end(data?: string | Buffer): void;
  }
}
