// The lexical pieces of the RFC 3261 §25 grammar shared by URIs, name-addrs and Via:
// character classes, LWS, tokens, quoted strings, %-escapes and generic parameters.

const TOKEN = new Uint8Array(128);
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~") {
  TOKEN[c.charCodeAt(0)] = 1;
}

export function isTokenChar(c: number): boolean {
  return c < 128 && TOKEN[c] === 1;
}

export function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (!isTokenChar(s.charCodeAt(i))) return false;
  return true;
}

export function isWs(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/** Trims SP and HTAB only: String#trim would also eat U+FEFF and other Unicode spaces. */
export function trimWs(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isWs(s.charCodeAt(a))) a++;
  while (b > a && isWs(s.charCodeAt(b - 1))) b--;
  return a === 0 && b === s.length ? s : s.slice(a, b);
}

/** A cursor over one header value; every parse function moves `i` past what it read. */
export class Scanner {
  i = 0;
  constructor(readonly s: string) {}

  get done(): boolean {
    return this.i >= this.s.length;
  }

  peek(): number {
    return this.i < this.s.length ? this.s.charCodeAt(this.i) : -1;
  }

  skipWs(): void {
    while (this.i < this.s.length && isWs(this.s.charCodeAt(this.i))) this.i++;
  }

  /** Skips LWS, then the character `c` if it is next; says whether it was. */
  eat(c: number): boolean {
    this.skipWs();
    if (this.peek() !== c) return false;
    this.i++;
    this.skipWs();
    return true;
  }

  token(): string {
    const start = this.i;
    while (this.i < this.s.length && isTokenChar(this.s.charCodeAt(this.i))) this.i++;
    return this.s.slice(start, this.i);
  }

  /** A quoted-string at the cursor (which is on the opening quote): its unescaped content. */
  quoted(): string | undefined {
    let out = '';
    let from = ++this.i;
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if (c === 0x22) {
        out += this.s.slice(from, this.i++);
        return out;
      }
      if (c === 0x5c) {
        // quoted-pair: any char but CR and LF (RFC 3261 §25.1)
        const next = this.s.charCodeAt(this.i + 1);
        if (Number.isNaN(next) || next === 0x0a || next === 0x0d) return undefined;
        out += this.s.slice(from, this.i) + this.s[this.i + 1];
        this.i += 2;
        from = this.i;
        continue;
      }
      this.i++;
    }
    return undefined;
  }

  /** The raw text of a quoted-string including its quotes (kept as-is in parameter values). */
  rawQuoted(): string | undefined {
    const start = this.i;
    return this.quoted() === undefined ? undefined : this.s.slice(start, this.i);
  }
}

export type Params = Record<string, string | null>;

// gen-value = token / host / quoted-string: token chars plus ':' '[' ']' for IPv6 hosts.
function isGenValueChar(c: number): boolean {
  return isTokenChar(c) || c === 0x3a || c === 0x5b || c === 0x5d;
}

/**
 * `*( SEMI generic-param )` at the cursor, into `params` (names lower-cased, quoted values
 * kept with their quotes). Stops before anything that is not `;`. Returns false on a
 * malformed parameter (an empty name, a missing value after `=`).
 */
export function readParams(sc: Scanner, params: Params): boolean {
  for (;;) {
    const save = sc.i;
    sc.skipWs();
    if (sc.peek() !== 0x3b) {
      sc.i = save;
      return true;
    }
    sc.i++;
    sc.skipWs();
    const name = sc.token();
    if (name === '') return false;
    const afterName = sc.i;
    sc.skipWs();
    if (sc.peek() === 0x3d) {
      sc.i++;
      sc.skipWs();
      let value: string | undefined;
      if (sc.peek() === 0x22) value = sc.rawQuoted();
      else {
        const start = sc.i;
        while (sc.i < sc.s.length && isGenValueChar(sc.s.charCodeAt(sc.i))) sc.i++;
        value = sc.s.slice(start, sc.i);
      }
      if (value === undefined || value === '') return false;
      params[name.toLowerCase()] = value;
    } else {
      sc.i = afterName;
      params[name.toLowerCase()] = null;
    }
  }
}

export function formatParams(params: Params): string {
  let s = '';
  for (const name in params) {
    const v = params[name];
    s += v === null || v === undefined ? `;${name}` : `;${name}=${v}`;
  }
  return s;
}

/** Removes the quotes and quoted-pair escapes of a parameter value kept as received. */
export function unquote(value: string): string {
  if (value.length < 2 || value.charCodeAt(0) !== 0x22) return value;
  const sc = new Scanner(value);
  return sc.quoted() ?? value;
}

/** Wraps a display name in quotes, escaping `"` and `\` (RFC 3261 §25.1 quoted-pair). */
export function quote(text: string): string {
  return `"${text.replace(/["\\]/g, '\\$&')}"`;
}

const HEX = /^[0-9A-Fa-f]{2}$/;

/** True if every `%` starts a valid escape. */
export function validEscapes(s: string): boolean {
  for (let i = s.indexOf('%'); i >= 0; i = s.indexOf('%', i + 1)) {
    if (!HEX.test(s.slice(i + 1, i + 3))) return false;
  }
  return true;
}

/** Decodes %-escapes (RFC 3261 §19.1.4); bytes that are not UTF-8 become one char each. */
export function unescapeUri(s: string): string {
  if (!s.includes('%')) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    return s.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
  }
}

/** %-escapes every char of `s` for which `allowed` is false (UTF-8 bytes for non-ASCII). */
export function escapeUri(s: string, allowed: (c: number) => boolean): string {
  let plain = true;
  for (let i = 0; i < s.length; i++) {
    if (!allowed(s.charCodeAt(i))) {
      plain = false;
      break;
    }
  }
  if (plain) return s;
  let out = '';
  for (const ch of s) {
    const c = ch.charCodeAt(0);
    if (ch.length === 1 && allowed(c)) out += ch;
    else
      for (const b of Buffer.from(ch, 'utf8'))
        out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
