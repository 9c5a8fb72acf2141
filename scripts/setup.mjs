// The step `npm start` and `npm test` share before they run anything: on a checkout where
// nothing is installed yet, or whose package-lock.json changed since (a git pull), `npm ci`
// (whose prepare step builds); where the sources changed since the last build (a git pull, a
// first build cut short), `npm run build`. Run directly (`node scripts/setup.mjs`), it does
// that and exits.
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));
export const bin = join(root, 'packages', 'cli', 'dist', 'src', 'bin.js');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

function step(args, why) {
  const what = ['npm', ...args].join(' ');
  process.stderr.write(`peerbx: ${why}, ${what}\n`);
  const r = spawnSync('npm', args, { cwd: root, stdio: ['ignore', 2, 2] });
  if (r.status !== 0) {
    process.stderr.write(`peerbx: ${what} failed; fix that, then try again\n`);
    process.exit(r.status ?? 1);
  }
}

export function setUp() {
  const installed = join(root, 'node_modules', '.package-lock.json');
  if (!existsSync(installed)) return step(['ci', '--no-audit', '--no-fund'], 'first run');
  if (statSync(join(root, 'package-lock.json')).mtimeMs > statSync(installed).mtimeMs)
    return step(['ci', '--no-audit', '--no-fund'], 'package-lock.json changed since npm ci');
  if (!existsSync(bin)) return step(['run', 'build'], 'not built yet');
  // What tsc -b would do (0.4 s when nothing changed): build, or only touch its outputs.
  const dry = spawnSync(process.execPath, [tsc, '-b', '--dry'], { cwd: root, encoding: 'utf8' });
  if (/would build/.test(dry.stdout ?? ''))
    step(['run', 'build'], 'sources changed since the last build');
  else if (/would update/.test(dry.stdout ?? ''))
    spawnSync(process.execPath, [tsc, '-b'], { cwd: root, stdio: 'ignore' });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) setUp();
