import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OverlayError } from '../src/errors.js';
import {
  decodeCertificate,
  encodeCertificate,
  issueCertificate,
  verifyCertificate,
} from '../src/identity/certificate.js';
import { generateKeyPair, HOUR } from './fixtures/records.js';

const NOW = Date.UTC(2026, 0, 1);
const authority = generateKeyPair();
const authorityHex = Buffer.from(authority.publicKey).toString('hex');
const alice = generateKeyPair();

describe('user certificates', () => {
  it('round-trips and verifies while current', () => {
    const cert = issueCertificate(authority, 'alice', alice.publicKey, 24 * HOUR, NOW);
    const back = decodeCertificate(encodeCertificate(cert));
    assert.equal(back.user, 'alice');
    assert.deepEqual(Buffer.from(back.publicKey), Buffer.from(alice.publicKey));
    assert.equal(back.notBefore, NOW);
    assert.equal(back.notAfter, NOW + 24 * HOUR);
    assert.deepEqual(verifyCertificate(back, authorityHex, NOW + HOUR), { ok: true });
  });

  it('is refused once expired, with the date', () => {
    const cert = issueCertificate(authority, 'alice', alice.publicKey, HOUR, NOW);
    const verdict = verifyCertificate(cert, authorityHex, NOW + HOUR);
    assert.equal(verdict.ok, false);
    assert.ok(!verdict.ok);
    assert.equal(verdict.problem, 'expired');
    assert.match(verdict.reason, /^certificate for alice expired 2026-01-01T01:00:00\.000Z/);
  });

  it('is refused before its period begins (beyond clock skew)', () => {
    const cert = issueCertificate(authority, 'alice', alice.publicKey, HOUR, NOW);
    const verdict = verifyCertificate(cert, authorityHex, NOW - HOUR);
    assert.ok(!verdict.ok && verdict.problem === 'not-yet-valid');
    assert.deepEqual(verifyCertificate(cert, authorityHex, NOW - 60_000), { ok: true });
  });

  it("is refused when not signed by this overlay's authority", () => {
    const other = generateKeyPair();
    const cert = issueCertificate(other, 'alice', alice.publicKey, HOUR, NOW);
    const verdict = verifyCertificate(cert, authorityHex, NOW);
    assert.ok(!verdict.ok);
    assert.equal(verdict.problem, 'wrong-authority');
    assert.match(verdict.reason, /certificate for alice is not signed by this overlay's authority/);
    // Claiming our authority's key does not help a forger: the signature is checked with it.
    const forged = { ...cert, authorityKey: authority.publicKey };
    const v2 = verifyCertificate(forged, authorityHex, NOW);
    assert.ok(!v2.ok && v2.problem === 'bad-signature');
  });

  it('detects a change to any byte', () => {
    const bytes = encodeCertificate(
      issueCertificate(authority, 'alice', alice.publicKey, HOUR, NOW),
    );
    for (let i = 0; i < bytes.length; i++) {
      const bad = new Uint8Array(bytes);
      bad[i] = (bad[i] as number) ^ 0x01;
      let accepted = false;
      try {
        accepted = verifyCertificate(decodeCertificate(bad), authorityHex, NOW).ok;
      } catch (err) {
        assert.ok(err instanceof OverlayError && err.code === 'ERR_MALFORMED', String(err));
      }
      assert.equal(accepted, false, `byte ${i} flipped and still accepted`);
    }
  });

  it('refuses bad input to issue and decode', () => {
    assert.throws(() => issueCertificate(authority, '', alice.publicKey, HOUR, NOW), /user/);
    assert.throws(() => issueCertificate(authority, 'a', new Uint8Array(5), HOUR, NOW), /32 bytes/);
    assert.throws(() => decodeCertificate(new Uint8Array([1, 2, 3])), { code: 'ERR_MALFORMED' });
  });
});
