// `npm start` (scripts/start.mjs), README's one command from a checkout to a running node: on
// an installed checkout it runs `peerbx start` with the arguments given, and Ctrl-C reaches
// the node once, so it leaves the overlay gracefully. (The install step on a fresh checkout,
// `npm ci`, is what .ci/run does before any test.)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { hangUpOn } from '../packages/cli/dist/test/helpers.js';

const script = fileURLToPath(new URL('../scripts/start.mjs', import.meta.url));

/** `npm start` on free loopback ports, without WebSocket. */
const startArgs = (dataDir) => [
  script,
  '--data-dir',
  dataDir,
  '--overlay',
  '127.0.0.1:0',
  '--sip',
  '127.0.0.1:0',
  '--ws',
  'off',
];

/** The pid of the node running with `dataDir`, from its lock (0: none). */
const nodePid = (dataDir) => {
  try {
    return Number.parseInt(readFileSync(join(dataDir, 'node.lock'), 'utf8'), 10);
  } catch {
    return 0; // gone, or never started
  }
};

/** SIGKILL to a process (or a group, negative), unless it is gone. */
const kill = (pid) => {
  try {
    if (pid) process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
};

describe('npm start', () => {
  it('runs a node and, on Ctrl-C, lets it leave the overlay gracefully', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'peerbx-start-'));
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('PEERBX_')),
    );
    // Its own process group, as a terminal's foreground job: Ctrl-C goes to the whole group.
    const child = spawn(process.execPath, startArgs(dir), {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d.toString();
    });
    const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const ready = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ready line:\n${stderr}`)), 20_000);
        createInterface({ input: child.stdout }).on('line', (line) => {
          if (!line.startsWith('peerbx ready ')) return;
          clearTimeout(timer);
          resolve(line);
        });
      });
      assert.match(
        ready,
        /^peerbx ready node=[0-9a-f]{64} overlay=127\.0\.0\.1:\d+ sip=127\.0\.0\.1:\d+ ws=off$/,
      );
      // Ctrl-C on the terminal, and the same signal passed on by npm (where its shell execs
      // the script): one reaches the node.
      process.kill(-child.pid, 'SIGINT');
      await new Promise((r) => setTimeout(r, 5));
      try {
        process.kill(child.pid, 'SIGINT');
      } catch {
        // Already gone: the node left within 5 ms.
      }
      assert.equal(await exited, 0, stderr);
      assert.match(stderr, /leaving the overlay/);
      assert.doesNotMatch(stderr, /second signal/, 'the node got Ctrl-C once');
    } finally {
      // The script's process group, then the node, which has one of its own.
      kill(-child.pid);
      kill(nodePid(dir));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('lets the node leave and exits 0 when its terminal hangs up (no abort at exit)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'peerbx-start-'));
    try {
      const { ended, stderr } = await hangUpOn(dir, startArgs(join(dir, 'node')), /peerbx ready/);
      assert.equal(ended, '0', stderr);
      assert.match(stderr, /"signal":"SIGHUP".*leaving the overlay[\s\S]*stopped/);
      assert.doesNotMatch(stderr, /second signal/);
    } finally {
      kill(nodePid(join(dir, 'node')));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
