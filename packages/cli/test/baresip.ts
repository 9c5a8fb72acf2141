// A real softphone for tests: baresip (Debian package baresip-core) started by the demo phone's
// own entrypoint (docker/phone/entrypoint.sh, as docker-compose.yml starts it) and driven
// through its ctrl_tcp module: JSON commands in netstrings, and the events it reports (call
// ringing, established, media flowing, closed). Every wait is bounded, and every phone started
// here is killed when the test process exits or is interrupted (phone-processes.ts).

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createConnection, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { escapeRegExp, sleep, stopGroup, trackGroup, withTimeout } from './phone-processes.js';

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

export interface CommandReply {
  ok: boolean;
  data: string;
}

interface Pending<T> {
  resolve(value: T): void;
  reject(err: Error): void;
}

interface Waiter extends Pending<PhoneEvent> {
  match(e: PhoneEvent): boolean;
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
  /** Media as browsers take it: ICE, DTLS-SRTP, rtcp-mux (the entrypoint's PHONE_WEBRTC). */
  webrtc?: boolean;
}

/**
 * A connection to a running baresip's ctrl_tcp: commands and their replies (matched by token),
 * and the events it reports from the moment of connecting. When the connection fails or
 * closes, every command and wait still pending rejects with the reason.
 */
export class PhoneControl {
  /** Every event reported since the connection opened, oldest first. */
  readonly events: PhoneEvent[] = [];
  private readonly waiters = new Set<Waiter>();
  private readonly replies = new Map<string, Pending<CommandReply>>();
  private buffer = Buffer.alloc(0);
  private nextToken = 1;
  private failure: Error | undefined;

