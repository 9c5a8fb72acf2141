// Drives overlay nodes in child processes: spawn, wait for the ready line, send JSON commands
// and await their replies, kill. Every wait is bounded, so a broken node fails a test quickly.

import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const FIXTURE = fileURLToPath(new URL('../fixtures/overlay-node.js', import.meta.url));

export interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  code?: string;
  error?: string;
}

export class NodeProcess {
  nodeId = '';
  udp = '';
  stream = '';
  stderr = '';
  private nextId = 1;
  private readonly waiting = new Map<number, (r: Reply) => void>();
  private ready: Promise<void>;

  private constructor(
    readonly child: ChildProcess,
    readonly dataDir: string,
  ) {
    let onReady: () => void = () => undefined;
    let onFail: (e: Error) => void = () => undefined;
    this.ready = new Promise((resolve, reject) => {
      onReady = resolve;
      onFail = reject;
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    child.on('exit', (code) =>
      onFail(new Error(`node exited (${code}) before ready: ${this.stderr}`)),
    );
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('ready ')) {
        [, this.nodeId = '', this.udp = '', this.stream = ''] = line.split(' ');
        onReady();
        return;
      }
      try {
        const r = JSON.parse(line) as Reply;
        this.waiting.get(r.id)?.(r);
        this.waiting.delete(r.id);
      } catch {
        // Not ours.
      }
    });
  }

  static async start(
    dataDir: string,
    args: string[] = [],
    timeoutMs = 20_000,
  ): Promise<NodeProcess> {
    const child = spawn(process.execPath, [FIXTURE, '--data-dir', dataDir, ...args], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const p = new NodeProcess(child, dataDir);
    await withTimeout(p.ready, timeoutMs, `node in ${dataDir} to be ready`);
    return p;
  }

  async send(command: Record<string, unknown>, timeoutMs = 15_000): Promise<Reply> {
    const id = this.nextId++;
    const reply = new Promise<Reply>((resolve) => this.waiting.set(id, resolve));
    this.child.stdin!.write(`${JSON.stringify({ ...command, id })}\n`);
    return withTimeout(reply, timeoutMs, `reply to ${String(command.cmd)}`);
  }

  /** Sends and insists on success. */
  async ok<T = unknown>(command: Record<string, unknown>, timeoutMs?: number): Promise<T> {
    const r = await this.send(command, timeoutMs);
    if (!r.ok) throw new Error(`${String(command.cmd)} failed: ${r.code} ${r.error}`);
    return r.result as T;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.alive) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill(signal);
    await withTimeout(exited, 10_000, 'node to exit');
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)),
        ms,
      );
    }),
  ]);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
