// Runs the built `peerbx` as a user would: one-shot commands, and `peerbx start` processes that
// are ready when their ready line appears. Every wait is bounded.

import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../src/bin.js', import.meta.url));

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `peerbx ...args`, with PEERBX_* cleared unless given. */
export function peerbx(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 30_000,
): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { env: cleanEnv(env), timeout: timeoutMs },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PEERBX_')) env[k] = v;
  return { ...env, ...extra };
}

export interface Ready {
  node: string;
  overlay: string;
  sip: string;
  ws: string;
}

/** `peerbx start` on free loopback ports without WebSocket, for a run expected to fail. */
export function startArgs(dataDir: string, ...extra: string[]): string[] {
  return startArgsAt(dataDir, {}, ...extra);
}

/** `start` on the overlay and SIP addresses given (a free port on 127.0.0.1 otherwise), no WS. */
export function startArgsAt(
  dataDir: string,
  at: { overlay?: string; sip?: string },
  ...extra: string[]
): string[] {
  const addresses = ['--overlay', at.overlay ?? '127.0.0.1:0', '--sip', at.sip ?? '127.0.0.1:0'];
  return ['start', '--data-dir', dataDir, ...addresses, '--ws', 'off', ...extra];
}

export class StartedNode {
  stderr = '';
  private constructor(
    readonly child: ChildProcess,
    readonly dataDir: string,
    readonly ready: Ready,
    readonly stdoutLines: string[],
  ) {}

  /**
   * `extra` may name an address of its own (`--ws 127.0.0.1:5066`); the others get free ports.
   * The log level is debug unless `extra` names one.
   */
  static async start(dataDir: string, extra: string[] = [], timeoutMs = 20_000) {
    const addresses = ['--overlay', '--sip', '--ws']
      .filter((flag) => !extra.includes(flag))
      .flatMap((flag) => [flag, '127.0.0.1:0']);
    const level = extra.includes('--log-level') ? [] : ['--log-level', 'debug'];
    const child = spawn(
      process.execPath,
      [BIN, 'start', '--data-dir', dataDir, ...addresses, ...level, ...extra],
      { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-20_000);
    });
    const lines: string[] = [];
    const ready = await new Promise<Ready>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`no ready line within ${timeoutMs} ms: ${stderr}`));
      }, timeoutMs);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`peerbx start exited ${code}: ${stderr}`));
      });
      createInterface({ input: child.stdout! }).on('line', (line) => {
        lines.push(line);
        const m = /^peerbx ready node=([0-9a-f]{64}) overlay=(\S+) sip=(\S+) wss?=(\S+)$/.exec(
          line,
        );
        if (m) {
          clearTimeout(timer);
          resolve({ node: m[1]!, overlay: m[2]!, sip: m[3]!, ws: m[4]! });
        }
      });
    });
    const node = new StartedNode(child, dataDir, ready, lines);
    node.stderr = stderr;
    child.stderr?.on('data', (d: Buffer) => {
      node.stderr = (node.stderr + d.toString()).slice(-20_000);
    });
    return node;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends `signal` and resolves with the exit code (SIGKILL after 10 s). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (!this.alive) return this.child.exitCode;
    const exited = new Promise<number | null>((resolve) =>
      this.child.once('exit', (code) => resolve(code)),
    );
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }
}

export function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'peerbx-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A REGISTER of `user` (at peerbx.local) binding `sip:user@contact`, sent over UDP to the node's
 * SIP address (`127.0.0.1:port`, as the ready line gives it); resolves with the answer's status
 * line.
 */
export function udpRegister(sip: string, user: string, contact: string): Promise<string> {
  const callId = `reg-${user}-${contact}`;
  return udpRequest(
    sip,
    (viaPort) =>
      registerText({
        requestUri: `sip:${sip}`,
        viaPort,
        branch: `z9hG4bK${callId}`,
        user,
        callId,
        contact,
        expires: 600,
      }),
    `${user}'s REGISTER`,
  );
}

/**
 * Sends the request `text(viaPort)` from a UDP socket of its own on 127.0.0.1 to the node's
 * SIP address; resolves with the status line of the first final answer.
 */
