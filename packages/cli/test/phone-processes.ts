// What the real-phone drivers (baresip.ts, linphone.ts) share: phone processes run in process
// groups of their own, every one still running is killed when the test process exits or is
// interrupted (SIGINT, SIGTERM, SIGHUP; not SIGKILL), and every wait is bounded.

/** Process groups of phones still running. */
const running = new Set<number>();
const killRunning = () => {
  for (const pgid of running) killGroup(pgid);
  running.clear();
};
process.on('exit', killRunning);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    killRunning();
    process.kill(process.pid, signal);
  });
}

/** Registers the phone's process group, to be killed when this process ends at the latest. */
export function trackGroup(pgid: number | undefined): void {
  if (pgid) running.add(pgid);
}

export function stopGroup(pgid: number | undefined): void {
  if (!pgid) return;
  killGroup(pgid);
  running.delete(pgid);
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // already gone
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number, why: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(why())), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
