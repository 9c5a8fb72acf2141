#!/usr/bin/env node
// Runs every compiled test file (*.test.js) of every package (packages/*/dist/test) and of the
// top-level cross-package tests (test/dist, test/**/*.test.mjs) with Node's test runner. `npm test` builds first.
// Files are listed explicitly so that fixtures and helpers beside the tests are not run as tests.
// Extra arguments go to `node --test` (e.g. --test-name-pattern=udp).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const dirs = readdirSync(join(root, 'packages'))
  .map((p) => join(root, 'packages', p, 'dist', 'test'))
  .concat(join(root, 'test', 'dist'))
  .filter((d) => existsSync(d));
const files = dirs.flatMap((d) =>
  readdirSync(d, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.test.js'))
    .map((f) => join(d, f)),
);
// Top-level tests that need no build step of their own (test/**/*.test.mjs), e.g. test/netns.
const top = join(root, 'test');
if (existsSync(top)) {
  for (const f of readdirSync(top, { recursive: true, encoding: 'utf8' })) {
    if (f.endsWith('.test.mjs') && !f.split('/').includes('dist')) files.push(join(top, f));
  }
}
if (files.length === 0) {
  console.error('run-tests: no compiled tests found; run `npm run build` first');
  process.exit(1);
}
const extra = process.argv.slice(2);
const res = spawnSync(
  process.execPath,
  ['--test', '--test-concurrency=2', '--test-reporter=spec', ...extra, ...files.sort()],
  { stdio: 'inherit' },
);
process.exit(res.status ?? 1);
