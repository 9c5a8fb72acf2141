// Loop detection (RFC 3261 §16.3 step 4, §16.6 step 8): the branch of every Via this node adds
// carries a hash of the fields that identify the request's routing. A request arriving with one
// of our Vias whose hash equals the request's own has come round unchanged: a loop, not a spiral.
// The hash need not resist forgery: only this node makes and checks it, and a sender who forges
// a match only gets a 482 for its own request. So it is computed here (two 32-bit FNV-1a lanes),
// not by an OpenSSL call, which costs some 50 µs on the first request after an idle spell.
import { BRANCH_MAGIC_COOKIE } from '../constants.js';
import { generateBranch } from '../message/ids.js';
import type { SipRequest } from '../message/sip-message.js';
import { VIA_NODE_PARAM } from './constants.js';

export function loopHash(request: SipRequest): string {
  const text = [
    request.uri,
    request.fromTag ?? '',
    request.toTag ?? '',
    request.callId,
    String(request.cseq.seq),
    request.headers.getAll('proxy-require').join(','),
  ].join('\n');
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  const hex = (x: number) => (x >>> 0).toString(16).padStart(8, '0');
  return (hex(a) + hex(b)).slice(0, 10);
}

/**
 * A fresh RFC 3261 branch carrying a loop hash: of the request as this node received it,
 * before its Request-URI was retargeted (§16.6 step 8), for a request it proxies. The same
 * request arriving again matches it, however each hop retargeted it between: two nodes sending
 * a call to each other (a user registered at one with the other's address as Contact) meet a
 * 482 at the second arrival, not after 70 hops each.
 */
export function proxyBranch(hash: string): string {
  return `${BRANCH_MAGIC_COOKIE}${hash}-${generateBranch().slice(BRANCH_MAGIC_COOKIE.length)}`;
}

/** True when a Via of ours carries the loop hash of the request as it arrived now. */
export function isLoop(request: SipRequest, nodeHex: string): boolean {
  const ours = request.via.filter((v) => v.params[VIA_NODE_PARAM] === nodeHex);
  if (ours.length === 0) return false;
  const hash = loopHash(request);
  return ours.some((v) => v.branch?.startsWith(`${BRANCH_MAGIC_COOKIE}${hash}-`) === true);
}
