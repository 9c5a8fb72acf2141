// The data directory's lock file: a node that runs keeps it; one killed, a zombie, or a PID
// that belongs to another process since (a reboot) leaves it to be taken over.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ensureDataDir, lockDataDir } from '../src/identity/data-dir.js';

const noProc = !existsSync('/proc/self/stat') && 'needs Linux /proc';

/** Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot. */
function startTime(pid: number): string {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2).split(' ')[19] ?? '';
}

describe('the data directory lock', { skip: noProc }, () => {
  it('is kept by a running node, and taken over when its PID is now another process', async () => {
    const root = mkdtempSync(join(tmpdir(), 'peerbx-lock-'));
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    try {
      const paths = ensureDataDir(root);
      const pid = other.pid ?? 0;
      await new Promise((resolve) => other.once('spawn', resolve));
      // The PID of a live process, with the start time it has: a node that runs.
      writeFileSync(paths.lock, `${pid} ${startTime(pid)}\n`);
      assert.throws(() => lockDataDir(paths), /in use by a running node \(pid \d+\)/);
      // The same PID started at another time (the lock is from before a reboot): stale.
      writeFileSync(paths.lock, `${pid} 1\n`);
      const release = lockDataDir(paths);
      assert.equal(readFileSync(paths.lock, 'utf8'), `${process.pid} ${startTime(process.pid)}\n`);
      release();
      assert.equal(existsSync(paths.lock), false);
    } finally {
      other.kill();
      rmSync(root, { recursive: true, force: true });
    }
  });
});
