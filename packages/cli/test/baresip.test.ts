// Real softphones through real nodes: baresip phones (started by the demo phone's entrypoint,
// as docker-compose.yml does) register at `peerbx start` nodes on 127.0.0.1 and call each other
// across the overlay; ringing, answer, media flowing directly between the phones, hang-up from
// either side, an unknown callee, and digest authentication.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { baresipMissing, Phone } from './baresip.js';
import { StartedNode } from './helpers.js';

// CI installs baresip (.ci/run); only a developer's machine may lack it.
const missing = baresipMissing();
const skip = missing && !process.env.CI ? missing : false;

/** Starts nodes on 127.0.0.1, the first founding the overlay and the rest joining it. */
async function startNodes(dir: string, n: number, extra: string[] = []): Promise<StartedNode[]> {
  const first = await StartedNode.start(join(dir, 'node1'), extra);
  const rest = await Promise.all(
    Array.from({ length: n - 1 }, (_, i) =>
      StartedNode.start(join(dir, `node${i + 2}`), ['--bootstrap', first.ready.overlay, ...extra]),
    ),
  );
  return [first, ...rest];
}

const established = (peer: string) => (e: { peeruri?: string }) =>
  e.peeruri === `sip:${peer}@peerbx.local`;

describe('baresip phones through PeerBX nodes', { skip }, () => {
  let nodes: StartedNode[] = [];
  let alice: Phone;
  let bob: Phone;
  const phones: Phone[] = [];

  const dir = mkdtempSync(join(tmpdir(), 'peerbx-phones-'));

  before(async () => {
    assert.equal(missing, undefined, missing);
    nodes = await startNodes(dir, 3);
    alice = await Phone.start({
      user: 'alice',
      node: nodes[0]!.ready.sip,
      dir: join(dir, 'alice'),
    });
    phones.push(alice);
    bob = await Phone.start({ user: 'bob', node: nodes[2]!.ready.sip, dir: join(dir, 'bob') });
    phones.push(bob);
  });

  after(async () => {
    for (const p of phones) p.stop();
    await Promise.all(nodes.map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('registers each phone at its own node', async () => {
    assert.equal(await alice.registerStatus(), 200, alice.log);
    assert.equal(await bob.registerStatus(), 200, bob.log);
  });

  it('calls across the overlay: ringing, answer, media both ways, caller hangs up', async () => {
    alice.clearEvents();
    bob.clearEvents();
    const dial = await alice.command('dial', 'sip:bob@peerbx.local');
    assert.ok(dial.ok, dial.data);
    await alice.waitFor('CALL_RINGING', established('bob'));
    await alice.waitFor('CALL_ESTABLISHED', established('bob'));
    await bob.waitFor('CALL_ESTABLISHED', established('alice'));
    // Each phone reports the first RTP packet it receives from the other: the SDP crossed both
    // nodes intact and the media flows directly between the phones.
    await alice.waitFor('CALL_RTPESTAB', established('bob'));
    await bob.waitFor('CALL_RTPESTAB', established('alice'));
    assert.ok((await alice.command('hangup')).ok);
    // The BYE follows the Record-Route through both nodes to bob.
    await bob.waitFor('CALL_CLOSED', established('alice'));
    await alice.waitFor('CALL_CLOSED', established('bob'));
  });

  it('lets the callee hang up (BYE the other way along the route)', async () => {
    alice.clearEvents();
    bob.clearEvents();
    assert.ok((await alice.command('dial', 'sip:bob@peerbx.local')).ok);
    await bob.waitFor('CALL_ESTABLISHED', established('alice'));
    await alice.waitFor('CALL_ESTABLISHED', established('bob'));
    assert.ok((await bob.command('hangup')).ok);
    const closed = await alice.waitFor('CALL_CLOSED', established('bob'));
    assert.match(String(closed.param), /reset by peer/i);
  });

  it('rings without answering, then the caller cancels', async () => {
    alice.clearEvents();
    bob.clearEvents();
    assert.ok((await bob.command('answermode', 'manual')).ok);
    try {
      assert.ok((await alice.command('dial', 'sip:bob@peerbx.local')).ok);
      await bob.waitFor('CALL_INCOMING', established('alice'));
      await alice.waitFor('CALL_RINGING', established('bob'));
      assert.ok((await alice.command('hangup')).ok);
      // The CANCEL goes hop by hop to bob's phone, which stops ringing.
      await bob.waitFor('CALL_CLOSED', established('alice'));
      assert.equal(
        bob.events.some((e) => e.type === 'CALL_ESTABLISHED'),
        false,
        'bob never answered',
      );
    } finally {
      await bob.command('answermode', 'auto');
    }
  });

  it('passes a refusal back: the callee declines with 486 Busy Here', async () => {
    alice.clearEvents();
    bob.clearEvents();
    assert.ok((await bob.command('answermode', 'manual')).ok);
    try {
      assert.ok((await alice.command('dial', 'sip:bob@peerbx.local')).ok);
      await bob.waitFor('CALL_INCOMING', established('alice'));
      assert.ok((await bob.command('hangup')).ok);
      const closed = await alice.waitFor('CALL_CLOSED', established('bob'));
      assert.match(String(closed.param), /486/);
    } finally {
      await bob.command('answermode', 'auto');
    }
  });

  it('ends a call to a user registered nowhere with 404', async () => {
    alice.clearEvents();
    assert.ok((await alice.command('dial', 'sip:nobody@peerbx.local')).ok);
    const closed = await alice.waitFor('CALL_CLOSED', established('nobody'));
    assert.match(String(closed.param), /404/);
  });

  it('calls a phone that registered over TCP', async () => {
    const carol = await Phone.start({
      user: 'carol',
      node: nodes[1]!.ready.sip,
      dir: join(dir, 'carol'),
      transport: 'tcp',
    });
    phones.push(carol);
    assert.equal(await carol.registerStatus(), 200, carol.log);
    assert.match(carol.log, /\{0\/TCP\/v4\} 200/);
    alice.clearEvents();
    assert.ok((await alice.command('dial', 'sip:carol@peerbx.local')).ok);
    await carol.waitFor('CALL_ESTABLISHED', established('alice'));
    await alice.waitFor('CALL_RTPESTAB', established('carol'));
    await carol.waitFor('CALL_RTPESTAB', established('alice'));
    // carol hangs up: her BYE comes in over TCP and leaves node 1 over UDP to alice.
    assert.ok((await carol.command('hangup')).ok);
    await alice.waitFor('CALL_CLOSED', established('carol'));
  });

  // Last: bob's second device stays registered after this test.
  // (Open mode: a name belongs to the key of the node that claimed it, so both devices register at
  // bob's node.)
  it("rings both of bob's phones at once; the one that answers gets the call", async () => {
    const desk = await Phone.start({
      user: 'bob',
      node: nodes[2]!.ready.sip,
      dir: join(dir, 'bob-desk'),
    });
    phones.push(desk);
    assert.equal(await desk.registerStatus(), 200, desk.log);
    alice.clearEvents();
    bob.clearEvents();
    for (const p of [bob, desk]) assert.ok((await p.command('answermode', 'manual')).ok);
    assert.ok((await alice.command('dial', 'sip:bob@peerbx.local')).ok);
    await bob.waitFor('CALL_INCOMING', established('alice'));
    await desk.waitFor('CALL_INCOMING', established('alice'));
    assert.ok((await desk.command('accept')).ok);
    await alice.waitFor('CALL_ESTABLISHED', established('bob'));
    await desk.waitFor('CALL_RTPESTAB', established('alice'));
    // The branch that did not answer is cancelled.
    await bob.waitFor('CALL_CLOSED', established('alice'));
    assert.equal(
      bob.events.some((e) => e.type === 'CALL_ESTABLISHED'),
      false,
    );
    assert.ok((await alice.command('hangup')).ok);
    await desk.waitFor('CALL_CLOSED', established('alice'));
  });
});

describe('baresip phones with digest authentication', { skip }, () => {
  let nodes: StartedNode[] = [];
  const phones: Phone[] = [];

  const dir = mkdtempSync(join(tmpdir(), 'peerbx-phones-'));

  before(async () => {
    assert.equal(missing, undefined, missing);
    const config = join(dir, 'peerbx.json');
    // baresip 1.0 (Debian 12) gives up on a SHA-256 challenge, hence MD5 (README).
    writeFileSync(
      config,
      JSON.stringify({
        auth: 'always',
        authAlgorithms: ['MD5'],
        users: { alice: { password: 'alice-secret' }, bob: { password: 'bob-secret' } },
      }),
    );
    nodes = await startNodes(dir, 2, ['--config', config]);
    const start = (user: string, node: number, password: string) =>
      Phone.start({ user, node: nodes[node]!.ready.sip, dir: join(dir, user), password }).then(
        (p) => {
          phones.push(p);
          return p;
        },
      );
    await Promise.all([
      start('alice', 0, 'alice-secret'),
      start('bob', 1, 'bob-secret'),
      start('mallory', 0, 'guess'),
    ]);
  });

  after(async () => {
    for (const p of phones) p.stop();
    await Promise.all(nodes.map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
  });

  const phone = (user: string) => phones.find((p) => p.user === user)!;

  it('registers phones that answer the challenge and refuses a wrong password', async () => {
    assert.equal(await phone('alice').registerStatus(), 200, phone('alice').log);
    assert.equal(await phone('bob').registerStatus(), 200, phone('bob').log);
    const status = await phone('mallory').registerStatus();
    assert.ok(status === 401 || status === 403, `mallory got ${status}`);
  });

  it('places an authenticated call with media', async () => {
    const [alice, bob] = [phone('alice'), phone('bob')];
    assert.ok((await alice.command('dial', 'sip:bob@peerbx.local')).ok);
    await alice.waitFor('CALL_ESTABLISHED', established('bob'));
    await bob.waitFor('CALL_RTPESTAB', established('alice'));
    await alice.waitFor('CALL_RTPESTAB', established('bob'));
    assert.ok((await alice.command('hangup')).ok);
    await bob.waitFor('CALL_CLOSED', established('alice'));
  });
});
