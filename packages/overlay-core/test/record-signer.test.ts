import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { systemClock } from '@peerbx/dht-kademlia';
import { defaultOverlayConfig } from '../src/config/overlay-config.js';
import { KIND_NAME_CLAIM, KIND_SIP_REGISTRATION } from '../src/constants.js';
import { ensureDataDir, exportUserKey, userKeyPath } from '../src/identity/data-dir.js';
import { writeFileDurably, writeFileDurablyAsync } from '../src/identity/durable-file.js';
import { readKeyFile, writeKeyFile } from '../src/identity/key-file.js';
import {
  derivedUserKeys,
  exportPrivateKey,
  generateKeyPair,
  importPrivateKey,
  keyPairFromSeed,
  sign,
  verify,
} from '../src/identity/keys.js';
import { RecordSigner } from '../src/storage/record-signer.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'peerbx-signer-'));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('durable files', () => {
  for (const [name, write] of [
    ['sync', async (p: string, d: string) => writeFileDurably(p, d, 0o600)],
    ['async', (p: string, d: string) => writeFileDurablyAsync(p, d, 0o600)],
  ] as const) {
    it(`${name}: replaces the file whole, with the mode asked for, and leaves no temporary file`, async () => {
      const dir = tempDir();
      const path = join(dir, 'secret');
      await write(path, 'first');
      assert.equal(readFileSync(path, 'utf8'), 'first');
      chmodSync(path, 0o644);
      await write(path, 'second');
      assert.equal(readFileSync(path, 'utf8'), 'second');
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.deepEqual(readdirSync(dir), ['secret']);
    });
  }

  // Atomicity only: a kill keeps the page cache, so the flushes themselves (what a power cut
  // needs) cannot be seen from here.
  it('a writer killed at any moment leaves the old contents or the new, never a mix', async () => {
    const dir = tempDir();
    const path = join(dir, 'config.json');
    const a = 'a'.repeat(200_000);
    const b = 'b'.repeat(200_000);
    writeFileDurably(path, a);
    const module = fileURLToPath(new URL('../src/identity/durable-file.js', import.meta.url));
    const script = `import { writeFileDurably } from ${JSON.stringify(module)};
      process.stdout.write('go\\n');
      for (let i = 0; ; i++) writeFileDurably(${JSON.stringify(path)}, (i % 2 ? 'a' : 'b').repeat(200_000));`;
    for (let round = 0; round < 8; round++) {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
      await new Promise((r) => setTimeout(r, 20 + 15 * round));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const text = readFileSync(path, 'utf8');
      assert.ok(text === a || text === b, `round ${round}: ${text.length} bytes, mixed or torn`);
    }
  });
});

