// Parallel forking with SIPp on a two-node overlay on 127.0.0.1: two SIPp callees registered as
// the same user (two Contacts) at node 2, a SIPp caller at node 1. Both devices ring; one answers
// (uas-fork-answer.xml), the other is cancelled by node 2 (uas-cancel.xml: CANCEL, 200 and 487,
// then the hop-by-hop ACK); the caller sees exactly one 200. Skipped, with the reason, without sipp.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type PeerNode, type RunningSipp, rawRegister } from './fixtures/sipp.js';
import { sippSkipReason, TestBed } from './fixtures/test-bed.js';

const missing = sippSkipReason('SIPp forking tests');

/** Responses to the INVITE with `status` that SIPp logged as received (-trace_msg). */
function receivedInviteResponses(log: string, status: number): string[] {
  return log
    .split(/^-{10,}.*$/m)
    .filter((m) => /message received/.test(m))
    .map((m) => m.slice(m.indexOf('SIP/2.0')))
    .filter((m) => m.startsWith(`SIP/2.0 ${status} `) && /^CSeq:\s*1 INVITE/im.test(m));
}

describe('parallel forking with SIPp', { skip: missing }, () => {
  const bed = new TestBed('peerbx-sipp-fork-');
  const peers = bed.peers;

  before(async () => {
    await bed.startPeer('n1');
    await bed.startPeer('n2');
  });

  after(() => bed.close());

  async function device(scenario: string, user: string, at: PeerNode): Promise<RunningSipp> {
    const { sipp: uas, port } = await bed.sippCallee(scenario);
    assert.equal(await rawRegister(at, user, `sip:${user}@127.0.0.1:${port}`), 'SIP/2.0 200 OK');
    return uas;
  }

  it('two devices of fred at node 2 ring; one answers, the other gets CANCEL; one 200 at the caller', {
    timeout: 45_000,
  }, async () => {
    const [n1, n2] = [peers[0]!, peers[1]!];
    const winner = await device('uas-fork-answer.xml', 'fred', n2);
    const loser = await device('uas-cancel.xml', 'fred', n2);
    assert.equal(n2.sip.bindings.lookup('sip:fred@peerbx.local', Date.now()).length, 2);

    const log = join(bed.root, 'uac-fork-messages.log');
    const uac = bed.sippRun('uac-fork.xml', (port) => [
      `${n1.host}:${n1.port}`,
      '-p',
      String(port),
      '-s',
      'fred',
      '-trace_msg',
      '-message_file',
      log,
    ]);
    const [c, w, l] = await Promise.all([uac, winner.done, loser.done]);
    assert.equal(c.code, 0, `caller: ${c.output}`);
    assert.equal(w.code, 0, `answering device: ${w.output}`);
    assert.equal(l.code, 0, `cancelled device: ${l.output}`);

    const text = readFileSync(log, 'utf8');
    assert.equal(receivedInviteResponses(text, 180).length, 2, 'both branches rang');
    const oks = receivedInviteResponses(text, 200);
    assert.equal(oks.length, 1, `one 200 at the caller:\n${oks.join('\n')}`);
    assert.doesNotMatch(text, /SIP\/2\.0 487/, 'the losing branch 487 stays at node 2');
  });
});
