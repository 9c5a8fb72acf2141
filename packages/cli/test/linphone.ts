// A second real softphone for tests: Linphone's console client, linphonec (Debian package
// linphone-cli), with a linphonerc of its own that points it at a node as registrar and
// outbound proxy, as a user sets up Linphone. Driven through its command line on stdin; what it
// prints on stdout is what the test waits for (each wait bounded), and the RTP statistics it
// logs when a call ends tell whether media flowed. No sound card is needed: `soundcard use
// files` makes it send a WAV file (`play`) and discard what it receives.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { escapeRegExp, sleep, stopGroup, trackGroup, withTimeout } from './phone-processes.js';

/** A WAV file linphone-cli installs: what the phones send each other. */
export const HELLO_WAV = '/usr/share/sounds/linphone/hello8000.wav';

/** Why Linphone tests cannot run here, or undefined when `linphonec` is on the PATH. */
export function linphoneMissing(): string | undefined {
  try {
    execFileSync('linphonec', ['-v'], { stdio: 'ignore', timeout: 5000 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT')
      return 'linphonec is not installed (apt-get install linphone-cli); CI installs it';
  }
  return undefined;
}

export interface LinphoneOptions {
  user: string;
  /** The node's SIP address, HOST:PORT: registrar and outbound proxy (UDP). */
  node: string;
  /** Its configuration, home and log go here. */
  dir: string;
  domain?: string;
  /** Answers incoming calls by itself (linphonec -a). */
  autoAnswer?: boolean;
}

/** RTP packets of the audio stream of the phone's last call, from its log. */
export interface RtpCount {
  sent: number;
  received: number;
}

export class Linphone {
  private output = '';
  /** Where waitFor starts looking (see mark()). */
  private from = 0;
  /** RTP statistics blocks in the log when mark() was last called. */
  private blocksAtMark = 0;

  private constructor(
    readonly user: string,
    private readonly child: ChildProcess,
    private readonly logFile: string,
  ) {
    const keep = (d: Buffer) => {
      this.output += d.toString();
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    // A command written after linphonec died fails in waitFor, with its output, not here.
    child.stdin?.on('error', () => undefined);
  }

  /** Starts linphonec, which registers by itself; its media come from and go to files. */
  static async start(o: LinphoneOptions): Promise<Linphone> {
    const domain = o.domain ?? 'peerbx.local';
    const home = join(o.dir, 'home');
    // Linphone keeps its call history in a database under HOME: without the directory it
    // never brings its SIP transports up.
    mkdirSync(join(home, '.local', 'share', 'linphone'), { recursive: true });
    const rc = join(o.dir, 'linphonerc');
    writeFileSync(
      rc,
      [
        '[sip]',
        // -1: a port of its own choosing; 0: transport off.
        'sip_port=-1',
        'sip_tcp_port=0',
        'sip_tls_port=0',
        'default_proxy=0',
        '[rtp]',
        'audio_rtp_port=-1',
        '[proxy_0]',
        `reg_proxy=<sip:${o.node}>`,
        `reg_route=<sip:${o.node};lr>`,
        `reg_identity=sip:${o.user}@${domain}`,
        'reg_expires=600',
        'reg_sendregister=1',
        'publish=0',
        '',
      ].join('\n'),
    );
    const logFile = join(o.dir, 'linphone.log');
    const child = spawn(
      'linphonec',
      ['-c', rc, '-d', '5', '-l', logFile, ...(o.autoAnswer ? ['-a'] : [])],
      {
        // Its database and settings under this phone's directory, whatever the caller's are.
        env: {
          ...process.env,
          HOME: home,
          XDG_DATA_HOME: join(home, '.local', 'share'),
          XDG_CONFIG_HOME: join(home, '.config'),
        },
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true,
      },
    );
    trackGroup(child.pid);
    child.on('error', () => undefined); // a failed spawn shows in waitFor's message
    const phone = new Linphone(o.user, child, logFile);
    try {
      phone.send('soundcard use files');
      await phone.waitFor(/Using wav files instead of soundcard/);
    } catch (err) {
      phone.stop();
      throw err;
    }
    return phone;
  }

  /** One linphonec command line, e.g. `call sip:bob@peerbx.local`. */
  send(command: string): void {
    this.child.stdin?.write(`${command}\n`);
  }

  /**
   * From now on, waitFor looks only at what the phone prints after this point, and
   * callRtp only at calls that end after it.
   */
  mark(): void {
    this.from = this.output.length;
    this.blocksAtMark = this.rtpBlocks().length;
  }

  /** The first line since mark() that matches (already printed or still to come). */
  async waitFor(re: RegExp, timeoutMs = 10_000): Promise<string> {
    const find = () =>
      this.output
        .slice(this.from)
        .split('\n')
        .find((l) => re.test(l));
    const poll = async () => {
      for (;;) {
        const line = find();
        if (line !== undefined) return line;
        if (this.child.exitCode !== null || this.child.signalCode !== null)
          throw new Error(`linphone ${this.user} exited:\n${this.output.slice(-3000)}`);
        await sleep(50);
      }
    };
    return withTimeout(
      poll(),
      timeoutMs,
      () =>
        `linphone ${this.user}: nothing matched ${re} within ${timeoutMs} ms:\n${this.output.slice(-3000)}`,
    );
  }

  /** Whether its registration at the node succeeded, asked until it has an answer. */
  async registered(timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const identity = new RegExp(`registered, identity=sip:${escapeRegExp(this.user)}@`);
    for (;;) {
      this.mark();
      this.send('status register');
      // "registered, identity=..." once it is, "registered=-1" (or 0) until then.
      if (identity.test(await this.waitFor(/registered/, 5000))) return true;
      if (Date.now() > deadline) return false;
      await sleep(200);
    }
  }

  /**
   * The audio RTP counts linphonec logged when the first call that ended after mark() ended
   * (waiting for them a while: it logs them as it tears the call down).
   */
  async callRtp(timeoutMs = 5000): Promise<RtpCount> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const block = this.rtpBlocks()[this.blocksAtMark];
      if (block !== undefined) {
        const count = (what: string) =>
          Number(new RegExp(`-${what}\\s+(\\d+) packets`).exec(block)?.[1] ?? Number.NaN);
        return { sent: count('sent'), received: count('received') };
      }
      if (Date.now() > deadline)
        throw new Error(`linphone ${this.user}: no RTP statistics of the call in ${this.logFile}`);
      await sleep(100);
    }
  }

  /** The audio RTP statistics blocks of the log, oldest first. */
  private rtpBlocks(): string[] {
    let log = '';
    try {
      log = readFileSync(this.logFile, 'utf8');
    } catch {
      return [];
    }
    return log
      .split("AUDIO SESSION'S RTP STATISTICS")
      .slice(1)
      .map((b) => b.slice(0, 3000));
  }

  get log(): string {
    return this.output;
  }

  stop(): void {
    stopGroup(this.child.pid);
  }
}
