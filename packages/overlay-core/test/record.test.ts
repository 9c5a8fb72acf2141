import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hashToId, idToHex } from '@peerbx/dht-kademlia';
import { KIND_SIP_REGISTRATION } from '../src/constants.js';
import { OverlayError } from '../src/errors.js';
import { nodeIdOf, verifyRemembered } from '../src/identity/keys.js';
import {
  createRecord,
  decodeRecord,
  encodeRecord,
  nodeSignatureValid,
  recordSlot,
  resourceId,
  userPartOf,
  userSignatureValid,
} from '../src/storage/record.js';
import { ALICE, generateKeyPair, HOUR, nodeInfo, registration, text } from './fixtures/records.js';

const NOW = Date.UTC(2026, 0, 1);
const node = generateKeyPair();
const alice = generateKeyPair();

function flip(bytes: Uint8Array, i: number): void {
  bytes[i] = (bytes[i] ?? 0) ^ 1;
}

describe('signed records', () => {
  it('round-trip with every field', () => {
    const rec = registration(node, alice, NOW);
    const back = decodeRecord(encodeRecord(rec));
    assert.equal(back.kind, KIND_SIP_REGISTRATION);
    assert.equal(back.resource, ALICE);
    assert.deepEqual(Buffer.from(back.dictionaryKey!), Buffer.from(nodeIdOf(node.publicKey)));
    assert.equal(back.index, undefined);
    assert.deepEqual(Buffer.from(back.value), Buffer.from(text('sip:alice@192.0.2.1:5060')));
    assert.equal(back.storedAt, NOW);
    assert.equal(back.lifetimeMs, HOUR);
    assert.equal(back.user?.name, 'alice');
    assert.deepEqual(Buffer.from(back.user!.publicKey), Buffer.from(alice.publicKey));
    assert.deepEqual(Buffer.from(back.nodeKey), Buffer.from(node.publicKey));
    assert.ok(nodeSignatureValid(back));
    assert.ok(userSignatureValid(back));
  });

  it('remembers good signatures only for the exact key and bytes they were checked with', () => {
    const rec = registration(node, alice, NOW);
    const data = new Uint8Array(rec.tbs);
    assert.ok(verifyRemembered(node.publicKey, data, rec.nodeSignature));
    // The same signature, remembered, over other bytes or under another key: still refused.
    const altered = new Uint8Array(data);
    flip(altered, altered.length - 1);
    assert.equal(verifyRemembered(node.publicKey, altered, rec.nodeSignature), false);
    assert.equal(verifyRemembered(alice.publicKey, data, rec.nodeSignature), false);
    // The caller's buffer changing later does not change what was remembered.
    flip(data, 0);
    assert.equal(verifyRemembered(node.publicKey, data, rec.nodeSignature), false);
    flip(data, 0);
    assert.ok(verifyRemembered(node.publicKey, data, rec.nodeSignature));
    assert.equal(verifyRemembered(node.publicKey, data, rec.nodeSignature.subarray(1)), false);
  });

  it('round-trip without a user, and with an index', () => {
    const info = decodeRecord(encodeRecord(nodeInfo(node, NOW)));
    assert.equal(info.user, undefined);
    assert.equal(info.userSignature, undefined);
    assert.ok(nodeSignatureValid(info));
    const arr = createRecord(
      { kind: 9, resource: 'x', index: 3, value: text('v'), storedAt: NOW, lifetimeMs: 1 },
      node,
    );
    assert.equal(decodeRecord(encodeRecord(arr)).index, 3);
    assert.equal(recordSlot(arr), '9:3');
  });

  it('names keys and slots', () => {
    assert.deepEqual(resourceId(ALICE), hashToId(ALICE));
    assert.equal(userPartOf(ALICE), 'alice');
    assert.equal(userPartOf('bob'), 'bob');
    const rec = registration(node, alice, NOW);
    assert.equal(recordSlot(rec), `1:${idToHex(nodeIdOf(node.publicKey))}`);
    assert.equal(recordSlot(nodeInfo(node, NOW)), '3:');
  });

  it('detects a change to any byte', () => {
    const bytes = encodeRecord(registration(node, alice, NOW));
    for (let i = 0; i < bytes.length; i++) {
      const bad = new Uint8Array(bytes);
      bad[i] = (bad[i] as number) ^ 0x01;
      let valid = false;
      try {
        const r = decodeRecord(bad);
        valid = nodeSignatureValid(r) && userSignatureValid(r);
      } catch (err) {
        assert.ok(err instanceof OverlayError && err.code === 'ERR_MALFORMED', String(err));
      }
      assert.equal(valid, false, `byte ${i} flipped and the record still verifies`);
    }
  });

  it('refuses malformed bytes with ERR_MALFORMED', () => {
    const good = encodeRecord(registration(node, alice, NOW));
    for (const bad of [new Uint8Array(0), good.subarray(0, 40), new Uint8Array([0x93, 1, 2, 3])]) {
      assert.throws(() => decodeRecord(bad), { code: 'ERR_MALFORMED' });
    }
    assert.throws(() => decodeRecord(new Uint8Array([...good, 0])), { code: 'ERR_MALFORMED' });
  });

  it('refuses to build inconsistent records', () => {
    assert.throws(
      () =>
        createRecord(
          {
            kind: 1,
            resource: ALICE,
            dictionaryKey: new Uint8Array(32),
            index: 1,
            value: text('v'),
            storedAt: NOW,
            lifetimeMs: HOUR,
          },
          node,
        ),
      /not both/,
    );
    assert.throws(
      () =>
        createRecord(
          {
            kind: 1,
            resource: ALICE,
            value: text('v'),
            storedAt: NOW,
            lifetimeMs: HOUR,
            userName: 'a',
          },
          node,
        ),
      /user keys/,
    );
  });
});
