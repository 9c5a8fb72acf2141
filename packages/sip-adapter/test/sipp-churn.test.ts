// Calls while nodes die: five node processes on 127.0.0.1 (k = 3), SIPp phones. A node that
// holds the callee's registration is killed and calls to the callee still connect (the other
// replicas answer). The callee's node is killed after a call, so the caller's node has the
// location cached and a channel open: the next call gets 480 and the caller's node keeps
// serving. The callee's node is started again from its data directory (identity, bindings)
// on new ports, and calls reach the callee again. Skipped, with the reason, without sipp.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_DOMAIN, resourceId } from '@peerbx/overlay-core';
import { SipNodeChild } from './fixtures/sip-node-child.js';
import {
  type RunningSipp,
  rawRegister,
  sippBound,
  sippCall,
  startSipp,
  startSippCallee,
  tempRoot,
} from './fixtures/sipp.js';
import { sippSkipReason } from './fixtures/test-bed.js';

const missing = sippSkipReason('SIPp churn tests');

/** XOR distance of a hex node-ID to a key, as a bigint. */
function distance(nodeIdHex: string, key: Uint8Array): bigint {
  return BigInt(`0x${nodeIdHex}`) ^ BigInt(`0x${Buffer.from(key).toString('hex')}`);
}

describe('calls while nodes die, with SIPp', { skip: missing }, () => {
  const tmp = tempRoot('peerbx-sipp-churn-');
  const peers: SipNodeChild[] = [];
  const sipps: RunningSipp[] = [];

  before(async () => {
    peers.push(await SipNodeChild.start(join(tmp.root, 'n1')));
    const rest = await Promise.all(
      ['n2', 'n3', 'n4', 'n5'].map((n) => SipNodeChild.start(join(tmp.root, n), peers[0]!.udp)),
    );
    peers.push(...rest);
  });

  after(async () => {
    for (const s of sipps) s.kill();
    await Promise.all(sipps.map((s) => s.done));
    for (const p of peers.reverse()) await p.kill('SIGTERM').catch(() => p.kill());
    tmp.remove();
  });

  /** A SIPp callee on a free port, or on `port` (a restored binding's); bound when resolved. */
  async function uas(
    scenario: string,
    port?: number,
  ): Promise<{ sipp: RunningSipp; port: number }> {
    if (port === undefined) {
      const callee = await startSippCallee(scenario);
      sipps.push(callee.sipp);
      return callee;
    }
    const s = startSipp(scenario, ['-p', String(port)]);
    sipps.push(s);
    await sippBound(s, port);
    return { sipp: s, port };
  }

  const call = (scenario: string, user: string, at: SipNodeChild) =>
    sippCall(scenario, user, at, sipps);

  it("connects a call after a node holding the callee's registration died", async () => {
    const [caller, calleeNode] = [peers[0]!, peers[2]!];
    const { sipp: callee, port } = await uas('uas-call.xml');
    assert.equal(
      await rawRegister(calleeNode, 'bob', `sip:bob@127.0.0.1:${port}`),
      'SIP/2.0 200 OK',
    );
    // The k = 3 nodes closest to the name hold the records; kill the closest that is neither
    // the caller's nor the callee's node.
    const key = resourceId(`bob@${DEFAULT_DOMAIN}`);
    const byDistance = [...peers].sort((a, b) =>
      distance(a.nodeId, key) < distance(b.nodeId, key) ? -1 : 1,
    );
    const holders = byDistance.slice(0, 3);
    const victim = holders.find((p) => p !== caller && p !== calleeNode);
    assert.ok(victim, 'a holder other than the caller and callee nodes');
    await victim.kill('SIGKILL');

    const uac = await call('uac-call.xml', 'bob', caller);
    assert.equal(uac.code, 0, `caller: ${uac.output}`);
    const u = await callee.done;
    assert.equal(u.code, 0, `callee: ${u.output}`);
  });

  it("answers 480 when the callee's node died after a call, and connects once it is back", async () => {
    const caller = peers[0]!;
    const calleeIndex = 2;
    const calleeDir = join(tmp.root, 'n3');
    const { sipp: first, port } = await uas('uas-call.xml');
    assert.equal(
      await rawRegister(peers[calleeIndex]!, 'carol', `sip:carol@127.0.0.1:${port}`),
      'SIP/2.0 200 OK',
    );
    // A first call: carol's location is now cached at the caller's node, a channel is open.
    const ok = await call('uac-call.xml', 'carol', caller);
    assert.equal(ok.code, 0, `first call: ${ok.output}`);
    assert.equal((await first.done).code, 0);

    await peers[calleeIndex]!.kill('SIGKILL');
    const down = await call('uac-480.xml', 'carol', caller);
    assert.equal(down.code, 0, `call while carol's node is down: ${down.output}`);
    // The caller's node keeps serving: it answers statistics, and the next call goes through.
    assert.ok((await caller.stats()).proxy);

    // Back from its directory (same identity, carol's binding restored), on new ports.
    const back = await SipNodeChild.start(calleeDir, caller.udp);
    peers[calleeIndex] = back;
    const { sipp: again } = await uas('uas-call.xml', port);
    const uac = await call('uac-call.xml', 'carol', caller);
    assert.equal(uac.code, 0, `call after carol's node came back: ${uac.output}`);
    assert.equal((await again.done).code, 0);
  });
});
