#!/usr/bin/env node
// `npm start`: one command from a fresh checkout to a running node. Installs and builds first
// when that has not been done (setup.mjs; after a `git pull`, run `npm ci` yourself), then
// runs `peerbx start` in the foreground with the arguments given (`npm start -- --bootstrap
// HOST:PORT`). Ctrl-C reaches the node once, and it leaves the overlay gracefully.
import { spawn } from 'node:child_process';
import { closeSync } from 'node:fs';
import { isatty } from 'node:tty';
import { bin, setUp } from './setup.mjs';

setUp();

// The node runs in a process group of its own and gets each signal once: Ctrl-C on a terminal
// reaches this script's group, and npm may pass the same signal on again (where its shell
// execs the script), so a node in this group could see two and skip its graceful leave. A
// repeat within a second is that echo; a second Ctrl-C later still reaches the node (which
// then exits at once). A closed terminal (SIGHUP) asks the node to leave too.
const child = spawn(process.execPath, [bin, 'start', ...process.argv.slice(2)], {
  stdio: 'inherit',
  detached: true,
});
// The standard streams that are a terminal: once it hung up, they are closed before exit, as
// Node aborts at exit restoring a terminal that is gone (the node does the same).
const terminals = [0, 1, 2].filter((fd) => isatty(fd));
let hungUp = false;
let last = 0;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (signal === 'SIGHUP') hungUp = true;
    const now = Date.now();
    if (now - last < 1000) return;
    last = now;
    child.kill(signal);
  });
}
// A SIGTERM to npm (a supervisor stopping `npm start`) ends npm and its shell, not this
// script: once its parent is gone, the node is asked to leave as that SIGTERM would have.
const parent = process.ppid;
const orphaned = setInterval(() => {
  if (process.ppid === parent) return;
  clearInterval(orphaned);
  // Unless a signal came first (a hang-up ends npm too): a second would be an insistence.
  if (last === 0) child.kill('SIGTERM');
}, 500);
orphaned.unref();
child.on('exit', (code, signal) => {
  if (hungUp) for (const fd of terminals) closeSync(fd);
  process.exit(code ?? (signal ? 1 : 0));
});
