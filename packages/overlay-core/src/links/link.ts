// One authenticated stream connection to another node, multiplexing reliable ordered message
// channels (one per application conversation, e.g. SIP). Channel IDs are odd when opened by the
// dialling side and even when opened by the accepting side, so the two never collide.

import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { type Clock, idToHex, type NodeId, systemClock } from '@peerbx/dht-kademlia';
import { OverlayError, type OverlayErrorCode } from '../errors.js';
import {
  APPLICATION_NAME_RE,
  decodeFrame,
  encodeFrameBody,
  type Frame,
  type FrameDecoder,
  type LinkRole,
  MAX_FRAME_BYTES,
  MAX_MESSAGE_BYTES,
} from './framing.js';
import {
  endStream,
  type FrameCipher,
  type HandshakeResult,
  SEAL_OVERHEAD_BYTES,
} from './handshake.js';

/** A PING goes out this often on an idle or busy link alike. */
export const KEEPALIVE_INTERVAL_MS = 15_000;
/** The link is closed when this many PINGs in a row went unanswered. */
export const MAX_MISSED_PONGS = 3;
/**
 * A peer that sent nothing for this long after we sent it data or an OPEN is asked at once
 * (a PING) whether it is still there: a node whose power failed, or whose cable was pulled,
 * closes no connection, and a call sent to it would otherwise wait for the keepalives (45 s).
 */
export const SILENCE_PROBE_MS = 2_000;
/** That PING unanswered this long (and nothing else heard), the link is closed as dead. */
export const SILENCE_PROBE_TIMEOUT_MS = 4_000;
/**
 * Bytes waiting to be sent on a link beyond which its peer is taken to read nothing (a peer
 * that floods PINGs and never reads our PONGs, say): the link is closed rather than let grow.
 */
export const MAX_UNSENT_BYTES = 16 * 2 ** 20;
/** An OPEN not answered (ACCEPT or CLOSE) by then fails. */
export const OPEN_TIMEOUT_MS = 10_000;
/** Open channels per link and direction; a further OPEN is refused with ERR_LIMIT. */
export const MAX_CHANNELS_PER_LINK = 1024;

export type ChannelHandler = (channel: Channel, link: Link) => void;

export interface ChannelEvents {
  /** One whole message, in the order sent. The bytes may be a view on a receive buffer. */
  message: [data: Uint8Array];
  /** Closed by either side (no error) or because the link failed (error). Emitted once. */
  close: [error?: OverlayError];
}

type ChannelState = 'opening' | 'open' | 'closed';
type QueuedEvent = { message: Uint8Array } | { close: OverlayError | undefined };

/**
 * A reliable, ordered, bidirectional message channel over a link. Attach listeners as soon as
 * you hold the channel: synchronously in the handler for incoming channels, right after the
 * `openChannel`/`connect` promise resolves for outgoing ones (events are held until then).
 */
export class Channel extends EventEmitter<ChannelEvents> {
  readonly id: number;
  readonly application: string;
  readonly link: Link;
  /** True when this side opened the channel. */
  readonly initiator: boolean;
  messagesIn = 0;
  messagesOut = 0;
  private state: ChannelState;
  private held: QueuedEvent[] | undefined;

  /** @internal Channels are made by Link. */
  constructor(link: Link, id: number, application: string, initiator: boolean) {
    super();
    this.link = link;
    this.id = id;
    this.application = application;
    this.initiator = initiator;
    this.state = initiator ? 'opening' : 'open';
    // Outgoing channels hold their events until the opener has had a chance to listen.
    this.held = initiator ? [] : undefined;
  }

