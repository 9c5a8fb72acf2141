// Linphone through real nodes: two linphonec phones, each set up with its `peerbx start` node on
// 127.0.0.1 as registrar and outbound proxy, register and call each other across the overlay:
// ringing, answer, audio both ways directly between the phones, hang-up from either side.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StartedNode } from './helpers.js';
import { HELLO_WAV, Linphone, linphoneMissing } from './linphone.js';

// CI installs linphone-cli (.ci/run); only a developer's machine may lack it.
const missing = linphoneMissing();
const skip = missing && !process.env.CI ? missing : false;

describe('Linphone phones through PeerBX nodes', { skip }, () => {
  let dir = '';
  const nodes: StartedNode[] = [];
  const phones: Linphone[] = [];
  let alice: Linphone;
  let bob: Linphone;

  before(async () => {
    assert.equal(missing, undefined, missing);
    dir = mkdtempSync(join(tmpdir(), 'peerbx-linphone-'));
    nodes.push(await StartedNode.start(join(dir, 'node1')));
    nodes.push(
      await StartedNode.start(join(dir, 'node2'), ['--bootstrap', nodes[0]!.ready.overlay]),
    );
    const start = async (user: string, node: StartedNode) => {
      mkdirSync(join(dir, user));
      const phone = await Linphone.start({
        user,
        node: node.ready.sip,
        dir: join(dir, user),
        autoAnswer: true,
      });
      phones.push(phone);
      return phone;
    };
    alice = await start('alice', nodes[0]!);
    bob = await start('bob', nodes[1]!);
  });

  after(async () => {
    for (const p of phones) p.stop();
    await Promise.all(nodes.map((n) => n.stop()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('registers each phone at its own node', async () => {
    assert.ok(await alice.registered(), alice.log);
    assert.ok(await bob.registered(), bob.log);
  });

  /** Both phones send the WAV file into the established call, for a second. */
  async function talk(): Promise<void> {
    alice.send(`play ${HELLO_WAV}`);
    bob.send(`play ${HELLO_WAV}`);
    await new Promise((r) => setTimeout(r, 1000));
  }

  /**
   * Audio went both ways in the call that just ended, as each phone counted it: half of the
   * second of talk at least (50 packets a second, 20 ms each); without the WAV a phone here
   * sends nothing.
   */
  async function assertAudioBothWays(): Promise<void> {
    for (const phone of [alice, bob]) {
      const rtp = await phone.callRtp();
      assert.ok(rtp.sent >= 25 && rtp.received >= 25, `${phone.user}: ${JSON.stringify(rtp)}`);
    }
  }

  it('calls across the overlay: ringing, answer, audio both ways, caller hangs up', async () => {
    alice.mark();
    bob.mark();
    alice.send('call sip:bob@peerbx.local');
    await alice.waitFor(/to sip:bob@peerbx\.local ringing/);
    await bob.waitFor(/incoming call from sip:alice@peerbx\.local/);
    await alice.waitFor(/with sip:bob@peerbx\.local connected/);
    await bob.waitFor(/with sip:alice@peerbx\.local connected/);
    await alice.waitFor(/Media streams established with sip:bob@peerbx\.local/);
    await talk();
    alice.send('terminate');
    // bob's call ends on alice's BYE, which went through both nodes (their Record-Routes).
    await bob.waitFor(/with sip:alice@peerbx\.local ended/);
    await alice.waitFor(/with sip:bob@peerbx\.local ended/);
    await assertAudioBothWays();
  });

  it('lets the callee hang up (BYE the other way along the route)', async () => {
    alice.mark();
    bob.mark();
    alice.send('call sip:bob@peerbx.local');
    await bob.waitFor(/with sip:alice@peerbx\.local connected/);
    await alice.waitFor(/with sip:bob@peerbx\.local connected/);
    await talk();
    bob.send('terminate');
    await alice.waitFor(/with sip:bob@peerbx\.local ended/);
    await bob.waitFor(/with sip:alice@peerbx\.local ended/);
    await assertAudioBothWays();
  });
});
