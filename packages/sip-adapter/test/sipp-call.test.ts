// Calls across a three-node overlay on 127.0.0.1, one process per node, with SIPp phones: a
// SIPp caller at node 1,
// SIPp callees registered at node 3. Ringing, answer, ACK and BYE (through both nodes' Record-
// Routes); CANCEL before answer; a busy callee; MESSAGE; 404 for a user registered nowhere; 480 for a user
// whose registration names a node that is gone. Skipped, with the reason, without sipp.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SipNodeChild } from './fixtures/sip-node-child.js';
import {
  type RunningSipp,
  rawRegister,
  sippCall,
  startSippCallee,
  tempRoot,
} from './fixtures/sipp.js';
import { sippSkipReason } from './fixtures/test-bed.js';

const missing = sippSkipReason('SIPp call tests');

describe('calls through the overlay with SIPp', { skip: missing }, () => {
  const tmp = tempRoot('peerbx-sipp-call-');
  const peers: SipNodeChild[] = [];
  const sipps: RunningSipp[] = [];

  before(async () => {
    peers.push(await SipNodeChild.start(join(tmp.root, 'n1')));
    for (const name of ['n2', 'n3']) {
      peers.push(await SipNodeChild.start(join(tmp.root, name), peers[0]!.udp));
    }
  });

  after(async () => {
    for (const s of sipps) s.kill();
    await Promise.all(sipps.map((s) => s.done));
    for (const p of peers.reverse()) await p.kill('SIGTERM').catch(() => p.kill());
    tmp.remove();
  });

  /** A SIPp callee for `user`, registered at `at` (by a raw REGISTER naming its port). */
  async function callee(scenario: string, user: string, at: SipNodeChild): Promise<RunningSipp> {
    const { sipp: uas, port } = await startSippCallee(scenario);
    sipps.push(uas);
    const line = await rawRegister(at, user, `sip:${user}@127.0.0.1:${port}`);
    assert.equal(line, 'SIP/2.0 200 OK');
    return uas;
  }

  const caller = (scenario: string, user: string, at: SipNodeChild) =>
    sippCall(scenario, user, at, sipps);

  it('uac-call/uas-call: ringing, answer, ACK and BYE from node 1 to bob at node 3', async () => {
    const uas = await callee('uas-call.xml', 'bob', peers[2]!);
    const uac = await caller('uac-call.xml', 'bob', peers[0]!);
    assert.equal(uac.code, 0, `caller: ${uac.output}\ncallee so far: ${uas.output()}`);
    const u = await uas.done;
    assert.equal(u.code, 0, `callee: ${u.output}`);
    // The 2xx ACK and the BYE went through both nodes (Record-Route), over an overlay channel.
    for (const p of [peers[0]!, peers[2]!]) {
      const stats = await p.stats();
      assert.ok(stats.proxy.acksForwarded >= 1, 'ACK forwarded');
      assert.ok(stats.flows.out >= 2, 'overlay channel used');
    }
  });

  it('uac-hangup/uas-hangup: the callee hangs up, its BYE goes back through node 3 and node 1', async () => {
    const uas = await callee('uas-hangup.xml', 'hank', peers[2]!);
    const uac = await caller('uac-hangup.xml', 'hank', peers[0]!);
    assert.equal(uac.code, 0, `caller: ${uac.output}\ncallee so far: ${uas.output()}`);
    const u = await uas.done;
    assert.equal(u.code, 0, `callee: ${u.output}`);
  });

  it('uac-cancel/uas-cancel: CANCEL before answer ends the call with 487', async () => {
    const uas = await callee('uas-cancel.xml', 'carol', peers[2]!);
    const uac = await caller('uac-cancel.xml', 'carol', peers[0]!);
    assert.equal(uac.code, 0, `caller: ${uac.output}\ncallee so far: ${uas.output()}`);
    const u = await uas.done;
    assert.equal(u.code, 0, `callee: ${u.output}`);
  });

  it('uac-message/uas-message: MESSAGE reaches dave at node 3', async () => {
    const uas = await callee('uas-message.xml', 'dave', peers[2]!);
    const uac = await caller('uac-message.xml', 'dave', peers[0]!);
    assert.equal(uac.code, 0, `caller: ${uac.output}\ncallee so far: ${uas.output()}`);
    const u = await uas.done;
    assert.equal(u.code, 0, `callee: ${u.output}`);
  });

  it('uac-486/uas-busy: a busy callee at node 3, 486 back at the caller, ACKed hop by hop', async () => {
    const uas = await callee('uas-busy.xml', 'ivan', peers[2]!);
    const uac = await caller('uac-486.xml', 'ivan', peers[0]!);
    assert.equal(uac.code, 0, `caller: ${uac.output}\ncallee so far: ${uas.output()}`);
    const u = await uas.done;
    assert.equal(u.code, 0, `callee: ${u.output}`);
  });

  it('uac-404: a user registered nowhere is 404', async () => {
    const uac = await caller('uac-404.xml', 'nobody', peers[0]!);
    assert.equal(uac.code, 0, uac.output);
  });

  it('uac-480: a registration naming a node that is gone is 480', async () => {
    const gone = await SipNodeChild.start(join(tmp.root, 'n4'), peers[0]!.udp);
    peers.push(gone);
    const line = await rawRegister(gone, 'erin', 'sip:erin@127.0.0.1:9');
    assert.equal(line, 'SIP/2.0 200 OK');
    await gone.kill();
    const uac = await caller('uac-480.xml', 'erin', peers[0]!);
    assert.equal(uac.code, 0, uac.output);
  });
});
