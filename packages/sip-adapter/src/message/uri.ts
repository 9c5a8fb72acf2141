// SIP/SIPS URIs (RFC 3261 §19.1, §25.1), name-addr / addr-spec with header parameters
// (From, To, Contact, Route, Record-Route: §20.10) and Via (§20.42), parsed into typed values
// and formatted back. Other URI schemes are kept opaque: the layer above answers 416.

import { SipParseError } from '../errors.js';
import {
  escapeUri,
  formatParams,
  isTokenChar,
  isWs,
  type Params,
  quote,
  readParams,
  Scanner,
  trimWs,
  unescapeUri,
  validEscapes,
} from './lexer.js';

export interface SipUri {
  readonly scheme: 'sip' | 'sips';
  /** The user part, %-escapes decoded (RFC 3261 §19.1.4 compares decoded). */
  user: string | undefined;
  password: string | undefined;
  /** Host as written; an IPv6 reference keeps its brackets. */
  host: string;
  port: number | undefined;
  /** uri-parameters: names lower-cased, names and values %-decoded, null when valueless. */
  params: Params;
  /** ?headers of the URI, %-decoded. Never allowed in a Request-URI (§19.1.5). */
  headers: Record<string, string>;
}

/** A URI of another scheme (tel:, http:, isbn:...), kept as its scheme and opaque rest. */
export interface AbsoluteUri {
  readonly scheme: string;
  readonly opaque: string;
}

export type Uri = SipUri | AbsoluteUri;

export function isSipUri(uri: Uri): uri is SipUri {
  return 'host' in uri;
}

/** `[display-name] <uri> *(;param)` or `uri *(;param)`: From, To, Contact, Route... */
export interface NameAddr {
  /** The display name, unquoted and unescaped; undefined when there is none. */
  displayName: string | undefined;
  uri: Uri;
  /** Header parameters (tag, expires, q, ...): names lower-cased, quoted values kept quoted. */
  params: Params;
}

export interface Via {
  /** 'SIP' */
  protocol: string;
  /** '2.0' */
  version: string;
  /** Upper-cased: UDP, TCP, TLS, SCTP, WS, WSS, or an unknown token. */
  transport: string;
  /** sent-by host as written (IPv6 in brackets). */
  host: string;
  port: number | undefined;
  /** Every via-param in order. formatVia writes these; the named fields below are read views. */
  params: Params;
  readonly branch: string | undefined;
  readonly received: string | undefined;
  /** RFC 3581: null when present without a value (a request asking for it). */
  readonly rport: number | null | undefined;
  readonly maddr: string | undefined;
  readonly ttl: number | undefined;
}

// ---- character classes (RFC 3261 §25.1) -------------------------------------------------

const UNRESERVED = new Uint8Array(128);
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()") {
  UNRESERVED[c.charCodeAt(0)] = 1;
}
const charClass = (extra: string) => {
  const t = UNRESERVED.slice();
  for (const c of extra) t[c.charCodeAt(0)] = 1;
  return (c: number) => c < 128 && t[c] === 1;
};
const userChar = charClass('&=+$,;?/');
const passwordChar = charClass('&=+$,');
const paramChar = charClass('[]/:&+$');
const headerChar = charClass('[]/?:+$');
const hostChar = charClass('');
const withEscapes = (cls: (c: number) => boolean) => (c: number) => cls(c) || c === 0x25;

function allChars(s: string, cls: (c: number) => boolean): boolean {
  for (let i = 0; i < s.length; i++) if (!cls(s.charCodeAt(i))) return false;
  return validEscapes(s);
}

const SCHEME = /^[A-Za-z][A-Za-z0-9+\-.]*$/;

function uriError(text: string, why: string): SipParseError {
  return new SipParseError('ERR_SIP_URI', `bad URI "${text.slice(0, 80)}": ${why}`);
}

// ---- URI ----------------------------------------------------------------------------------

