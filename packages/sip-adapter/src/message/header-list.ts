// The ordered header fields of one message, looked up by any spelling of a name. Values are
// kept as received (folding undone), so a proxy forwards what it did not change byte for byte.

import { headerKey } from './header-names.js';
import { trimWs } from './lexer.js';

export interface SipHeaderField {
  /** Lower-case full name: 'call-id' for 'i', 'Call-Id' or 'CALL-ID'. */
  readonly key: string;
  /** The name as received or given. */
  readonly name: string;
  readonly value: string;
}

export class SipHeaders implements Iterable<SipHeaderField> {
  /**
   * How the values go back to bytes: 'latin1' when they came from a header block that was no
   * UTF-8, read a byte a character, so that a proxy forwards those bytes as they came (RFC
   * 3261 §16.6) instead of replacement characters.
   */
  encoding: 'utf8' | 'latin1' = 'utf8';
  private fields: SipHeaderField[] = [];
  /**
   * Per header key, bumped on every change of that header: a message's parsed view of a
   * header (its Vias, its From) stays good while its revision does.
   */
  private revisions = new Map<string, number>();

  /** The revision of one header (by key); changes whenever a line of it changes. */
  revisionOf(key: string): number {
    return this.revisions.get(key) ?? 0;
  }

  private changed(key: string): void {
    this.revisions.set(key, (this.revisions.get(key) ?? 0) + 1);
  }

  constructor(fields?: Iterable<{ name: string; value: string }>) {
    if (fields) for (const f of fields) this.append(f.name, f.value);
  }

  get size(): number {
    return this.fields.length;
  }

  has(name: string): boolean {
    const key = headerKey(name);
    return this.fields.some((f) => f.key === key);
  }

  /** The first value of a header, or undefined. */
  get(name: string): string | undefined {
    const key = headerKey(name);
    for (const f of this.fields) if (f.key === key) return f.value;
    return undefined;
  }

  /** Every value of a header, one per header line, in order. */
  getAll(name: string): string[] {
    const key = headerKey(name);
    const out: string[] = [];
    for (const f of this.fields) if (f.key === key) out.push(f.value);
    return out;
  }

  /**
   * The comma-separated elements of a list header over all its lines (RFC 3261 §7.3.1),
   * splitting outside quoted strings and angle brackets.
   */
  getList(name: string): string[] {
    const out: string[] = [];
    for (const v of this.getAll(name)) for (const item of splitList(v)) out.push(item);
    return out;
  }

  count(name: string): number {
    const key = headerKey(name);
    let n = 0;
    for (const f of this.fields) if (f.key === key) n++;
    return n;
  }

  /** Appends one header line at the end. */
  append(name: string, value: string): this {
    const key = headerKey(name);
    this.fields.push({ key, name, value });
    this.changed(key);
    return this;
  }

  /** Inserts one header line above the first of its name (a proxy's Via), else at the top. */
  prepend(name: string, value: string): this {
    const key = headerKey(name);
    const i = this.fields.findIndex((f) => f.key === key);
    this.fields.splice(Math.max(0, i), 0, { key, name, value });
    this.changed(key);
    return this;
  }

  /** Replaces every line of a header by one line, where the first one was (else at the end). */
  set(name: string, value: string): this {
    const key = headerKey(name);
    const i = this.fields.findIndex((f) => f.key === key);
    if (i < 0) return this.append(name, value);
    this.fields[i] = { key, name, value };
    this.fields = this.fields.filter((f, j) => j <= i || f.key !== key);
    this.changed(key);
    return this;
  }

  /** Removes every line of a header; returns how many went. */
  delete(name: string): number {
    const key = headerKey(name);
    const before = this.fields.length;
    this.fields = this.fields.filter((f) => f.key !== key);
    if (this.fields.length !== before) this.changed(key);
    return before - this.fields.length;
  }

  /**
   * Removes the first element of a list header (the top Via of a response, the Route a proxy
   * consumed), splitting a comma-separated line if needed. Returns the removed element.
   */
  shift(name: string): string | undefined {
    const key = headerKey(name);
    const i = this.fields.findIndex((f) => f.key === key);
    const field = this.fields[i];
    if (!field) return undefined;
    const [first, ...rest] = splitList(field.value);
    if (rest.length === 0) this.fields.splice(i, 1);
    else this.fields[i] = { ...field, value: rest.join(', ') };
    this.changed(key);
    return first;
  }

  clone(): SipHeaders {
    const copy = new SipHeaders();
    copy.encoding = this.encoding;
    copy.fields = this.fields.slice();
    copy.revisions = new Map(this.revisions);
    return copy;
  }

  [Symbol.iterator](): Iterator<SipHeaderField> {
    return this.fields[Symbol.iterator]();
  }

  /** @internal Fast path for the parser: the name is already known to be a token. */
  pushParsed(name: string, value: string): void {
    this.fields.push({ key: headerKey(name), name, value });
  }
}

/** Splits a header value at commas that are outside "quoted strings" and <angle brackets>. */
export function splitList(value: string): string[] {
  if (!value.includes(',')) {
    const t = trimWs(value);
    return t === '' ? [] : [t];
  }
  const out: string[] = [];
  let start = 0;
  let quoted = false;
  let angle = false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (quoted) {
      if (c === 0x5c) i++;
      else if (c === 0x22) quoted = false;
    } else if (c === 0x22) quoted = true;
    else if (c === 0x3c) angle = true;
    else if (c === 0x3e) angle = false;
    else if (c === 0x2c && !angle) {
      const item = trimWs(value.slice(start, i));
      if (item !== '') out.push(item);
      start = i + 1;
    }
  }
  const last = trimWs(value.slice(start));
  if (last !== '') out.push(last);
  return out;
}