export async function udpRequest(
  sip: string,
  text: (viaPort: number) => string,
  what: string,
): Promise<string> {
  const sock = createSocket('udp4');
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
  const port = Number(sip.slice(sip.lastIndexOf(':') + 1));
  try {
    return await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to ${what}`)), 10_000);
      sock.on('message', (m) => {
        const status = m.toString().split('\r\n')[0] ?? '';
        if (/^SIP\/2\.0 1\d\d /.test(status)) return;
        clearTimeout(timer);
        resolve(status);
      });
      sock.send(text(sock.address().port), port, '127.0.0.1');
    });
  } finally {
    sock.close();
  }
}

/**
 * A REGISTER of `user` (at peerbx.local) from 127.0.0.1:`viaPort` binding `sip:user@contact`,
 * with `headers` after its Contact.
 */
export function registerText(o: {
  requestUri: string;
  viaPort: number;
  branch: string;
  user: string;
  callId: string;
  cseq?: number;
  contact: string;
  expires?: number;
  headers?: string[];
}): string {
  return [
    `REGISTER ${o.requestUri} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.1:${o.viaPort};branch=${o.branch};rport`,
    `From: <sip:${o.user}@peerbx.local>;tag=1`,
    `To: <sip:${o.user}@peerbx.local>`,
    `Call-ID: ${o.callId}`,
    `CSeq: ${o.cseq ?? 1} REGISTER`,
    `Contact: <sip:${o.user}@${o.contact}>`,
    ...(o.headers ?? []),
    ...(o.expires === undefined ? [] : [`Expires: ${o.expires}`]),
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n');
}

/** Whether process `pid` still runs. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * `peerbx args` under a parent process that stands for npm and its shell, both with `env`. The
 * parent prints the child's pid; the child's output goes to the parent's pipes, which the
 * child keeps open once the parent is gone. Resolves once the output matches `ready`.
 */
export async function underParent(
  args: string[],
  env: NodeJS.ProcessEnv,
  ready: RegExp,
): Promise<{ parent: ChildProcess; pid: number; out: () => string; err: () => string }> {
  const parent = spawn(
    process.execPath,
    [
      '-e',
      `const c = require('node:child_process').spawn(process.execPath, ${JSON.stringify([BIN, ...args])}, { stdio: ['ignore', 'inherit', 'inherit'] });
      console.log('child ' + c.pid);
      setInterval(() => {}, 1000);`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env },
  );
  let out = '';
  let err = '';
  parent.stderr?.on('data', (d) => {
    err += d;
  });
  const pid = await new Promise<number>((resolve, reject) => {
    parent.stdout?.on('data', (d) => {
      out += d;
      const m = /child (\d+)\n/.exec(out);
      if (m && ready.test(out)) resolve(Number(m[1]));
    });
    parent.once('exit', () => reject(new Error(`parent exited: ${out} ${err}`)));
  });
  return { parent, pid, out: () => out, err: () => err };
}

/**
 * A self-signed certificate for 127.0.0.1 (EC P-256, 2 days), made with openssl for the wss
 * tests: the paths of its PEM files in `dir`, and why there are none (a skip reason) or false.
 */
export function testCertificate(dir: string): { cert: string; key: string; skip: string | false } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const made = spawnSync('openssl', [
    ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'],
    ...['-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
    ...['-keyout', key, '-out', cert],
  ]);
  const failed = made.error || made.status !== 0;
  return { cert, key, skip: failed ? 'openssl cannot make a test certificate here' : false };
}

/**
 * Runs `node ...args` on a terminal, then hangs that terminal up, as a closed terminal window
 * or SSH session does. `script` gives a shell stand-in the terminal; killing `script` hangs it
 * up, and the stand-in passes the hang-up on to the process, as a login shell does to its
 * jobs. Resolves with how the process ended (its exit code, or the signal that ended it; ''
 * when it did not end in time) and its stderr, which goes to a file in `dir`.
 */
export async function hangUpOn(
  dir: string,
  args: string[],
  ready: RegExp,
): Promise<{ ended: string; stderr: string }> {
  const err = join(dir, 'stderr');
  const ended = join(dir, 'ended');
  const shell = join(dir, 'shell.cjs');
  const readIf = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8') : '');
  writeFileSync(
    shell,
    `const { spawn } = require('node:child_process');
    const { openSync, writeFileSync } = require('node:fs');
    const job = spawn(process.execPath, ${JSON.stringify(args)},
      { stdio: ['inherit', 'inherit', openSync(${JSON.stringify(err)}, 'w')] });
    process.on('SIGHUP', () => job.kill('SIGHUP'));
    job.on('exit', (code, signal) => {
      writeFileSync(${JSON.stringify(ended)}, String(signal ?? code));
      process.kill(process.pid, 'SIGKILL');
    });`,
  );
  const term = spawn('script', ['-q', '-c', `exec '${process.execPath}' '${shell}'`, '/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: cleanEnv(),
  });
  try {
    let shown = '';
    const isReady = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 20_000);
      term.stdout?.on('data', (d: Buffer) => {
        shown += d.toString();
        if (ready.test(shown)) {
          clearTimeout(timer);
          resolve(true);
        }
      });
      term.once('exit', () => resolve(false));
    });
    if (!isReady) throw new Error(`no ready line on the terminal: ${shown} ${readIf(err)}`);
    term.kill('SIGKILL');
    const deadline = Date.now() + 15_000;
    while (!existsSync(ended) && Date.now() < deadline) await sleep(100);
    return { ended: readIf(ended), stderr: readIf(err) };
  } finally {
    term.kill('SIGKILL');
  }
}