/** Parses a URI; throws SipParseError (ERR_SIP_URI) when it is malformed. */
export function parseUri(text: string): Uri {
  const colon = text.indexOf(':');
  if (colon <= 0) throw uriError(text, 'no scheme');
  const scheme = text.slice(0, colon).toLowerCase();
  if (!SCHEME.test(scheme)) throw uriError(text, 'bad scheme');
  if (scheme !== 'sip' && scheme !== 'sips') {
    const opaque = text.slice(colon + 1);
    if (opaque === '' || /[\s<>"]/.test(opaque)) throw uriError(text, 'bad absolute URI');
    return { scheme, opaque };
  }
  return parseSipUri(text, scheme, colon + 1);
}

function parseSipUri(text: string, scheme: 'sip' | 'sips', from: number): SipUri {
  // '@' cannot appear unescaped after the userinfo, so the first one ends it.
  const at = text.indexOf('@', from);
  let user: string | undefined;
  let password: string | undefined;
  let i = from;
  if (at >= 0) {
    const userinfo = text.slice(from, at);
    const pc = userinfo.indexOf(':');
    const u = pc < 0 ? userinfo : userinfo.slice(0, pc);
    if (u === '' || !allChars(u, withEscapes(userChar))) throw uriError(text, 'bad user part');
    user = unescapeUri(u);
    if (pc >= 0) {
      const p = userinfo.slice(pc + 1);
      if (!allChars(p, withEscapes(passwordChar))) throw uriError(text, 'bad password');
      password = unescapeUri(p);
    }
    i = at + 1;
  }
  // host
  const hostStart = i;
  if (text.charCodeAt(i) === 0x5b) {
    const close = text.indexOf(']', i);
    if (close < 0 || !/^\[[0-9A-Fa-f:.]+\]$/.test(text.slice(i, close + 1))) {
      throw uriError(text, 'bad IPv6 reference');
    }
    i = close + 1;
  } else {
    while (i < text.length && hostChar(text.charCodeAt(i))) i++;
  }
  const host = text.slice(hostStart, i);
  if (host === '' || !/^(\[.*\]|[A-Za-z0-9_.-]+)$/.test(host)) throw uriError(text, 'bad host');
  let port: number | undefined;
  if (text.charCodeAt(i) === 0x3a) {
    const m = /^\d{1,5}/.exec(text.slice(i + 1, i + 7));
    if (!m || Number(m[0]) > 65535) throw uriError(text, 'bad port');
    port = Number(m[0]);
    i += 1 + m[0].length;
  }
  const params: Params = {};
  while (text.charCodeAt(i) === 0x3b) {
    let end = i + 1;
    while (end < text.length && text.charCodeAt(end) !== 0x3b && text.charCodeAt(end) !== 0x3f) {
      end++;
    }
    const p = text.slice(i + 1, end);
    const eq = p.indexOf('=');
    const name = eq < 0 ? p : p.slice(0, eq);
    const value = eq < 0 ? null : p.slice(eq + 1);
    if (name === '' || !allChars(name, withEscapes(paramChar)))
      throw uriError(text, 'bad parameter');
    if (value !== null && (value === '' || !allChars(value, withEscapes(paramChar)))) {
      throw uriError(text, 'bad parameter value');
    }
    params[unescapeUri(name).toLowerCase()] = value === null ? null : unescapeUri(value);
    i = end;
  }
  const headers: Record<string, string> = {};
  if (text.charCodeAt(i) === 0x3f) {
    for (const h of text.slice(i + 1).split('&')) {
      const eq = h.indexOf('=');
      const name = eq < 0 ? h : h.slice(0, eq);
      const value = eq < 0 ? '' : h.slice(eq + 1);
      if (name === '' || !allChars(name, withEscapes(headerChar)))
        throw uriError(text, 'bad header');
      if (!allChars(value, withEscapes(headerChar))) throw uriError(text, 'bad header value');
      headers[unescapeUri(name)] = unescapeUri(value);
    }
    i = text.length;
  }
  if (i !== text.length) throw uriError(text, `unexpected "${text[i]}"`);
  return { scheme, user, password, host, port, params, headers };
}

/** uri-parameters that, present in one URI only, make two URIs differ (§19.1.4). */
const PARAMS_NEVER_IGNORED = ['user', 'ttl', 'method', 'maddr'];

/**
 * Whether two SIP URIs are equal by RFC 3261 §19.1.4: user and password case-sensitively,
 * the rest case-insensitively; a port only with the same port, none only with none; each
 * parameter both carry with the same value, user, ttl, method and maddr in both or neither,
 * others carried by one only ignored; the same headers.
 */
export function sipUrisEqual(a: SipUri, b: SipUri): boolean {
  if (a.scheme !== b.scheme || a.user !== b.user || a.password !== b.password) return false;
  if (a.host.toLowerCase() !== b.host.toLowerCase() || a.port !== b.port) return false;
  const value = (v: string | null | undefined) => (v == null ? v : v.toLowerCase());
  for (const [name, v] of Object.entries(a.params)) {
    if (name in b.params ? value(v) !== value(b.params[name]) : PARAMS_NEVER_IGNORED.includes(name))
      return false;
  }
  if (PARAMS_NEVER_IGNORED.some((name) => name in b.params && !(name in a.params))) return false;
  const ha = Object.entries(a.headers);
  if (ha.length !== Object.keys(b.headers).length) return false;
  return ha.every(([name, v]) => {
    const other = Object.entries(b.headers).find(([n]) => n.toLowerCase() === name.toLowerCase());
    return other !== undefined && other[1] === v;
  });
}

export function formatUri(uri: Uri): string {
  if (!isSipUri(uri)) return `${uri.scheme}:${uri.opaque}`;
  let s = `${uri.scheme}:`;
  if (uri.user !== undefined) {
    s += escapeUri(uri.user, userChar);
    if (uri.password !== undefined) s += `:${escapeUri(uri.password, passwordChar)}`;
    s += '@';
  }
  s += uri.host;
  if (uri.port !== undefined) s += `:${uri.port}`;
  for (const name in uri.params) {
    const v = uri.params[name];
    s += `;${escapeUri(name, paramChar)}`;
    if (v !== null && v !== undefined) s += `=${escapeUri(v, paramChar)}`;
  }
  const hs = Object.entries(uri.headers);
  if (hs.length > 0) {
    s += `?${hs.map(([k, v]) => `${escapeUri(k, headerChar)}=${escapeUri(v, headerChar)}`).join('&')}`;
  }
  return s;
}

// ---- name-addr / addr-spec ----------------------------------------------------------------

function headerError(header: string, value: string, why: string): SipParseError {
  return new SipParseError('ERR_SIP_HEADER', `bad ${header} "${value.slice(0, 80)}": ${why}`, {
    header,
  });
}

function readNameAddr(sc: Scanner, header: string): NameAddr {
  const s = sc.s;
  sc.skipWs();
  let displayName: string | undefined;
  if (sc.peek() === 0x22) {
    displayName = sc.quoted();
    if (displayName === undefined) throw headerError(header, s, 'unbalanced quotes');
    sc.skipWs();
    if (sc.peek() !== 0x3c) throw headerError(header, s, 'display name without <uri>');
  } else if (sc.peek() !== 0x3c) {
    // A run of tokens and LWS right before '<' is a display name; anything else is addr-spec.
    let j = sc.i;
    while (j < s.length && (isTokenChar(s.charCodeAt(j)) || isWs(s.charCodeAt(j)))) j++;
    if (s.charCodeAt(j) === 0x3c) {
      displayName = trimWs(s.slice(sc.i, j));
      sc.i = j;
    }
  }
  let uri: Uri;
  try {
    if (sc.peek() === 0x3c) {
      const close = s.indexOf('>', sc.i);
      if (close < 0) throw headerError(header, s, 'missing ">"');
      uri = parseUri(s.slice(sc.i + 1, close)); // LWS inside <> is illegal (RFC 4475 badaspec)
      sc.i = close + 1;
    } else {
      // addr-spec: ';' ',' and '?' belong to the header, so such URIs need <> (§20)
      const start = sc.i;
      while (sc.i < s.length) {
        const c = s.charCodeAt(sc.i);
        if (c === 0x3b || c === 0x2c || isWs(c)) break;
        sc.i++;
      }
      const text = s.slice(start, sc.i);
      if (text === '') throw headerError(header, s, 'no URI');
      uri = parseUri(text);
      if (isSipUri(uri) && Object.keys(uri.headers).length > 0) {
        throw headerError(header, s, 'a URI with ?headers must be in <>');
      }
    }
  } catch (err) {
    if (err instanceof SipParseError && err.code === 'ERR_SIP_URI') {
      throw headerError(header, s, err.message);
    }
    throw err;
  }
  const params: Params = {};
  if (!readParams(sc, params)) throw headerError(header, s, 'bad parameter');
  return { displayName, uri, params };
}

/** Parses one name-addr or addr-spec with its parameters (From, To, Refer-To...). */
export function parseNameAddr(value: string, header = 'name-addr'): NameAddr {
  const sc = new Scanner(value);
  const na = readNameAddr(sc, header);
  sc.skipWs();
  if (!sc.done) throw headerError(header, value, `unexpected "${value[sc.i]}"`);
  return na;
}

/** Parses a comma-separated list of name-addrs (Contact, Route, Record-Route, Path). */
export function parseNameAddrList(value: string, header = 'name-addr'): NameAddr[] {
  const sc = new Scanner(value);
  const out: NameAddr[] = [];
  do {
    out.push(readNameAddr(sc, header));
  } while (sc.eat(0x2c));
  if (!sc.done) throw headerError(header, value, `unexpected "${value[sc.i]}"`);
  return out;
}

/** Always writes the <uri> form, which is never ambiguous. */
export function formatNameAddr(na: NameAddr): string {
  const name =
    na.displayName === undefined || na.displayName === '' ? '' : `${quote(na.displayName)} `;
  return `${name}<${formatUri(na.uri)}>${formatParams(na.params)}`;
}

// ---- Via ----------------------------------------------------------------------------------

function readVia(sc: Scanner, value: string): Via {
  sc.skipWs();
  const protocol = sc.token();
  if (protocol === '' || !sc.eat(0x2f)) throw headerError('via', value, 'bad sent-protocol');
  const version = sc.token();
  if (version === '' || !sc.eat(0x2f)) throw headerError('via', value, 'bad sent-protocol');
  const transport = sc.token().toUpperCase();
  if (transport === '') throw headerError('via', value, 'no transport');
  sc.skipWs();
  const s = sc.s;
  const hostStart = sc.i;
  if (sc.peek() === 0x5b) {
    const close = s.indexOf(']', sc.i);
    if (close < 0) throw headerError('via', value, 'bad IPv6 reference');
    sc.i = close + 1;
  } else {
    while (sc.i < s.length && /[A-Za-z0-9_.-]/.test(s[sc.i] as string)) sc.i++;
  }
  const host = s.slice(hostStart, sc.i);
  if (host === '') throw headerError('via', value, 'no sent-by host');
  let port: number | undefined;
  if (sc.eat(0x3a)) {
    const digits = /^\d{1,5}/.exec(s.slice(sc.i, sc.i + 6))?.[0];
    if (digits === undefined || Number(digits) > 65535) throw headerError('via', value, 'bad port');
    port = Number(digits);
    sc.i += digits.length;
  }
  const params: Params = {};
  if (!readParams(sc, params)) throw headerError('via', value, 'bad parameter');
  return viaFrom(protocol, version, transport, host, port, params);
}

function viaFrom(
  protocol: string,
  version: string,
  transport: string,
  host: string,
  port: number | undefined,
  params: Params,
): Via {
  const rport = params.rport;
  const ttl = params.ttl;
  return {
    protocol,
    version,
    transport,
    host,
    port,
    params,
    branch: params.branch ?? undefined,
    received: params.received ?? undefined,
    rport: rport === undefined ? undefined : rport === null ? null : Number(rport),
    maddr: params.maddr ?? undefined,
    ttl: ttl === undefined || ttl === null ? undefined : Number(ttl),
  };
}

/** Parses one Via header value: one or more comma-separated via-parms. */
export function parseVia(value: string): Via[] {
  const sc = new Scanner(value);
  const out: Via[] = [];
  do {
    out.push(readVia(sc, value));
  } while (sc.eat(0x2c));
  if (!sc.done) throw headerError('via', value, `unexpected "${value[sc.i]}"`);
  return out;
}

export interface CreateViaOptions {
  transport: string;
  host: string;
  port?: number;
  branch: string;
  /** Ask for RFC 3581 rport (default true). */
  rport?: boolean;
  params?: Params;
}

/** A Via for a request we send: SIP/2.0, our sent-by, a branch, ;rport by default. */
export function createVia(o: CreateViaOptions): Via {
  const params: Params = { branch: o.branch };
  if (o.rport !== false) params.rport = null;
  Object.assign(params, o.params);
  return viaFrom('SIP', '2.0', o.transport.toUpperCase(), o.host, o.port, params);
}

/** Writes `SIP/2.0/UDP host:port;params` from the protocol fields and `params`. */
export function formatVia(via: Via): string {
  const port = via.port === undefined ? '' : `:${via.port}`;
  return `${via.protocol}/${via.version}/${via.transport} ${via.host}${port}${formatParams(via.params)}`;
}
