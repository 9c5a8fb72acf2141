// Typed values of the headers a registrar and a proxy act on: CSeq, Max-Forwards, Expires,
// Contact (including `*`), Route / Record-Route, and the Contact parameters expires and q.

import { MAX_CSEQ, MAX_EXPIRES, MAX_MAX_FORWARDS } from '../constants.js';
import { SipParseError } from '../errors.js';
import { isToken, trimWs } from './lexer.js';
import { type NameAddr, parseNameAddrList } from './uri.js';

export interface CSeq {
  /** 0 .. 2**31-1 (RFC 3261 §8.1.1.5). */
  seq: number;
  method: string;
}

const CSEQ = /^(\d{1,10})[ \t]+(\S+)$/;

/** Parses `CSeq: 4711 INVITE`; throws SipParseError (ERR_SIP_CSEQ). */
export function parseCSeq(value: string): CSeq {
  const m = CSEQ.exec(trimWs(value));
  const seq = m ? Number(m[1]) : Number.NaN;
  const method = m?.[2] ?? '';
  if (!m || seq > MAX_CSEQ || !isToken(method)) {
    throw new SipParseError('ERR_SIP_CSEQ', `bad CSeq "${value.slice(0, 80)}"`, { header: 'cseq' });
  }
  return { seq, method };
}

export function formatCSeq(cseq: CSeq): string {
  return `${cseq.seq} ${cseq.method}`;
}

/** Parses Max-Forwards (0..255, RFC 3261 §20.22); throws SipParseError (ERR_SIP_HEADER). */
export function parseMaxForwards(value: string): number {
  const v = trimWs(value);
  const n = /^\d{1,10}$/.test(v) ? Number(v) : Number.NaN; // "0068" is legal
  if (!(n <= MAX_MAX_FORWARDS)) {
    throw new SipParseError('ERR_SIP_HEADER', `bad Max-Forwards "${value.slice(0, 80)}"`, {
      header: 'max-forwards',
    });
  }
  return n;
}

/**
 * Parses delta-seconds (Expires header, Contact expires=). Values above 2**32-1 are read as
 * 2**32-1 (RFC 3261 §20.19, RFC 4475 §3.1.2.4); the registrar then applies its own maximum.
 */
export function parseExpires(value: string, header = 'expires'): number {
  const v = trimWs(value);
  if (!/^\d+$/.test(v)) {
    throw new SipParseError('ERR_SIP_HEADER', `bad ${header} "${value.slice(0, 80)}"`, { header });
  }
  return v.length > 10 ? MAX_EXPIRES : Math.min(Number(v), MAX_EXPIRES);
}

/** Contact values: the bindings, or `*` (REGISTER removing all bindings, RFC 3261 §10.2.2). */
export type ContactList = '*' | NameAddr[];

/** Parses every Contact line; `*` must stand alone. Throws SipParseError (ERR_SIP_HEADER). */
export function parseContacts(values: readonly string[]): ContactList {
  if (values.some((v) => trimWs(v) === '*')) {
    if (values.length !== 1) {
      throw new SipParseError('ERR_SIP_HEADER', 'Contact: * mixed with other contacts', {
        header: 'contact',
      });
    }
    return '*';
  }
  return values.flatMap((v) => parseNameAddrList(v, 'contact'));
}

/** Parses every line of a Route, Record-Route or Path header, in order. */
export function parseRoutes(values: readonly string[], header = 'route'): NameAddr[] {
  return values.flatMap((v) => parseNameAddrList(v, header));
}

/** A Contact's expires= parameter, or undefined (then the Expires header applies). */
export function contactExpires(contact: NameAddr): number | undefined {
  const v = contact.params.expires;
  return v === undefined || v === null ? undefined : parseExpires(v, 'contact expires');
}

/** A Contact's q= preference (0..1, RFC 3261 §20.10), or undefined. */
export function contactQ(contact: NameAddr): number | undefined {
  const v = contact.params.q;
  if (v === undefined || v === null) return undefined;
  const q = /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(v) ? Number(v) : Number.NaN;
  if (Number.isNaN(q)) {
    throw new SipParseError('ERR_SIP_HEADER', `bad Contact q "${v}"`, { header: 'contact' });
  }
  return q;
}

/** The option-tags of Require / Proxy-Require / Supported lines (RFC 3261 §20.32), in order. */
export function optionTags(values: readonly string[]): string[] {
  return values
    .flatMap((v) => v.split(','))
    .map((t) => trimWs(t))
    .filter((t) => t !== '');
}
