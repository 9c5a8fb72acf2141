// What a benchmark ran on, printed above every table and stored with the JSON.

import { cpus, freemem, totalmem } from 'node:os';

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  freeGiB: number;
  node: string;
  platform: string;
  date: string;
}

export function machineInfo(): MachineInfo {
  const c = cpus();
  return {
    cpu: c[0]?.model.trim() ?? 'unknown',
    cores: c.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    freeGiB: Math.round((freemem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    date: new Date().toISOString(),
  };
}

export function describeMachine(m: MachineInfo): string {
  return `ran on: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB (${m.freeGiB} free), node ${m.node}, ${m.platform}, ${m.date}`;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] as number;
}

/** Prints rows as an aligned text table. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => c.padStart(widths[i] ?? 0)).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.slice(1).map(line)].join(
    '\n',
  );
}

/** A benchmark's `--name value` flags, read by name (see benchFlags). */
export interface BenchFlags {
  /** The flag's value, or `fallback` when it is not given. */
  string(name: string, fallback: string): string;
  /** The flag as a number of at least `min`; anything else is a one-line error (exit 2). */
  number(name: string, fallback: number, min?: number): number;
}

/**
 * Checks a benchmark's command line before it starts a long run: `--help` prints the usage
 * and exits 0; a flag not in `usage` (its names and example values) or without a value is a
 * one-line error, exit 2. `hidden` flags are accepted but not shown (a parent's flags to its
 * child processes).
 */
export function benchFlags(
  script: string,
  usage: Record<string, string>,
  argv: readonly string[] = process.argv.slice(2),
  hidden: readonly string[] = [],
): BenchFlags {
  const shown = `usage: ${script} ${Object.entries(usage)
    .map(([name, example]) => `[--${name} ${example}]`)
    .join(' ')}`;
  const fail = (why: string): never => {
    console.error(`${script}: ${why}; ${shown}`);
    process.exit(2);
  };
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(shown);
    process.exit(0);
  }
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i] ?? '';
    const name = flag.slice(2);
    if (!flag.startsWith('--') || !(name in usage || hidden.includes(name)))
      fail(`${flag} is not one of its flags`);
    const value = argv[i + 1];
    if (value === undefined) fail(`${flag} needs a value`);
    values.set(name, value as string);
  }
  return {
    string: (name, fallback) => values.get(name) ?? fallback,
    number(name, fallback, min = Number.NEGATIVE_INFINITY) {
      const given = values.get(name);
      const v = given === undefined ? fallback : Number(given);
      if (!Number.isFinite(v) || v < min)
        fail(`--${name} must be a number of at least ${min}, not ${given}`);
      return v;
    },
  };
}