describe('record signer', () => {
  const config = defaultOverlayConfig();
  const node = generateKeyPair();
  const publish = (user: string, kind = KIND_SIP_REGISTRATION) => ({
    kind,
    resource: `${user}@${config.domain}`,
    dictionaryKey: new Uint8Array(32),
    value: new Uint8Array([1]),
    lifetimeMs: 60_000,
  });

  it("derives a new user's key from the node key: the same after a restart, and no file", async () => {
    const paths = ensureDataDir(tempDir());
    const signer = new RecordSigner(paths, config, node, systemClock);
    // Two REGISTERs of a new user at once: one key.
    const [x, y] = await Promise.all([
      signer.sign(publish('alice')),
      signer.sign(publish('alice')),
    ]);
    const derived = hex(derivedUserKeys(node, 'alice').publicKey);
    assert.equal(hex(x.record.user?.publicKey ?? new Uint8Array()), derived);
    assert.equal(hex(y.record.user?.publicKey ?? new Uint8Array()), derived);
    assert.equal(x.claim?.kind, KIND_NAME_CLAIM);
    assert.equal(hex(x.claim?.value ?? new Uint8Array()), derived);
    assert.deepEqual(readdirSync(paths.users), [], 'nothing written');
    // A restarted node signs with the same key; another user, or another node, has another.
    const again = await new RecordSigner(paths, config, node, systemClock).sign(publish('alice'));
    assert.equal(hex(again.record.user?.publicKey ?? new Uint8Array()), derived);
    assert.notEqual(hex(derivedUserKeys(node, 'alicf').publicKey), derived);
    assert.notEqual(hex(derivedUserKeys(generateKeyPair(), 'alice').publicKey), derived);
    // Fixed for good: a node whose derivation changed would lose every name it claimed.
    const fixed = keyPairFromSeed(Uint8Array.from({ length: 32 }, (_, i) => i));
    assert.equal(
      hex(derivedUserKeys(fixed, 'alice').publicKey),
      'db4e1e96272c7b3db6071a73617d6d6e48ee43cd0bc44244fb926d4d87239848',
    );
    assert.equal(
      hex(derivedUserKeys(fixed, 'bob').publicKey),
      'c4bdf9e4ab5b67a635c47d276d2179ce721a4e0be0da899f830279d0e769ba4b',
    );
  });

  it('forgets lapsed name claims, and only those: a claim is due again after one lapsed', async () => {
    let now = Date.UTC(2026, 0, 1);
    const clock = { ...systemClock, now: () => now };
    const signer = new RecordSigner(ensureDataDir(tempDir()), config, node, clock);
    const first = await signer.sign(publish('dora'));
    assert.ok(first.claim, 'a first claim');
    signer.claimStored(first.claim);
    const lapses = first.claim.storedAt + first.claim.lifetimeMs;
    now += 60_000;
    signer.forgetLapsedClaims(lapses - 1);
    assert.equal((await signer.sign(publish('dora'))).claim, undefined, 'a live claim is kept');
    now = lapses;
    signer.forgetLapsedClaims(now);
    assert.equal((await signer.sign(publish('dora'))).claim?.kind, KIND_NAME_CLAIM);
  });

  it('exports the key it signs with, for another node of the user, and signs with the file', async () => {
    const paths = ensureDataDir(tempDir());
    writeKeyFile(paths.nodeKey, node);
    const signer = new RecordSigner(paths, config, node, systemClock);
    const before = await signer.sign(publish('dora'));
    const exported = exportUserKey(paths, 'dora');
    assert.equal(exported.file, userKeyPath(paths, 'dora'));
    assert.equal(statSync(exported.file).mode & 0o777, 0o600);
    assert.equal(hex(readKeyFile(exported.file).publicKey), hex(exported.publicKey));
    assert.equal(hex(exported.publicKey), hex(before.record.user?.publicKey ?? new Uint8Array()));
    // Elsewhere (--out): the same key, from the file now.
    const out = join(tempDir(), 'dora.key');
    assert.equal(hex(exportUserKey(paths, 'dora', out).publicKey), hex(exported.publicKey));
    const other = ensureDataDir(tempDir());
    const at = new RecordSigner(other, config, generateKeyPair(), systemClock);
    writeKeyFile(userKeyPath(other, 'dora'), readKeyFile(out));
    const there = await at.sign(publish('dora'));
    assert.equal(hex(there.record.user?.publicKey ?? new Uint8Array()), hex(exported.publicKey));
    assert.throws(() => exportUserKey(ensureDataDir(tempDir()), 'dora'), /no node key in/);
  });

  it('signs with a key file replaced while it runs (a user moved in from another node)', async () => {
    const paths = ensureDataDir(tempDir());
    const signer = new RecordSigner(paths, config, node, systemClock);
    const first = await signer.sign(publish('bob'));
    const moved = generateKeyPair();
    writeKeyFile(userKeyPath(paths, 'bob'), moved);
    const second = await signer.sign(publish('bob'));
    assert.notEqual(hex(first.record.user?.publicKey ?? new Uint8Array()), hex(moved.publicKey));
    assert.equal(hex(second.record.user?.publicKey ?? new Uint8Array()), hex(moved.publicKey));
  });

  it('refuses a user name that is no file name, and a key file others can read', async () => {
    const paths = ensureDataDir(tempDir());
    const signer = new RecordSigner(paths, config, node, systemClock);
    await assert.rejects(signer.sign(publish('../etc')), /user name/);
    writeKeyFile(userKeyPath(paths, 'carol'), generateKeyPair());
    await signer.sign(publish('carol'));
    chmodSync(userKeyPath(paths, 'carol'), 0o644);
    // Checked whenever the file is read: at the first use after a start, say.
    await assert.rejects(
      new RecordSigner(paths, config, node, systemClock).sign(publish('carol')),
      /readable by others/,
    );
  });
});

describe('Ed25519 keys', () => {
  it('makes the key pair of a seed as RFC 8032 says (section 7.1, TEST 1 and TEST 2)', () => {
    const vectors = [
      {
        seed: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
        publicKey: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
        message: '',
        signature:
          'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
      },
      {
        seed: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
        publicKey: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
        message: '72',
        signature:
          '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
      },
    ];
    for (const v of vectors) {
      const keys = keyPairFromSeed(Buffer.from(v.seed, 'hex'));
      assert.equal(hex(keys.publicKey), v.publicKey);
      const message = Buffer.from(v.message, 'hex');
      assert.equal(hex(sign(keys, message)), v.signature);
      assert.ok(verify(keys.publicKey, message, Buffer.from(v.signature, 'hex')));
      assert.ok(!verify(keys.publicKey, Buffer.from('73', 'hex'), Buffer.from(v.signature, 'hex')));
    }
    // A file's key (PEM, as written) reads back as the same pair.
    const keys = keyPairFromSeed(Buffer.from(vectors[0]!.seed, 'hex'));
    assert.equal(hex(importPrivateKey(exportPrivateKey(keys)).publicKey), vectors[0]!.publicKey);
  });
});

describe('Ed25519 key generation', () => {
  // Node 20 deadlocks now and then when a key pair generateKeyPairSync made is exported as a
  // JWK while garbage collection frees the generating job (a first start hung for good). Seen
  // within 30,000 key pairs in 1 run of 4 with a public JWK export, within 5,000 with a private
  // one; generateKeyPair exports DER. In a child process, so a hang fails the test, not the run.
  it('makes and reads 30,000 key pairs without hanging', async () => {
    const keys = fileURLToPath(new URL('../src/identity/keys.js', import.meta.url));
    const script = `import { generateKeyPair, keyPairFromSeed, derivedUserKeys } from ${JSON.stringify(keys)};
      import { randomBytes } from 'node:crypto';
      for (let i = 0; i < 30000; i++) {
        const node = generateKeyPair();
        if (i % 10 === 0) derivedUserKeys(node, 'u' + i);
        keyPairFromSeed(randomBytes(32));
      }
      process.stdout.write('done');`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    const code = await new Promise((r) => child.once('exit', r));
    clearTimeout(timer);
    assert.equal(out, 'done', `exit ${code}: hung (killed after 90 s) or failed`);
  });
});
