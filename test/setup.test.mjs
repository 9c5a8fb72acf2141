// scripts/setup.mjs, the check `npm start` and `npm test` run first, in a copy of the checkout's
// outline: an `npm` on PATH that notes what it was asked, and a `tsc` whose dry run says what
// the test wants. QA: a first build cut short, or a git pull, left `npm start` on the old or a
// broken build.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const setup = fileURLToPath(new URL('../scripts/setup.mjs', import.meta.url));

describe('the install and build check before npm start', () => {
  const dirs = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** A checkout outline: installed, built, tsc's dry run saying `dry`; returns what npm ran. */
  function checkout({
    installed = true,
    built = true,
    dry = 'is up to date',
    lockChanged = false,
  }) {
    const root = mkdtempSync(join(tmpdir(), 'peerbx-setup-'));
    dirs.push(root);
    mkdirSync(join(root, 'scripts'));
    copyFileSync(setup, join(root, 'scripts', 'setup.mjs'));
    writeFileSync(join(root, 'package-lock.json'), '{}');
    mkdirSync(join(root, 'node_modules', 'typescript', 'bin'), { recursive: true });
    writeFileSync(
      join(root, 'node_modules', 'typescript', 'bin', 'tsc'),
      `if (process.argv.includes('--dry')) console.log(${JSON.stringify(`Project 'x' ${dry}`)});\n`,
    );
    if (installed) writeFileSync(join(root, 'node_modules', '.package-lock.json'), '{}');
    const old = new Date(Date.now() - 60_000);
    if (installed && lockChanged)
      utimesSync(join(root, 'node_modules', '.package-lock.json'), old, old);
    else if (installed) utimesSync(join(root, 'package-lock.json'), old, old);
    if (built) {
      mkdirSync(join(root, 'packages', 'cli', 'dist', 'src'), { recursive: true });
      writeFileSync(join(root, 'packages', 'cli', 'dist', 'src', 'bin.js'), '');
    }
    const bin = join(root, 'fake-bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'npm'), `#!/bin/sh\necho "$@" >> "${join(root, 'npm.log')}"\n`);
    chmodSync(join(bin, 'npm'), 0o755);
    const stderr = execFileSync(process.execPath, [join(root, 'scripts', 'setup.mjs')], {
      env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
    });
    let ran = '';
    try {
      ran = readFileSync(join(root, 'npm.log'), 'utf8').trim();
    } catch {}
    return { ran, stderr };
  }

  it('installs on a first run, and again when package-lock.json changed since', () => {
    assert.equal(checkout({ installed: false, built: false }).ran, 'ci --no-audit --no-fund');
    assert.equal(checkout({ lockChanged: true }).ran, 'ci --no-audit --no-fund');
  });

  it('builds when not built, or when the sources changed since the last build', () => {
    assert.equal(checkout({ built: false }).ran, 'run build');
    assert.equal(checkout({ dry: "would build project 'x'" }).ran, 'run build');
  });

  it('does nothing when installed and built from the sources as they are', () => {
    assert.equal(checkout({}).ran, '');
    assert.equal(
      checkout({ dry: 'would update timestamps' }).ran,
      '',
      'tsc touches, npm is not run',
    );
  });
});
