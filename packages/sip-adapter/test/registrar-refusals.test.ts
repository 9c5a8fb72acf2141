// What a phone hears when its registration cannot be published, on a real enrolled overlay
// (an authority signed the configuration and certifies users): a user without a certificate
// gets 403 saying so; a user name that cannot be a user of the overlay 404; a call to a user
// registered nowhere 480 (the overlay lists no certified users); a user key this
// node cannot use (readable by others) 500, since waiting will not cure it. None of them the
// 503 "overlay unreachable" a phone would retry for ever.

import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  encodeCertificate,
  ensureDataDir,
  generateKeyPair,
  issueCertificate,
  loadUserKey,
  OverlayNode,
  signOverlayConfig,
  userCertificatePath,
  userKeyPath,
} from '@peerbx/overlay-core';
import { SipNode } from '../src/node/sip-node.js';
import { overlayConfig, rawRegister, tempRoot } from './fixtures/sipp.js';
import { request, UdpPhone } from './fixtures/udp-phone.js';

describe('registrations the overlay cannot take', () => {
  const tmp = tempRoot('peerbx-refusals-');
  const authority = generateKeyPair();
  const config = signOverlayConfig(
    overlayConfig({
      enrollment: 'enrolled',
      authorityKey: Buffer.from(authority.publicKey).toString('hex'),
    }),
    authority,
  );
  const overlays: OverlayNode[] = [];
  let sip: SipNode;
  let node: { host: string; port: number };
  const dir = join(tmp.root, 'e0');

  before(async () => {
    const paths = ensureDataDir(dir);
    for (const user of ['bob', 'dave']) {
      const key = loadUserKey(paths, user);
      const cert = issueCertificate(authority, user, key.publicKey, 3_600_000, Date.now());
      writeFileSync(userCertificatePath(paths, user), encodeCertificate(cert));
    }
    // erin's certificate copied in without its key; fay's from another overlay's authority.
    const erin = issueCertificate(
      authority,
      'erin',
      generateKeyPair().publicKey,
      3_600_000,
      Date.now(),
    );
    writeFileSync(userCertificatePath(paths, 'erin'), encodeCertificate(erin));
    const fay = issueCertificate(
      generateKeyPair(),
      'fay',
      loadUserKey(paths, 'fay').publicKey,
      3_600_000,
      Date.now(),
    );
    writeFileSync(userCertificatePath(paths, 'fay'), encodeCertificate(fay));
    overlays.push(await OverlayNode.start({ dataDir: dir, config }));
    overlays.push(
      await OverlayNode.start({
        dataDir: join(tmp.root, 'e1'),
        config,
        bootstrap: [overlays[0]!.udpAddress],
      }),
    );
    sip = await SipNode.start({
      overlay: overlays[0]!,
      sip: { host: '127.0.0.1', port: 0 },
      ws: false,
    });
    node = { host: '127.0.0.1', port: sip.addresses.udp.port };
  });

  after(async () => {
    await sip.close();
    for (const o of overlays.reverse()) await o.close();
    tmp.remove();
  });

  const contact = (user: string) => `sip:${user}@127.0.0.1:5999`;

  it('registers a certified user', async () => {
    assert.equal(await rawRegister(node, 'bob', contact('bob')), 'SIP/2.0 200 OK');
  });

  it('answers 403 saying so to a user this node holds no certificate for', async () => {
    const line = await rawRegister(node, 'carol', contact('carol'));
    assert.match(line, /^SIP\/2\.0 403 Forbidden \(carol is not certified for this node/);
  });

  it('answers 403 saying what to do to a user whose certificate is not for its key, or not of this overlay', async () => {
    const erin = await rawRegister(node, 'erin', contact('erin'));
    assert.match(
      erin,
      /^SIP\/2\.0 403 Forbidden \(certificate for erin names a different user key: the overlay's admin issues a certificate and key for erin into this node's data directory with peerbx ca issue\)$/,
    );
    const fay = await rawRegister(node, 'fay', contact('fay'));
    assert.match(
      fay,
      /^SIP\/2\.0 403 Forbidden \(certificate for fay is not signed by this overlay's authority: the overlay's admin issues/,
    );
  });

  it('answers 404 to a user name that cannot name a user of the overlay', async () => {
    const line = await rawRegister(node, 'bob(desk)', contact('bob'));
    assert.match(line, /^SIP\/2\.0 404 Not Found \(user names are 1-64 letters/);
  });

  it('answers 480, not 404, to a call to a user registered nowhere: certified users are listed nowhere (RFC 3261 §16.5)', async () => {
    const phone = await UdpPhone.open();
    try {
      const call = request('INVITE', 'sip:zoe@peerbx.local', phone);
      phone.send(call.text, node.port);
      const answer = await phone.next(
        (m) => m.kind === 'response' && m.status >= 300 && m.callId === call.callId,
        'a final answer',
      );
      assert.equal(answer.kind === 'response' && answer.status, 480);
      assert.match(
        answer.kind === 'response' ? answer.reason : '',
        /zoe@peerbx\.local has no device registered/,
      );
    } finally {
      phone.close();
    }
  });

  it("answers 500 when the user's key file is unusable, and 200 once it is fixed", async () => {
    const keyFile = userKeyPath(ensureDataDir(dir), 'dave');
    chmodSync(keyFile, 0o644);
    const line = await rawRegister(node, 'dave', contact('dave'));
    assert.match(line, /^SIP\/2\.0 500 Server Internal Error \(this node could not sign/);
    chmodSync(keyFile, 0o600);
    assert.equal(await rawRegister(node, 'dave', contact('dave')), 'SIP/2.0 200 OK');
  });
});
