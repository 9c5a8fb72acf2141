// A real softphone for tests: baresip (Debian package baresip-core) started by the demo phone's
// own entrypoint (docker/phone/entrypoint.sh, as docker-compose.yml starts it) and driven
// through its ctrl_tcp module: JSON commands in netstrings, and the events it reports (call
// ringing, established, media flowing, closed). Every wait is bounded.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createConnection, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PHONE = fileURLToPath(new URL('../../../../docker/phone/', import.meta.url));

/** Why baresip tests cannot run here, or undefined when `baresip` is on the PATH. */
export function baresipMissing(): string | undefined {
  try {
    execFileSync('baresip', ['-h'], { stdio: 'ignore', timeout: 5000 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      return 'baresip is not installed (apt-get install baresip-core); CI installs it';
  }
  return undefined;
}

/** One ctrl_tcp event, e.g. `{ type: 'CALL_ESTABLISHED', peeruri: 'sip:bob@peerbx.local' }`. */
export interface PhoneEvent {
  type: string;
  peeruri?: string;
  param?: string;
  [key: string]: unknown;
}

interface Waiter {
  match(e: PhoneEvent): boolean;
  resolve(e: PhoneEvent): void;
}

export interface PhoneOptions {
  user: string;
  /** The node's SIP address, HOST:PORT. */
  node: string;
  /** Configuration directory (baresip's accounts, config, uuid). */
  dir: string;
  password?: string;
  domain?: string;
  /** To the node (default udp). */
  transport?: 'udp' | 'tcp';
}

/**
 * A connection to a running baresip's ctrl_tcp: commands, their replies, and the events it
 * reports from the moment of connecting.
 */
export class PhoneControl {
  /** Every event reported since the connection opened, oldest first. */
  readonly events: PhoneEvent[] = [];
  private waiters: Waiter[] = [];
  private replies: ((reply: { ok: boolean; data: string }) => void)[] = [];
  private buffer = Buffer.alloc(0);

  private constructor(
    /** Names the phone in errors. */
    readonly name: string,
    private readonly socket: Socket,
  ) {
    socket.on('data', (d: Buffer) => this.onData(d));
  }

  /** Connects to ctrl_tcp at host:port (rejects when nothing listens there). */
  static async connect(port: number, host = '127.0.0.1', name = `${host}:${port}`) {
    return new PhoneControl(name, await connect(port, host));
  }

  /** One ctrl_tcp command, e.g. `dial sip:bob@peerbx.local`; resolves with baresip's reply. */
  command(command: string, params = '', timeoutMs = 5000): Promise<{ ok: boolean; data: string }> {
    const json = JSON.stringify({ command, params, token: command });
    return withTimeout(
      new Promise((resolve) => {
        this.replies.push(resolve);
        this.socket.write(`${Buffer.byteLength(json)}:${json},`);
      }),
      timeoutMs,
      () => `phone ${this.name}: no reply to ${command} ${params}`,
    );
  }

  /** The first event (already seen or still to come) of `type` that `match` accepts. */
  waitFor(
    type: string,
    match: (e: PhoneEvent) => boolean = () => true,
    timeoutMs = 10_000,
  ): Promise<PhoneEvent> {
    const m = (e: PhoneEvent) => e.type === type && match(e);
    const seen = this.events.find(m);
    if (seen) return Promise.resolve(seen);
    return withTimeout(
      new Promise((resolve) => this.waiters.push({ match: m, resolve })),
      timeoutMs,
      () =>
        `phone ${this.name}: no ${type} within ${timeoutMs} ms; events: ` +
        this.events.map((e) => `${e.type}(${e.param ?? ''})`).join(' '),
    );
  }

  /** Forgets the events seen so far, so that the next waitFor waits for a new one. */
  clearEvents(): void {
    this.events.length = 0;
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(d: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, d]);
    for (;;) {
      const colon = this.buffer.indexOf(0x3a);
      if (colon < 0) return;
      const length = Number(this.buffer.subarray(0, colon).toString());
      if (this.buffer.length < colon + 1 + length + 1) return;
      const body = JSON.parse(this.buffer.subarray(colon + 1, colon + 1 + length).toString());
      this.buffer = this.buffer.subarray(colon + 1 + length + 1);
      if (body.event) {
        this.events.push(body as PhoneEvent);
        for (const w of [...this.waiters]) {
          if (w.match(body)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve(body);
          }
        }
      } else if (body.response) {
        this.replies.shift()?.({ ok: body.ok === true, data: String(body.data ?? '') });
      }
    }
  }
}

/** A baresip phone started by the demo phone's entrypoint, and its control connection. */
export class Phone {
  private output = '';
  private ctl: PhoneControl | undefined;

  private constructor(
    readonly user: string,
    private readonly child: ChildProcess,
  ) {
    const keep = (d: Buffer) => {
      this.output = (this.output + d.toString()).slice(-50_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  /** Starts the phone and opens its control connection; it registers on its own. */
  static async start(o: PhoneOptions, timeoutMs = 15_000): Promise<Phone> {
    const ctrlPort = await freeTcpPort();
    const child = spawn('bash', [join(PHONE, 'entrypoint.sh')], {
      env: {
        ...process.env,
        PHONE_USER: o.user,
        PHONE_NODE: o.node,
        PEERBX_DOMAIN: o.domain ?? 'peerbx.local',
        PHONE_LISTEN: '127.0.0.1:0',
        PHONE_CTRL: `127.0.0.1:${ctrlPort}`,
        BARESIP_CONF: o.dir,
        PHONE_TEMPLATE: join(PHONE, 'config'),
        PHONE_TRANSPORT: o.transport ?? 'udp',
        ...(o.password ? { PHONE_PASSWORD: o.password } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so that stop() reaches baresip as well as the script.
      detached: true,
    });
    const phone = new Phone(o.user, child);
    const deadline = Date.now() + timeoutMs;
    while (!phone.ctl) {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`phone ${o.user} exited before its control port opened:\n${phone.log}`);
      if (Date.now() > deadline) {
        phone.stop();
        throw new Error(`phone ${o.user}: no control port within ${timeoutMs} ms:\n${phone.log}`);
      }
      phone.ctl = await PhoneControl.connect(ctrlPort, '127.0.0.1', o.user).catch(() => undefined);
      if (!phone.ctl) await sleep(100);
    }
    return phone;
  }

  get control(): PhoneControl {
    if (!this.ctl) throw new Error(`phone ${this.user} has no control connection`);
    return this.ctl;
  }

  /** What baresip and the entrypoint printed (the last 50 kB). */
  get log(): string {
    return this.output;
  }

  get events(): PhoneEvent[] {
    return this.control.events;
  }

  command(command: string, params = ''): Promise<{ ok: boolean; data: string }> {
    return this.control.command(command, params);
  }

  waitFor(type: string, match?: (e: PhoneEvent) => boolean, timeoutMs?: number) {
    return this.control.waitFor(type, match, timeoutMs);
  }

  clearEvents(): void {
    this.control.clearEvents();
  }

  /**
   * The final status of the phone's last REGISTER (e.g. 200, 401, 403), read from baresip's
   * account line once one appears: `alice@peerbx.local: {0/UDP/v4} 200 OK () [1 binding]` (or
   * TCP) or `reg: sip:alice@peerbx.local: 401 Unauthorized ()`.
   */
  async registerStatus(timeoutMs = 10_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = registerStatusIn(this.output, this.user);
      if (status !== undefined) return status;
      if (Date.now() > deadline)
        throw new Error(
          `phone ${this.user}: no REGISTER result within ${timeoutMs} ms:\n${this.log}`,
        );
      await sleep(100);
    }
  }

  stop(): void {
    this.ctl?.close();
    try {
      if (this.child.pid) process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** The status of the last REGISTER result baresip printed for `user`, if any. */
export function registerStatusIn(output: string, user: string): number | undefined {
  const line = new RegExp(
    `(?:${user}@\\S+: \\{0/(?:UDP|TCP)/v4\\}|reg: sip:${user}@\\S+:) (\\d{3})`,
    'g',
  );
  const all = [...output.matchAll(line)];
  return all.length > 0 ? Number(all[all.length - 1]![1]) : undefined;
}

function connect(port: number, host: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection(port, host);
    s.once('connect', () => {
      s.removeListener('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, why: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(why())), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
