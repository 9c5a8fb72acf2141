// Just enough SIP syntax to find message boundaries: whether a start line looks like SIP, where
// the header block ends and what Content-Length says. Parsing proper belongs to message/.

import { isIP } from 'node:net';

export const CRLF = Buffer.from('\r\n');
export const CRLFCRLF = Buffer.from('\r\n\r\n');

// RFC 3261 §25.1: Method is a token; SIP-Version "SIP/" 1*DIGIT "." 1*DIGIT (case-insensitive;
// a request of another version is answered 505 above); Status-Code 3 digits. What only looks
// like a request line (LWS in the Request-URI, more than one SP between the parts or after the
// version: RFC 4475 §3.1.2.8-10) is SIP all the same, for the parser to answer 400. Each
// pattern runs in time linear in the line (a 64 kB line of spaces must not cost seconds).
const METHOD_AND_LWS = /^[A-Za-z0-9.!%*_+`'~-]+[ \t]+(?=\S)/;
const LWS_AND_VERSION = /[ \t]SIP\/\d{1,3}\.\d{1,3}(?=[ \t]|$)/i;
const STATUS_LINE = /^SIP\/2\.0 [1-6][0-9][0-9](?: .*)?$/i;
const CONTENT_LENGTH = /^(?:content-length|l)[ \t]*:[ \t]*([^ \t]*)[ \t]*$/i;

/** True when `line` (without its CRLF) is a SIP request line or status line, or looks like one. */
export function looksLikeSipStartLine(line: string): boolean {
  if (STATUS_LINE.test(line)) return true;
  const method = METHOD_AND_LWS.exec(line);
  return method !== null && LWS_AND_VERSION.test(line.slice(method[0].length));
}

export type ContentLength =
  | { readonly kind: 'value'; readonly length: number }
  | { readonly kind: 'missing' }
  | { readonly kind: 'invalid'; readonly value: string };

/**
 * The Content-Length of a header block (latin1 text, folded lines allowed). Several headers
 * with different values are invalid: that ambiguity is how requests get smuggled.
 */
export function contentLengthOf(headerBlock: string): ContentLength {
  const folded = headerBlock.includes('\r\n ') || headerBlock.includes('\r\n\t');
  const unfolded = folded ? headerBlock.replace(/\r\n[ \t]+/g, ' ') : headerBlock;
  let found: number | undefined;
  for (const line of unfolded.split('\r\n')) {
    // Only "Content-Length" and its compact form "l" can match: other lines skip the pattern.
    const first = line.charCodeAt(0) | 0x20;
    if (first !== 0x63 && first !== 0x6c) continue;
    const m = CONTENT_LENGTH.exec(line);
    if (!m) continue;
    const value = m[1] as string;
    if (!/^[0-9]{1,10}$/.test(value)) return { kind: 'invalid', value };
    const length = Number(value);
    if (found !== undefined && found !== length) {
      return { kind: 'invalid', value: `${found} and ${length}` };
    }
    found = length;
  }
  return found === undefined ? { kind: 'missing' } : { kind: 'value', length: found };
}

export type DatagramVerdict =
  | { readonly kind: 'message'; readonly data: Buffer }
  | { readonly kind: 'keepalive' }
  | { readonly kind: 'malformed'; readonly reason: string };

/**
 * One message from a message-oriented transport (a UDP datagram, a WebSocket frame). Leading
 * CRLFs are dropped (RFC 3261 §7.5); a payload of only CRLFs is a keepalive. Content-Length is
 * optional here; bytes past it are discarded (RFC 3261 §18.3). A bad Content-Length, or a body
 * shorter than it, leaves the whole payload to the parser, which refuses it with a 400 the
 * sender can be sent (§18.3: "the server SHOULD respond with a 400").
 */
export function classifyDatagram(payload: Buffer): DatagramVerdict {
  let start = 0;
  while (start < payload.length && (payload[start] === 0x0d || payload[start] === 0x0a)) start++;
  if (payload.length === 0) return { kind: 'malformed', reason: 'empty' };
  if (start === payload.length) return { kind: 'keepalive' };
  const data = start === 0 ? payload : payload.subarray(start);
  const lineEnd = data.indexOf(CRLF);
  if (lineEnd < 0 || !looksLikeSipStartLine(data.toString('latin1', 0, lineEnd))) {
    return { kind: 'malformed', reason: 'not a SIP start line' };
  }
  const headerEnd = data.indexOf(CRLFCRLF, lineEnd);
  // Cut before the blank line: still the whole message a datagram or frame holds (RFC 3261
  // §18.3); the parser answers it 400 where it holds what a response needs.
  if (headerEnd < 0) return { kind: 'message', data };
  const bodyStart = headerEnd + 4;
  const cl = contentLengthOf(data.toString('latin1', 0, headerEnd));
  if (cl.kind !== 'value' || data.length - bodyStart < cl.length) return { kind: 'message', data };
  return { kind: 'message', data: data.subarray(0, bodyStart + cl.length) };
}

/** "1.2.3.4" from "::ffff:1.2.3.4": how a dual-stack socket reports an IPv4 peer. */
export function unmapIPv4(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/** Canonical "ip:port" ("[v6]:port") key of a remote end, for finding its connection. */
export function endpointKey(address: string, port: number): string {
  const ip = unmapIPv4(address);
  return isIP(ip) === 6 ? `[${ip.toLowerCase()}]:${port}` : `${ip}:${port}`;
}