  get remoteNodeId(): NodeId {
    return this.link.remoteNodeId;
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /**
   * Sends one message. Returns false when the link's write buffer is full (wait for the link's
   * 'drain' before sending much more). Throws ERR_UNREACHABLE on a closed channel and ERR_LIMIT
   * for a message larger than MAX_MESSAGE_BYTES.
   */
  send(data: Uint8Array): boolean {
    if (this.state !== 'open') {
      throw new OverlayError(
        'ERR_UNREACHABLE',
        `channel ${this.id} ("${this.application}") to node ${this.link.remoteNodeIdHex} is ${this.state === 'closed' ? 'closed' : 'not open yet'}`,
      );
    }
    if (data.length > MAX_MESSAGE_BYTES) {
      throw new OverlayError(
        'ERR_LIMIT',
        `message of ${data.length} bytes is larger than the ${MAX_MESSAGE_BYTES}-byte channel limit`,
      );
    }
    this.messagesOut++;
    return this.link.writeFrame({ type: 'DATA', channelId: this.id, data });
  }

  /**
   * Asks the node at the other end whether it is still there (Link.probe): while something
   * is awaited from it (a call ringing there), a power cut there closes the channel within
   * seconds.
   */
  probe(): void {
    if (this.state === 'open') this.link.probe();
  }

  /** Closes this channel only; the peer sees 'close' without an error. */
  close(): void {
    if (this.state === 'closed') return;
    this.link.closeChannel(this);
  }

  /** @internal */
  opened(): void {
    this.state = 'open';
    // Released after the awaiting opener's continuation has run and attached its listeners.
    setImmediate(() => this.release());
  }

  /** @internal */
  deliver(data: Uint8Array): void {
    this.messagesIn++;
    this.dispatch({ message: data });
  }

  /** @internal */
  finish(error: OverlayError | undefined): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.dispatch({ close: error });
  }

  private dispatch(event: QueuedEvent): void {
    if (this.held) {
      this.held.push(event);
      return;
    }
    if ('message' in event) this.emit('message', event.message);
    else this.emit('close', event.close);
  }

  private release(): void {
    const held = this.held;
    this.held = undefined;
    for (const event of held ?? []) this.dispatch(event);
  }
}

export interface LinkEvents {
  /** The link is gone: closed by us (no error), by the peer, or broken (error). Emitted once. */
  close: [error?: OverlayError];
  /** The write buffer has emptied after a send returned false. */
  drain: [];
}

export interface LinkOptions {
  stream: Duplex;
  /** The decoder the handshake read with; it may already hold the peer's first frames. */
  decoder: FrameDecoder;
  handshake: HandshakeResult;
  direction: 'outbound' | 'inbound';
  remoteAddress: string;
  /** Finds the handler for an incoming channel; undefined refuses it with ERR_NOT_FOUND. */
  acceptChannel?: (application: string) => ChannelHandler | undefined;
  /** Told of each malformed frame or protocol violation, just before the link closes. */
  onProtocolError?: (kind: 'malformed' | 'violation', error: OverlayError) => void;
  clock?: Clock;
  keepaliveIntervalMs?: number;
  maxMissedPongs?: number;
  silenceProbeMs?: number;
  silenceProbeTimeoutMs?: number;
  maxUnsentBytes?: number;
  openTimeoutMs?: number;
  maxChannels?: number;
}

export interface LinkInfo {
  remoteNodeId: string;
  remoteAddress: string;
  direction: 'outbound' | 'inbound';
  role: LinkRole;
  version: number;
  establishedAt: number;
  channels: { id: number; application: string; initiator: boolean }[];
  bytesIn: number;
  bytesOut: number;
  framesIn: number;
  framesOut: number;
}

interface PendingOpen {
  channel: Channel;
  resolve: (channel: Channel) => void;
  reject: (error: OverlayError) => void;
  timer: ReturnType<Clock['setTimeout']>;
}

/** One authenticated connection; made by LinkManager after a successful handshake. */
export class Link extends EventEmitter<LinkEvents> {
  readonly remoteNodeId: NodeId;
  readonly remoteNodeIdHex: string;
  readonly remotePublicKey: Uint8Array;
  readonly remoteRole: LinkRole;
  readonly remoteAddress: string;
  readonly direction: 'outbound' | 'inbound';
  readonly version: number;
  readonly establishedAt: number;
  bytesIn = 0;
  bytesOut = 0;
  framesIn = 0;
  framesOut = 0;

