// REGISTER from a real SIPp phone to a SipNode over UDP on 127.0.0.1: 200 with the binding
// (and it reaches the overlay), 423 then success with Min-Expires, and 403 when another node's
// user key already owns the name. Skipped, with the reason, where sipp is not installed.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KIND_SIP_REGISTRATION } from '@peerbx/overlay-core';
import type { PeerNode } from './fixtures/sipp.js';
import { sippSkipReason, TestBed } from './fixtures/test-bed.js';

const missing = sippSkipReason('SIPp REGISTER tests');

describe('REGISTER with SIPp', { skip: missing }, () => {
  const bed = new TestBed('peerbx-sipp-reg-');
  const peers = bed.peers;

  before(async () => {
    await bed.startPeer('a');
    await bed.startPeer('b');
  });

  after(() => bed.close());

  async function sipp(scenario: string, peer: PeerNode, user: string, extra: string[] = []) {
    return bed.sippRun(scenario, (port) => [
      `${peer.host}:${peer.port}`,
      '-p',
      String(port),
      '-s',
      user,
      ...extra,
    ]);
  }

  it('register.xml: 200 lists the binding, which is stored and published', async () => {
    const a = peers[0]!;
    const r = await sipp('register.xml', a, 'alice', ['-key', 'expires', '3600']);
    assert.equal(r.code, 0, r.output);
    const bindings = a.sip.bindings.lookup('sip:alice@peerbx.local', Date.now());
    assert.equal(bindings.length, 1);
    assert.equal(bindings[0]?.uri, `sip:alice@127.0.0.1:${r.port}`);
    assert.equal(bindings[0]?.flow?.transport, 'udp');
    const records = await peers[1]!.overlay.fetch('alice@peerbx.local', KIND_SIP_REGISTRATION);
    assert.equal(records.length, 1);
  });

  it('register-423.xml: too short an expiry gets 423 with Min-Expires, the retry 200', async () => {
    const r = await sipp('register-423.xml', peers[0]!, 'carol');
    assert.equal(r.code, 0, r.output);
    const b = peers[0]!.sip.bindings.lookup('sip:carol@peerbx.local', Date.now());
    assert.equal(b.length, 1);
    assert.ok((b[0]!.expiresAt - Date.now()) / 1000 <= 60);
  });

  it('register-403.xml: another key owns the name, so the other node answers 403 and says why', async () => {
    const r = await sipp('register-403.xml', peers[1]!, 'alice');
    assert.equal(r.code, 0, r.output);
    assert.equal(peers[1]!.sip.bindings.lookup('sip:alice@peerbx.local', Date.now()).length, 0);
  });
});
