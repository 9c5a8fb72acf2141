// A `peerbx start` child process for the demo: spawned with free loopback ports, ready when it
// prints its ready line, stopped with SIGTERM (graceful leave). Its log goes to a file.

import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseHostPort } from '../config/address.js';

const BIN = fileURLToPath(new URL('../bin.js', import.meta.url));

export interface ReadyInfo {
  nodeId: string;
  overlay: string;
  sip: { host: string; port: number };
  ws: string;
}

/** Reads `peerbx ready node=.. overlay=.. sip=.. ws=..` (`wss=..` for a secure WebSocket). */
export function parseReadyLine(line: string): ReadyInfo | undefined {
  if (!line.startsWith('peerbx ready ')) return undefined;
  const f = Object.fromEntries(
    line
      .slice('peerbx ready '.length)
      .split(' ')
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  ) as Record<string, string>;
  const sip = parseHostPort(f.sip ?? '');
  if (!f.node || !f.overlay || !sip) return undefined;
  return { nodeId: f.node, overlay: f.overlay, sip, ws: f.ws ?? f.wss ?? '' };
}

export class NodeProcess {
  private constructor(
    readonly name: string,
    readonly dataDir: string,
    readonly child: ChildProcess,
    readonly info: ReadyInfo,
    readonly logFile: string,
  ) {}

  static async start(
    name: string,
    dataDir: string,
    args: string[],
    timeoutMs: number,
  ): Promise<NodeProcess> {
    const logFile = `${dataDir}.log`;
    const logFd = openSync(logFile, 'a');
    const child = spawn(process.execPath, [BIN, 'start', '--data-dir', dataDir, ...args], {
      stdio: ['ignore', 'pipe', logFd],
    });
    closeSync(logFd);
    const info = await new Promise<ReadyInfo>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${name} was not ready within ${timeoutMs} ms${tail(logFile)}`));
      }, timeoutMs);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited (code ${code}) before it was ready${tail(logFile)}`));
      });
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const ready = parseReadyLine(line);
        if (ready) {
          clearTimeout(timer);
          resolve(ready);
        }
      });
    });
    return new NodeProcess(name, dataDir, child, info, logFile);
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** SIGTERM (graceful leave), SIGKILL after `graceMs`. */
  async stop(graceMs = 8_000): Promise<number | null> {
    if (!this.alive) return this.child.exitCode;
    const exited = new Promise<number | null>((resolve) =>
      this.child.once('exit', (code) => resolve(code)),
    );
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }
}

function tail(logFile: string): string {
  try {
    const lines = readFileSync(logFile, 'utf8').trim().split('\n').slice(-3);
    return lines.length > 0 && lines[0] !== '' ? `: ${lines.join(' | ')}` : '';
  } catch {
    return '';
  }
}