  private constructor(
    /** Names the phone in errors. */
    readonly name: string,
    private readonly socket: Socket,
  ) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (err) => this.fail(new Error(`phone ${name}: ${err.message}`)));
    socket.on('close', () => this.fail(new Error(`phone ${name}: control connection closed`)));
  }

  /** Connects to ctrl_tcp at host:port (rejects when nothing listens there). */
  static async connect(port: number, host = '127.0.0.1', name = `${host}:${port}`) {
    return new PhoneControl(name, await connect(port, host));
  }

  /** One ctrl_tcp command, e.g. `dial sip:bob@peerbx.local`; resolves with baresip's reply. */
  command(command: string, params = '', timeoutMs = 5000): Promise<CommandReply> {
    if (this.failure) return Promise.reject(this.failure);
    const token = `t${this.nextToken++}`;
    const json = JSON.stringify({ command, params, token });
    return withTimeout(
      new Promise<CommandReply>((resolve, reject) => {
        this.replies.set(token, { resolve, reject });
        this.socket.write(`${Buffer.byteLength(json)}:${json},`);
      }),
      timeoutMs,
      () => {
        this.replies.delete(token);
        return `phone ${this.name}: no reply to ${command} ${params}`;
      },
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
    if (this.failure) return Promise.reject(this.failure);
    let waiter: Waiter | undefined;
    return withTimeout(
      new Promise<PhoneEvent>((resolve, reject) => {
        waiter = { match: m, resolve, reject };
        this.waiters.add(waiter);
      }),
      timeoutMs,
      () => {
        if (waiter) this.waiters.delete(waiter);
        return (
          `phone ${this.name}: no ${type} within ${timeoutMs} ms; events: ` +
          this.events.map((e) => `${e.type}(${e.param ?? ''})`).join(' ')
        );
      },
    );
  }

  /** Forgets the events seen so far, so that the next waitFor waits for a new one. */
  clearEvents(): void {
    this.events.length = 0;
  }

  close(): void {
    this.socket.destroy();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const r of this.replies.values()) r.reject(this.failure);
    this.replies.clear();
    for (const w of this.waiters) w.reject(this.failure);
    this.waiters.clear();
  }

  private onData(d: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, d]);
    for (;;) {
      const colon = this.buffer.indexOf(0x3a);
      if (colon < 0) return;
      const length = Number(this.buffer.subarray(0, colon).toString());
      if (!Number.isInteger(length)) {
        this.fail(new Error(`phone ${this.name}: not a netstring from ctrl_tcp`));
        this.socket.destroy();
        return;
      }
      if (this.buffer.length < colon + 1 + length + 1) return;
      let body: {
        event?: boolean;
        response?: boolean;
        ok?: boolean;
        data?: unknown;
        token?: string;
      };
      try {
        body = JSON.parse(this.buffer.subarray(colon + 1, colon + 1 + length).toString());
      } catch {
        this.fail(new Error(`phone ${this.name}: ctrl_tcp sent something that is not JSON`));
        this.socket.destroy();
        return;
      }
      this.buffer = this.buffer.subarray(colon + 1 + length + 1);
      if (body.event) {
        const e = body as unknown as PhoneEvent;
        this.events.push(e);
        for (const w of [...this.waiters]) {
          if (w.match(e)) {
            this.waiters.delete(w);
            w.resolve(e);
          }
        }
      } else if (body.response && body.token !== undefined) {
        const r = this.replies.get(body.token);
        this.replies.delete(body.token);
        r?.resolve({ ok: body.ok === true, data: String(body.data ?? '') });
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

  /**
   * Starts the phone and opens its control connection (checked to be this phone's: its
   * reginfo names the user); the phone registers on its own (see registerStatus). The control
   * port is free when chosen but may be taken before baresip binds it; then the phone is
   * started again on another, up to three times.
   */
  static async start(o: PhoneOptions, timeoutMs = 15_000): Promise<Phone> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await Phone.startOnce(o, timeoutMs);
      } catch (err) {
        if (attempt >= 3 || !(err instanceof ControlPortError)) throw err;
      }
    }
  }

  private static async startOnce(o: PhoneOptions, timeoutMs: number): Promise<Phone> {
    const ctrlPort = await freeTcpPort();
    const env: NodeJS.ProcessEnv = {};
    // Nothing of the caller's phone settings (CALL_TO would make the phone dial by itself).
    for (const [k, v] of Object.entries(process.env)) {
      if (!/^(PHONE_|CALL_|BARESIP_|PEERBX_)/.test(k)) env[k] = v;
    }
    const child = spawn('bash', [join(PHONE, 'entrypoint.sh')], {
      env: {
        ...env,
        PHONE_USER: o.user,
        PHONE_NODE: o.node,
        PEERBX_DOMAIN: o.domain ?? 'peerbx.local',
        PHONE_LISTEN: '127.0.0.1:0',
        PHONE_CTRL: `127.0.0.1:${ctrlPort}`,
        BARESIP_CONF: o.dir,
        PHONE_TEMPLATE: join(PHONE, 'config'),
        PHONE_TRANSPORT: o.transport ?? 'udp',
        ...(o.password ? { PHONE_PASSWORD: o.password } : {}),
        ...(o.webrtc ? { PHONE_WEBRTC: '1' } : {}),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group, so that stop() reaches baresip as well as the script.
      detached: true,
    });
    trackGroup(child.pid);
    const phone = new Phone(o.user, child);
    child.on('error', () => undefined); // a failed spawn shows as an exit below
    try {
      const deadline = Date.now() + timeoutMs;
      while (!phone.ctl) {
        if (child.exitCode !== null || child.signalCode !== null) {
          const why = `phone ${o.user} exited before its control port opened:\n${phone.log}`;
          throw /Address already in use/.test(phone.log)
            ? new ControlPortError(why)
            : new Error(why);
        }
        if (Date.now() > deadline)
          throw new ControlPortError(
            `phone ${o.user}: no control port within ${timeoutMs} ms:\n${phone.log}`,
          );
        phone.ctl = await PhoneControl.connect(ctrlPort, '127.0.0.1', o.user).catch(
          () => undefined,
        );
        if (!phone.ctl) await sleep(100);
      }
      // The port was free when chosen; make sure it is this phone that took it.
      const info = await phone.ctl.command('reginfo');
      if (!info.ok || !new RegExp(`\\b${escapeRegExp(o.user)}@`).test(info.data))
        throw new ControlPortError(
          `phone ${o.user}: ctrl port ${ctrlPort} answers for another phone`,
        );
    } catch (err) {
      phone.stop();
      throw err;
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

  command(command: string, params = ''): Promise<CommandReply> {
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
    stopGroup(this.child.pid);
  }
}

/** The phone's control port was taken by something else before baresip could bind it. */
class ControlPortError extends Error {}

/** The status of the last REGISTER result baresip printed for `user`, if any. */
export function registerStatusIn(output: string, user: string): number | undefined {
  // baresip colours its errors: without the escapes a line start is one again.
  const plain = withoutColours(output);
  const u = escapeRegExp(user);
  const line = new RegExp(
    `(?:^|\\s)(?:${u}@\\S+: \\{\\d+/(?:UDP|TCP)/v4\\}|reg: sip:${u}@\\S+:) (\\d{3})`,
    'gm',
  );
  const all = [...plain.matchAll(line)];
  return all.length > 0 ? Number(all[all.length - 1]![1]) : undefined;
}

/** baresip's text without its terminal colour escapes. */
export function withoutColours(text: string): string {
  return text.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'), '');
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

export function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
