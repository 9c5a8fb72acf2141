// A process run by npm (`npx peerbx ...`, `npm start`) never sees a supervisor's SIGTERM to npm:
// it ends npm and the shell npm ran it from, and this process would run on orphaned, holding
// its ports. Such a process takes its parent's going as that SIGTERM.

/** How often the parent is checked, ms. */
const PARENT_CHECK_MS = 500;

/**
 * Calls `then` once this process's parent has gone (it was given to another, init say), when
 * npm started it; never otherwise (a service manager's child, a shell's &, outlives its parent
 * by design).
 */
export function onNpmParentGone(then: () => void): void {
  if (process.env.npm_command === undefined) return;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    then();
  }, PARENT_CHECK_MS);
  timer.unref();
}
