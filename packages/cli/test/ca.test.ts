// `peerbx ca`: an office authority, a user certificate in a node's data directory, and a node
// that joins the enrolled overlay with the signed configuration.

import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { peerbx, StartedNode, tempDir } from './helpers.js';

test('ca init, ca issue, and an enrolled node', async (t) => {
  const dir = tempDir(t);
  const ca = join(dir, 'ca');
  const init = await peerbx(['ca', 'init', '--ca-dir', ca, '--domain', 'office.example', '--json']);
  assert.equal(init.code, 0, init.stderr);
  const r = JSON.parse(init.stdout);
  assert.equal(statSync(r.keyFile).mode & 0o777, 0o600);
  assert.equal(statSync(ca).mode & 0o777, 0o700);
  const config = JSON.parse(readFileSync(r.configFile, 'utf8'));
  assert.equal(config.enrollment, 'enrolled');
  assert.equal(config.domain, 'office.example');
  assert.match(config.signature, /^[0-9a-f]{128}$/);

  const again = await peerbx(['ca', 'init', '--ca-dir', ca]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /already holds an authority/);

  const node = join(dir, 'node');
  const nodeInit = JSON.parse(
    (await peerbx(['init', '--data-dir', node, '--overlay-config', r.configFile, '--json'])).stdout,
  );
  assert.equal(nodeInit.enrollment, 'enrolled');
  assert.equal(nodeInit.domain, 'office.example');

  const issue = await peerbx(['ca', 'issue', 'alice', '--ca-dir', ca, '--data-dir', node]);
  assert.equal(issue.code, 0, issue.stderr);
  assert.ok(existsSync(join(node, 'users', 'alice.cert')));
  assert.ok(existsSync(join(node, 'users', 'alice.key')));
  assert.match(issue.stdout, /certificate for alice \(valid until /);

  const elsewhere = await peerbx([
    'ca',
    'issue',
    'bob',
    '--ca-dir',
    ca,
    '--public-key',
    'ab'.repeat(32),
    '--out',
    join(dir, 'bob.cert'),
  ]);
  assert.equal(elsewhere.code, 0, elsewhere.stderr);
  assert.match(elsewhere.stdout, /copy it to <node data dir>\/users\/bob\.cert/);

  // The hint `ca init` prints runs as printed, with an authority directory of its own.
  const ca2 = join(dir, 'ca2');
  const text = await peerbx(['ca', 'init', '--ca-dir', ca2]);
  const hint = /for each user\s+peerbx (ca issue .*)$/m.exec(text.stdout)?.[1];
  assert.ok(hint?.includes(`--ca-dir ${ca2}`), text.stdout);
  const node2 = join(dir, 'node2');
  const args = (hint ?? '').replace('USER', 'carol').replace('DIR', node2).split(' ');
  // Not before the node's directory is of this overlay: `peerbx init`, the hint before it.
  const early = await peerbx(args);
  assert.equal(early.code, 2);
  assert.match(early.stderr, /is not a node's data directory yet; make it one first: peerbx init/);
  assert.ok(!existsSync(node2), 'nothing made');
  const initHint = /next: on each node\s+peerbx (init .*)$/m.exec(text.stdout)?.[1] ?? '';
  const inited = await peerbx(initHint.replace('DIR', node2).split(' '));
  assert.equal(inited.code, 0, inited.stderr);
  const hinted = await peerbx(args);
  assert.equal(hinted.code, 0, hinted.stderr);
  assert.ok(existsSync(join(node2, 'users', 'carol.cert')));
  // A node of another authority's overlay, or a bad name: said, and nothing written.
  const stranger = await peerbx(['ca', 'issue', 'dan', '--ca-dir', ca2, '--data-dir', node]);
  assert.equal(stranger.code, 2);
  assert.match(stranger.stderr, /is of another authority's overlay, not of the authority in/);
  assert.ok(!existsSync(join(node, 'users', 'dan.key')));
  const badName = await peerbx(['ca', 'issue', 'bad name', '--ca-dir', ca2, '--data-dir', node2]);
  assert.equal(badName.code, 2);
  assert.match(badName.stderr, /user name "bad name" must be 1-64 letters/);

  const running = await StartedNode.start(node);
  const status = JSON.parse((await peerbx(['status', '--data-dir', node, '--json'])).stdout);
  assert.equal(status.enrollment, 'enrolled');
  assert.equal(status.domain, 'office.example');
  assert.equal(await running.stop(), 0);
});
