#!/usr/bin/env node
// The `peerbx` bin as npm links it. Plain JavaScript, committed, so that `npm ci` in a fresh
// clone can link it before the TypeScript build (`prepare`) has produced dist/.
try {
  await import('../dist/src/bin.js');
} catch (err) {
  if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/src/bin.js')) {
    process.stderr.write('peerbx: error: the CLI is not built yet; run `npm run build` first\n');
    process.exit(1);
  }
  throw err;
}
