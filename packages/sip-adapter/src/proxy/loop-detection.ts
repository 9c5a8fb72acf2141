// Loop detection (RFC 3261 §16.3 step 4, §16.6 step 8): the branch of every Via this node adds
// carries a hash of the fields that identify the request's routing. A request arriving with one
// of our Vias whose hash equals the request's own has come round unchanged: a loop, not a spiral.

import { createHash } from 'node:crypto';
import { BRANCH_MAGIC_COOKIE } from '../constants.js';
import { generateBranch } from '../message/ids.js';
import type { SipRequest } from '../message/sip-message.js';
import { VIA_NODE_PARAM } from './constants.js';

export function loopHash(request: SipRequest): string {
  const h = createHash('sha256');
  h.update(
    [
      request.uri,
      request.fromTag ?? '',
      request.toTag ?? '',
      request.callId,
      String(request.cseq.seq),
      request.headers.getAll('proxy-require').join(','),
    ].join('\n'),
  );
  return h.digest('hex').slice(0, 10);
}

/** A fresh RFC 3261 branch carrying the loop hash of the request as forwarded. */
export function proxyBranch(forwarded: SipRequest): string {
  return `${BRANCH_MAGIC_COOKIE}${loopHash(forwarded)}-${generateBranch().slice(BRANCH_MAGIC_COOKIE.length)}`;
}

/** True when a Via of ours carries the loop hash of the request as it arrived now. */
export function isLoop(request: SipRequest, nodeHex: string): boolean {
  const ours = request.via.filter((v) => v.params[VIA_NODE_PARAM] === nodeHex);
  if (ours.length === 0) return false;
  const hash = loopHash(request);
  return ours.some((v) => v.branch?.startsWith(`${BRANCH_MAGIC_COOKIE}${hash}-`) === true);
}
