#!/usr/bin/env node
// `npm start`: one command from a fresh checkout to a running node. Installs and builds first
// when that has not been done (`npm ci`, whose prepare step builds; `npm run build` when only
// the build is missing), then runs `peerbx start` in the foreground with the arguments given
// (`npm start -- --bootstrap HOST:PORT`). Ctrl-C reaches the node, which leaves the overlay
// gracefully; this script exits with the node's exit code.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const bin = join(root, 'packages', 'cli', 'dist', 'src', 'bin.js');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function step(args) {
  process.stderr.write(`peerbx: first run, ${['npm', ...args].join(' ')}\n`);
  const r = spawnSync(npm, args, { cwd: root, stdio: ['ignore', 2, 2] });
  if (r.status !== 0) {
    process.stderr.write(
      `peerbx: ${['npm', ...args].join(' ')} failed; fix that, then npm start\n`,
    );
    process.exit(r.status ?? 1);
  }
}

if (!existsSync(join(root, 'node_modules', '.package-lock.json')))
  step(['ci', '--no-audit', '--no-fund']);
else if (!existsSync(bin)) step(['run', 'build']);

// The node runs in a process group of its own, and each signal this script gets is passed on
// once: Ctrl-C on a terminal reaches this script's group, and npm passes its own signals on
// too, so a node in the same group would see two and skip its graceful leave.
const child = spawn(process.execPath, [bin, 'start', ...process.argv.slice(2)], {
  stdio: 'inherit',
  detached: true,
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => child.kill(signal));
}
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
