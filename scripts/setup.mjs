// The first-run step `npm start` and `npm test` share: on a checkout where nothing is
// installed yet, `npm ci` (whose prepare step builds); where only the build is missing,
// `npm run build`. Run directly (`node scripts/setup.mjs`), it does that and exits.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));
export const bin = join(root, 'packages', 'cli', 'dist', 'src', 'bin.js');

function step(args) {
  const what = ['npm', ...args].join(' ');
  process.stderr.write(`peerbx: first run, ${what}\n`);
  const r = spawnSync('npm', args, { cwd: root, stdio: ['ignore', 2, 2] });
  if (r.status !== 0) {
    process.stderr.write(`peerbx: ${what} failed; fix that, then try again\n`);
    process.exit(r.status ?? 1);
  }
}

export function setUp() {
  if (!existsSync(join(root, 'node_modules', '.package-lock.json')))
    step(['ci', '--no-audit', '--no-fund']);
  else if (!existsSync(bin)) step(['run', 'build']);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) setUp();
