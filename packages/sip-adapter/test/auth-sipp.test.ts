// A real SIPp phone registering at a node that asks for digest credentials: 401, then the
// REGISTER again with SIPp's [authentication] (-au/-ap), then 200. SIPp 3.6 reads only the
// first challenge and knows only MD5 ("authentication must use MD5"), so this node offers
// MD5 alone (authAlgorithms). Skipped, with the reason, where sipp is not installed.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type PeerNode, SCENARIOS } from './fixtures/sipp.js';
import { sippSkipReason, TestBed } from './fixtures/test-bed.js';

const missing = sippSkipReason('SIPp digest REGISTER test');

const SCENARIO = `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="register-auth">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[service]@[remote_ip]:[remote_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      Max-Forwards: 70
      Expires: 3600
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[service]@[remote_ip]:[remote_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[service]@[local_ip]:[local_port]>
      [authentication]
      Max-Forwards: 70
      Expires: 3600
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
`;

describe('digest REGISTER with SIPp', { skip: missing }, () => {
  const bed = new TestBed('peerbx-sipp-auth-');
  let peer: PeerNode;

  before(async () => {
    writeFileSync(join(bed.root, 'register-auth.xml'), SCENARIO);
    peer = await bed.startPeer('a', {
      auth: 'always',
      users: { alice: { password: 'wonderland' } },
      authAlgorithms: ['MD5'],
    });
  });

  after(() => bed.close());

  async function run(password: string) {
    return bed.sippRun(relative(SCENARIOS, join(bed.root, 'register-auth.xml')), (port) => [
      `${peer.host}:${peer.port}`,
      '-p',
      String(port),
      '-s',
      'alice',
      '-au',
      'alice',
      '-ap',
      password,
    ]);
  }

  it('registers after answering the challenge', async () => {
    const r = await run('wonderland');
    assert.equal(r.code, 0, r.output);
    const b = peer.sip.bindings.lookup('sip:alice@peerbx.local', Date.now());
    assert.equal(b.length, 1);
    assert.equal(b[0]?.uri, `sip:alice@127.0.0.1:${r.port}`);
  });

  it('is challenged again (no 200) with the wrong password', async () => {
    const r = await run('rabbit');
    assert.notEqual(r.code, 0, r.output);
    assert.match(r.output, /401/);
  });
});