  private readonly stream: Duplex;
  private readonly decoder: FrameDecoder;
  private readonly cipher: FrameCipher;
  private readonly clock: Clock;
  private readonly options: LinkOptions;
  private readonly channels = new Map<number, Channel>();
  private readonly pendingOpens = new Map<number, PendingOpen>();
  private nextChannelId: number;
  /** Highest channel ID the peer has opened so far (IDs only grow). */
  private lastRemoteChannelId = 0;
  private remoteChannelCount = 0;
  private isClosed = false;
  private missedPongs = 0;
  private pingSeq = 0;
  private keepaliveTimer: ReturnType<Clock['setTimeout']> | undefined;
  /** When we first sent data (or an OPEN) that nothing from the peer has followed yet. */
  private unansweredSince: number | undefined;
  /** Chunks of bytes received from the peer so far (a probe's verdict compares them). */
  private chunksIn = 0;
  /** Due when that silence is worth a probe, or when the probe has gone unanswered. */
  private silenceTimer: ReturnType<Clock['setTimeout']> | undefined;
  /**
   * Where this loop turn's writes are (see writeFrame): none yet; the first one went out; the
   * ones after it are held back (corked) until the turn ends.
   */
  private turn: 'idle' | 'wrote' | 'corked' = 'idle';
  private readonly endTurn = () => {
    const corked = this.turn === 'corked';
    this.turn = 'idle';
    if (corked) this.stream.uncork();
  };

  constructor(options: LinkOptions) {
    super();
    this.options = options;
    this.stream = options.stream;
    this.decoder = options.decoder;
    this.decoder.maxFrameBytes = MAX_FRAME_BYTES + SEAL_OVERHEAD_BYTES;
    this.cipher = options.handshake.cipher;
    this.clock = options.clock ?? systemClock;
    this.remotePublicKey = options.handshake.remotePublicKey;
    this.remoteNodeId = options.handshake.remoteNodeId;
    this.remoteNodeIdHex = idToHex(this.remoteNodeId);
    this.remoteRole = options.handshake.remoteRole;
    this.version = options.handshake.version;
    this.remoteAddress = options.remoteAddress;
    this.direction = options.direction;
    this.establishedAt = this.clock.now();
    this.nextChannelId = options.direction === 'outbound' ? 1 : 2;

    this.stream.on('data', (chunk: Buffer) => this.onData(chunk));
    this.stream.on('drain', () => this.emit('drain'));
    this.stream.on('error', (err: Error) =>
      this.terminate(this.unreachable(`failed: ${err.message}`, err), 'none'),
    );
    this.stream.on('end', () => this.terminate(this.unreachable('was closed by the peer'), 'end'));
    this.stream.on('close', () => this.terminate(this.unreachable('broke'), 'none'));
    if (this.stream.destroyed) {
      this.terminate(this.unreachable('broke during the handshake'), 'none');
      return;
    }
    this.scheduleKeepalive();
    // Frames that came with the peer's AUTH are already in the decoder.
    queueMicrotask(() => this.drainDecoder());
    this.stream.resume();
  }

  get closed(): boolean {
    return this.isClosed;
  }

  get channelCount(): number {
    return this.channels.size;
  }

