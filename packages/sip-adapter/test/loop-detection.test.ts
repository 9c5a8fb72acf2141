// Loop detection (RFC 3261 §16.3 step 4): a request that comes back to this node unchanged is
// a loop; one that comes back changed (a new Request-URI: a spiral) is forwarded again.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isLoop, loopHash, parseSipMessage, proxyBranch, type SipRequest } from '../src/index.js';
import { VIA_NODE_PARAM } from '../src/proxy/constants.js';
import { msg } from './fixtures/torture.js';

const NODE = 'ab'.repeat(32);

const invite = (uri = 'sip:bob@peerbx.local', extra: string[] = []) =>
  parseSipMessage(
    msg([
      `INVITE ${uri} SIP/2.0`,
      'Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-phone',
      'From: <sip:alice@peerbx.local>;tag=a1',
      'To: <sip:bob@peerbx.local>',
      'Call-ID: loop-1@127.0.0.1',
      'CSeq: 7 INVITE',
      'Max-Forwards: 70',
      ...extra,
      'Content-Length: 0',
    ]),
  ) as SipRequest;

/** The request as this node forwards it: our Via on top, its branch carrying the loop hash. */
function forwarded(request: SipRequest, node = NODE): SipRequest {
  const out = request.copy();
  out.headers.prepend(
    'Via',
    `SIP/2.0/TCP 127.0.0.1:5060;branch=${proxyBranch(loopHash(out))};${VIA_NODE_PARAM}=${node}`,
  );
  return out;
}

describe('loop detection', () => {
  it('hashes what identifies the request, and nothing else', () => {
    const a = loopHash(invite());
    assert.match(a, /^[0-9a-f]{10}$/);
    assert.equal(loopHash(invite()), a);
    assert.equal(loopHash(invite('sip:bob@peerbx.local', ['Subject: other'])), a);
    assert.notEqual(loopHash(invite('sip:bob@10.0.0.7:5070')), a);
    assert.notEqual(loopHash(invite('sip:bob@peerbx.local', ['Proxy-Require: foo'])), a);
    const later = invite();
    later.headers.set('CSeq', '8 INVITE');
    assert.notEqual(loopHash(later), a);
  });

  it('finds a request that came back unchanged, not a spiral nor another node', () => {
    const back = forwarded(invite());
    assert.equal(isLoop(back, NODE), true);
    // A spiral: our Via, but the request was retargeted (a new Request-URI) on its way back.
    const spiral = back.copy();
    spiral.uri = 'sip:bob@127.0.0.1:5070';
    assert.equal(isLoop(spiral, NODE), false);
    assert.equal(isLoop(forwarded(invite(), 'cd'.repeat(32)), NODE), false);
    assert.equal(isLoop(invite(), NODE), false);
  });
});