  /** Opens a channel to the peer's handler for `application`; rejects if the peer has none. */
  openChannel(application: string): Promise<Channel> {
    if (!APPLICATION_NAME_RE.test(application)) {
      return Promise.reject(
        new OverlayError(
          'ERR_MALFORMED',
          `application name "${application}" must be 1-64 letters, digits, ".", "_", "/" or "-"`,
        ),
      );
    }
    if (this.isClosed) {
      return Promise.reject(this.unreachable('is closed'));
    }
    if (this.nextChannelId > 0xffff_ffff) {
      return Promise.reject(
        new OverlayError(
          'ERR_LIMIT',
          `link to node ${this.remoteNodeIdHex} ran out of channel IDs`,
        ),
      );
    }
    const id = this.nextChannelId;
    this.nextChannelId += 2;
    const channel = new Channel(this, id, application, true);
    this.channels.set(id, channel);
    return new Promise<Channel>((resolve, reject) => {
      const timeoutMs = this.options.openTimeoutMs ?? OPEN_TIMEOUT_MS;
      const timer = this.clock.setTimeout(() => {
        if (!this.pendingOpens.delete(id)) return;
        this.channels.delete(id);
        channel.finish(undefined);
        this.writeFrame({ type: 'CLOSE', channelId: id, code: 'ERR_UNREACHABLE' });
        reject(
          this.unreachable(
            `did not answer the channel open for "${application}" within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      this.pendingOpens.set(id, { channel, resolve, reject, timer });
      this.writeFrame({ type: 'OPEN', channelId: id, application });
    });
  }

  /** Graceful close: tells the peer why (GOAWAY), closes every channel, ends the stream. */
  close(reason = 'link closed', code: OverlayErrorCode = 'ERR_STOPPED'): void {
    if (this.isClosed) return;
    this.writeFrame({ type: 'GOAWAY', code, reason });
    this.terminate(undefined, 'end');
  }

  /** Abrupt close, as if the connection broke: destroys the stream without a word. */
  destroy(): void {
    this.stream.destroy();
  }

  /** Resolves once the underlying stream has fully closed. */
  whenStreamClosed(): Promise<void> {
    if (this.stream.closed || this.stream.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.stream.once('close', () => resolve()));
  }

  info(): LinkInfo {
    return {
      remoteNodeId: this.remoteNodeIdHex,
      remoteAddress: this.remoteAddress,
      direction: this.direction,
      role: this.remoteRole,
      version: this.version,
      establishedAt: this.establishedAt,
      channels: [...this.channels.values()].map((c) => ({
        id: c.id,
        application: c.application,
        initiator: c.initiator,
      })),
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      framesIn: this.framesIn,
      framesOut: this.framesOut,
    };
  }

  /** @internal Writes one frame; false when the stream's buffer is full. */
  writeFrame(frame: Frame): boolean {
    if (this.isClosed || !this.stream.writable) return false;
    const most = this.options.maxUnsentBytes ?? MAX_UNSENT_BYTES;
    if (this.stream.writableLength > most) {
      this.terminate(
        this.unreachable(`reads nothing: over ${most} bytes wait to be sent to it`),
        'destroy',
      );
      return false;
    }
    const bytes = this.cipher.seal(encodeFrameBody(frame));
    this.bytesOut += bytes.length;
    this.framesOut++;
    if ((frame.type === 'DATA' || frame.type === 'OPEN') && this.unansweredSince === undefined) {
      this.unansweredSince = this.clock.now();
      if (this.silenceTimer === undefined) this.watchSilence(this.silenceProbeMs);
    }
    // The first frame of a loop turn goes out at once: a call forwarded does not wait for the
    // rest of the turn's work (its timers, the queue probe, other messages read in the same
    // turn). The frames after it in the same turn leave together in one write when the turn's
    // I/O is done (setImmediate; an end() sends them too), so a burst costs one more system
    // call and wakes the peer once more, not once per frame (measured on loopback: 0.1-0.4 ms
    // a write, the receiver woken inside it). As the SIP transports' UDP sends do.
    if (this.turn === 'idle') {
      this.turn = 'wrote';
      setImmediate(this.endTurn);
    } else if (this.turn === 'wrote') {
      this.turn = 'corked';
      this.stream.cork();
    }
    return this.stream.write(bytes);
  }

  /**
   * A PING now, unless a probe is already under way: a peer that sends nothing back within
   * silenceProbeTimeoutMs is taken for dead and the link closed.
   */
  probe(): void {
    if (this.isClosed) return;
    this.unansweredSince ??= this.clock.now();
    // A check already due finds unansweredSince set and probes then.
    if (this.silenceTimer !== undefined) return;
    this.sendPing();
    this.watchSilence(
      this.options.silenceProbeTimeoutMs ?? SILENCE_PROBE_TIMEOUT_MS,
      this.chunksIn,
    );
  }

  private get silenceProbeMs(): number {
    return this.options.silenceProbeMs ?? SILENCE_PROBE_MS;
  }

  /**
   * Checks, `afterMs` from now, whether the peer has sent anything since the data we sent
   * first after it was last heard: if not, a PING goes out, and a peer that sends nothing at
   * all (`heardAt`: the chunks received when the PING went) for silenceProbeTimeoutMs more is
   * taken for dead. Any bytes from the peer end the watch. The verdict waits for the event
   * loop to read what arrived meanwhile (a stall of this process must not read as the
   * peer's), and is put off while bytes of ours still wait to leave this machine.
   */
  private watchSilence(afterMs: number, heardAt?: number): void {
    this.silenceTimer = this.clock.setTimeout(() => {
      setImmediate(() => this.judgeSilence(heardAt));
    }, afterMs);
  }

  private judgeSilence(heardAt: number | undefined): void {
    this.silenceTimer = undefined;
    const since = this.unansweredSince;
    if (this.isClosed || since === undefined) return;
    if (this.stream.writableLength > 0) {
      // What we sent has not all left: the peer cannot have answered it yet. Asked again once
      // it has (a PING of now, not one still queued behind our data).
      this.watchSilence(this.silenceProbeMs);
      return;
    }
    if (heardAt !== undefined && this.chunksIn === heardAt) {
      this.terminate(
        this.unreachable(
          `is dead: silent for ${this.clock.now() - since} ms after data was sent to it, and to a PING`,
        ),
        'destroy',
      );
      return;
    }
    const quietFor = this.clock.now() - since;
    if (quietFor < this.silenceProbeMs) {
      this.watchSilence(this.silenceProbeMs - quietFor);
      return;
    }
    this.probe();
  }

  /** @internal Called by Channel.close. */
  closeChannel(channel: Channel): void {
    const pending = this.pendingOpens.get(channel.id);
    if (pending) {
      this.pendingOpens.delete(channel.id);
      this.clock.clearTimeout(pending.timer);
      pending.reject(new OverlayError('ERR_STOPPED', 'channel closed before it was open'));
    }
    if (this.channels.get(channel.id) === channel) {
      this.channels.delete(channel.id);
      if (!channel.initiator) this.remoteChannelCount--;
      this.writeFrame({ type: 'CLOSE', channelId: channel.id });
    }
    channel.finish(undefined);
  }

  private unreachable(what: string, cause?: unknown): OverlayError {
    return new OverlayError(
      'ERR_UNREACHABLE',
      `link to node ${this.remoteNodeIdHex} at ${this.remoteAddress} ${what}`,
      cause !== undefined ? { cause } : undefined,
    );
  }

  private onData(chunk: Buffer): void {
    if (this.isClosed) return;
    this.chunksIn++;
    this.unansweredSince = undefined;
    this.bytesIn += chunk.length;
    this.decoder.push(chunk);
    this.drainDecoder();
  }

  private drainDecoder(): void {
    while (!this.isClosed) {
      let frame: Frame | undefined;
      try {
        const sealed = this.decoder.nextBody();
        frame = sealed && decodeFrame(this.cipher.open(sealed));
      } catch (err) {
        const error =
          err instanceof OverlayError
            ? err
            : new OverlayError('ERR_MALFORMED', (err as Error).message, { cause: err });
        this.options.onProtocolError?.('malformed', error);
        this.goaway(error.code, error.message);
        return;
      }
      if (!frame) return;
      this.framesIn++;
      this.onFrame(frame);
    }
  }

  private violation(what: string): void {
    const error = new OverlayError(
      'ERR_MALFORMED',
      `protocol violation by node ${this.remoteNodeIdHex}: ${what}`,
    );
    this.options.onProtocolError?.('violation', error);
    this.goaway('ERR_MALFORMED', `protocol violation: ${what}`);
  }

  /** Closes the link for a fault of the peer, telling it why. */
  private goaway(code: OverlayErrorCode, reason: string): void {
    this.writeFrame({ type: 'GOAWAY', code, reason });
    this.terminate(
      new OverlayError(code, `link to node ${this.remoteNodeIdHex}: ${reason}`),
      'end',
    );
  }

  private isOwnId(id: number): boolean {
    return (id % 2 === 1) === (this.direction === 'outbound');
  }

  /** Whether a channel ID has ever been used (so frames for it may arrive after it closed). */
  private wasAllocated(id: number): boolean {
    return this.isOwnId(id) ? id > 0 && id < this.nextChannelId : id <= this.lastRemoteChannelId;
  }

  private onFrame(frame: Frame): void {
    switch (frame.type) {
      case 'DATA': {
        const channel = this.channels.get(frame.channelId);
        if (channel && !channel.closed && !this.pendingOpens.has(frame.channelId)) {
          channel.deliver(frame.data);
        } else if (channel || !this.wasAllocated(frame.channelId)) {
          this.violation(`DATA on channel ${frame.channelId}, which is not open`);
        }
        // Otherwise: data that crossed our CLOSE; dropped.
        return;
      }
      case 'OPEN':
        this.onOpen(frame.channelId, frame.application);
        return;
      case 'ACCEPT': {
        const pending = this.pendingOpens.get(frame.channelId);
        if (pending) {
          this.pendingOpens.delete(frame.channelId);
          this.clock.clearTimeout(pending.timer);
          pending.channel.opened();
          pending.resolve(pending.channel);
        } else if (!this.isOwnId(frame.channelId) || !this.wasAllocated(frame.channelId)) {
          this.violation(`ACCEPT for channel ${frame.channelId}, which we never opened`);
        } else if (this.channels.has(frame.channelId)) {
          this.violation(`a second ACCEPT for channel ${frame.channelId}`);
        }
        return;
      }
      case 'CLOSE':
        this.onClose(frame.channelId, frame.code, frame.reason);
        return;
      case 'PING':
        this.writeFrame({ type: 'PONG', seq: frame.seq });
        return;
      case 'PONG':
        this.missedPongs = 0;
        return;
      case 'GOAWAY': {
        const code = frame.code ?? 'ERR_UNREACHABLE';
        const error =
          code === 'ERR_STOPPED'
            ? undefined
            : new OverlayError(
                code,
                `node ${this.remoteNodeIdHex} closed the link: ${frame.reason || 'no reason given'}`,
              );
        this.terminate(error, 'end');
        return;
      }
      case 'HELLO':
      case 'AUTH':
        this.violation(`${frame.type} after the handshake`);
        return;
      case 'UNKNOWN':
        // A newer peer's frame type: ignored, as the wire format's extensibility rule says.
        return;
    }
  }

  private onOpen(id: number, application: string): void {
    if (this.isOwnId(id) || id <= this.lastRemoteChannelId) {
      this.violation(`OPEN with channel ID ${id}, which is not a fresh ID of the peer`);
      return;
    }
    this.lastRemoteChannelId = id;
    const maxChannels = this.options.maxChannels ?? MAX_CHANNELS_PER_LINK;
    if (this.remoteChannelCount >= maxChannels) {
      this.writeFrame({
        type: 'CLOSE',
        channelId: id,
        code: 'ERR_LIMIT',
        reason: `too many open channels on this link (limit ${maxChannels})`,
      });
      return;
    }
    const handler = this.options.acceptChannel?.(application);
    if (!handler) {
      this.writeFrame({
        type: 'CLOSE',
        channelId: id,
        code: 'ERR_NOT_FOUND',
        reason: `this node has no handler for application "${application}"`,
      });
      return;
    }
    const channel = new Channel(this, id, application, false);
    this.channels.set(id, channel);
    this.remoteChannelCount++;
    this.writeFrame({ type: 'ACCEPT', channelId: id });
    try {
      handler(channel, this);
    } catch {
      // A failing handler costs its channel, never the link or the process.
      channel.close();
    }
  }

  private onClose(
    id: number,
    code: OverlayErrorCode | undefined,
    reason: string | undefined,
  ): void {
    const pending = this.pendingOpens.get(id);
    if (pending) {
      this.pendingOpens.delete(id);
      this.clock.clearTimeout(pending.timer);
      this.channels.delete(id);
      pending.channel.finish(undefined);
      pending.reject(
        new OverlayError(
          code ?? 'ERR_NOT_FOUND',
          `node ${this.remoteNodeIdHex} refused a channel for "${pending.channel.application}": ${reason ?? 'no reason given'}`,
        ),
      );
      return;
    }
    const channel = this.channels.get(id);
    if (channel) {
      this.channels.delete(id);
      if (!channel.initiator) this.remoteChannelCount--;
      channel.finish(
        code
          ? new OverlayError(
              code,
              `node ${this.remoteNodeIdHex} closed channel ${id}: ${reason ?? 'no reason given'}`,
            )
          : undefined,
      );
      return;
    }
    if (!this.wasAllocated(id)) this.violation(`CLOSE for channel ${id}, which was never opened`);
  }

  private scheduleKeepalive(): void {
    const interval = this.options.keepaliveIntervalMs ?? KEEPALIVE_INTERVAL_MS;
    this.keepaliveTimer = this.clock.setTimeout(() => {
      if (this.isClosed) return;
      const maxMissed = this.options.maxMissedPongs ?? MAX_MISSED_PONGS;
      if (this.missedPongs >= maxMissed) {
        this.terminate(
          this.unreachable(`is dead: ${this.missedPongs} keepalive PINGs went unanswered`),
          'destroy',
        );
        return;
      }
      this.missedPongs++;
      this.sendPing();
      this.scheduleKeepalive();
    }, interval);
  }

  private sendPing(): void {
    this.pingSeq = (this.pingSeq + 1) >>> 0;
    this.writeFrame({ type: 'PING', seq: this.pingSeq });
  }

  /**
   * Closes everything once. `stream`: 'end' sends FIN after queued frames, 'destroy' drops the
   * connection, 'none' leaves it (it is already gone).
   */
  private terminate(error: OverlayError | undefined, stream: 'end' | 'destroy' | 'none'): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.keepaliveTimer !== undefined) this.clock.clearTimeout(this.keepaliveTimer);
    if (this.silenceTimer !== undefined) this.clock.clearTimeout(this.silenceTimer);
    if (stream === 'end') endStream(this.stream, this.clock);
    else if (stream === 'destroy') this.stream.destroy();
    const channelError = error ?? this.unreachable('was closed');
    for (const pending of this.pendingOpens.values()) {
      this.clock.clearTimeout(pending.timer);
      pending.reject(channelError);
    }
    this.pendingOpens.clear();
    const channels = [...this.channels.values()];
    this.channels.clear();
    for (const channel of channels) channel.finish(channelError);
    this.emit('close', error);
  }
}

/**
 * 127.0.0.0/8, ::1 and their IPv4-mapped forms: this machine, which may run many nodes and
 * phones, and is exempt from the limits per remote host.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('::ffff:') ? host.slice(7) : host;
  return h === '::1' || h.startsWith('127.');
}
