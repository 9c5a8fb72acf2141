// The overlay's datagram codec for the DHT's UDP transport: every datagram is an overlay
// message signed by its sender (wire/message.ts). Before the DHT sees a message this codec
// checks the signature, that the sender's node-ID is SHA-256 of the signing key and meets the
// crypto puzzle, that it belongs to this overlay (configuration hash), and that a request is
// neither stale nor a replay. Every refusal is counted by reason.

import {
  type Clock,
  type DatagramCodec,
  DhtError,
  idEquals,
  MAX_DATAGRAM_BYTES,
  MalformedMessageError,
  type NodeId,
  RejectedMessageError,
  type Request,
  type Response,
  type ResponseBody,
  type StoreResult,
  systemClock,
  type WireMessage,
} from '@peerbx/dht-kademlia';
import { setBounded } from '../bounded-map.js';
import { DEFAULT_TTL, REPLAY_WINDOW_MS } from '../constants.js';
import { OverlayError } from '../errors.js';
import { type KeyPair, meetsPuzzle, nodeIdOf } from '../identity/keys.js';
import { bodyToRequest, bodyToResponse, requestToBody, responseToBody } from '../wire/dht-body.js';
import {
  decodeOverlayMessage,
  encodeBody,
  encodeOverlayMessage,
  Flags,
  MessageKind,
  peekOverlayMessage,
  UnsupportedVersionError,
} from '../wire/message.js';

export type RejectReason =
  | 'malformed'
  | 'signature'
  | 'version'
  | 'config-mismatch'
  | 'puzzle'
  | 'stale'
  | 'replay'
  | 'misdirected'
  | 'sender-mismatch';

export interface SignedCodecOptions {
  keys: KeyPair;
  /** SHA-256 of the overlay configuration; its first 4 bytes go into every header. */
  configHash: Uint8Array;
  /** Name of the overlay, for the error a node of another overlay is told. */
  overlayName: string;
  puzzleBits: number;
  clock?: Clock;
  replayWindowMs?: number;
  /** Retransmissions of one request within this long are let through (the transport's reply cache answers them). */
  retransmitWindowMs?: number;
  client?: boolean;
  maxDatagramBytes?: number;
  /** Requests remembered against replay at most (MAX_REMEMBERED_REQUESTS). */
  maxRememberedRequests?: number;
}

/** Overlay error codes sent back in ERROR bodies. */
export const ERROR_CONFIG_MISMATCH = 498;
export const ERROR_VERSION = 505;
/** A request whose destination list names other nodes. */
export const ERROR_MISDIRECTED = 421;
/** Requests remembered against replay (about 300 bytes each). */
export const MAX_REMEMBERED_REQUESTS = 200_000;
/** ERROR replies to requests of another version or overlay signed at most per second. */
export const ERROR_REPLIES_PER_S = 20;
/** An ERROR reply is at most this many times the size of the request it answers. */
export const ERROR_REPLY_GROWTH = 4;

export class SignedDatagramCodec implements DatagramCodec {
  readonly rejected: Record<RejectReason, number> = {
    malformed: 0,
    signature: 0,
    version: 0,
    'config-mismatch': 0,
    puzzle: 0,
    stale: 0,
    replay: 0,
    misdirected: 0,
    'sender-mismatch': 0,
  };
  private readonly overlayHash: Uint8Array;
  /** This node's ID: a request naming other recipients is not for it. */
  private readonly ownId: Uint8Array;
  private readonly clock: Clock;
  private readonly replayWindowMs: number;
  private readonly retransmitWindowMs: number;
  private readonly maxBytes: number;
  /** First sighting of each (sender, txid, signature) request within the replay window. */
  private readonly seen = new Map<string, { at: number; from: string }>();
  private lastPrune = 0;
  /**
   * ERROR replies to rejected requests signed in the current second, per code (errorReply):
   * misdirected requests a member can make at will must not use up the replies that tell a
   * node of another overlay or version why it cannot join.
   */
  private errorSecond = 0;
  private readonly errorsThisSecond = new Map<number, number>();

  constructor(private readonly options: SignedCodecOptions) {
    this.overlayHash = options.configHash.subarray(0, 4);
    this.ownId = nodeIdOf(options.keys.publicKey);
    this.clock = options.clock ?? systemClock;
    this.replayWindowMs = options.replayWindowMs ?? REPLAY_WINDOW_MS;
    this.retransmitWindowMs = options.retransmitWindowMs ?? 10_000;
    this.maxBytes = options.maxDatagramBytes ?? MAX_DATAGRAM_BYTES;
  }

  /** Requests remembered against replay now. */
  get rememberedRequests(): number {
    return this.seen.size;
  }

  /** Whether a datagram is a DHT response, and its txid, from the fixed header alone. */
  peek(data: Uint8Array): { response: boolean; txid: number } | undefined {
    const head = peekOverlayMessage(data);
    if (!head) return undefined;
    if (head.kind !== MessageKind.DHT_REQUEST && head.kind !== MessageKind.DHT_RESPONSE) {
      return undefined;
    }
    return { response: head.kind === MessageKind.DHT_RESPONSE, txid: head.txid };
  }

  /**
   * A request to a known node names it as the destination: the recipient refuses a copy sent
   * to another node (a member replaying what it was sent, to move the sender in others'
   * routing tables). One that would not fit a datagram with it goes unaddressed.
   */
  encodeRequest(txid: number, request: Request, to?: NodeId): Uint8Array {
    const flags = request.client ? Flags.CLIENT : 0;
    const body = requestToBody(request.body);
    let bytes = this.encode(MessageKind.DHT_REQUEST, txid, flags, body, namedNode(to));
    if (bytes.length > this.maxBytes && to) {
      bytes = this.encode(MessageKind.DHT_REQUEST, txid, flags, body);
    }
    if (bytes.length > this.maxBytes) {
      throw new DhtError(
        'ERR_TOO_LARGE',
        `${request.body.type} needs ${bytes.length} bytes, over the ${this.maxBytes}-byte datagram limit`,
      );
    }
    return bytes;
  }

  encodeResponse(txid: number, response: Response): Uint8Array {
    // Shrink replies that do not fit: farthest contacts go first, then values (flagged).
    let body: ResponseBody = response.body;
    for (;;) {
      const bytes = this.encode(
        MessageKind.DHT_RESPONSE,
        txid,
        Flags.RESPONSE,
        responseToBody(body),
      );
      if (bytes.length <= this.maxBytes) return bytes;
      if ((body.type === 'NODES' || body.type === 'VALUE') && body.contacts.length > 0) {
        body = { ...body, contacts: body.contacts.slice(0, -1) };
      } else if (body.type === 'STORED' && body.contacts) {
        // Without its last contact a STORED says nothing of them: an empty list would say
        // the node knows none.
        const { contacts, ...rest } = body;
        body = contacts.length > 1 ? { ...rest, contacts: contacts.slice(0, -1) } : rest;
      } else if (body.type === 'VALUE' && body.values.length > 0) {
        body = { ...body, values: body.values.slice(0, -1), truncated: true };
      } else if (body.type === 'STORED' && hasDetails(body)) {
        // Many refusals with long details: the results matter, their texts do not.
        body = withoutDetails(body);
      } else {
        body = { type: 'ERROR', code: 500, message: 'reply too large' };
      }
    }
  }

  decode(data: Uint8Array, from: string): WireMessage {
    let msg: ReturnType<typeof decodeOverlayMessage>;
    try {
      // No node sends more (docs/protocol.md): a larger datagram costs no signature check.
      if (data.length > this.maxBytes) {
        throw new OverlayError(
          'ERR_MALFORMED',
          `datagram of ${data.length} bytes, over the ${this.maxBytes}-byte limit`,
        );
      }
      msg = decodeOverlayMessage(data);
    } catch (err) {
      if (err instanceof UnsupportedVersionError) {
        this.rejected.version++;
        // Only a request is answered (docs/protocol.md): an answer to a response would start
        // two nodes of different versions answering each other's answers for ever.
        const reply =
          err.kind === MessageKind.DHT_REQUEST
            ? this.errorReply(err.txid, ERROR_VERSION, err.message, data.length)
            : undefined;
        throw new RejectedMessageError('version', err.message, reply);
      }
      if (err instanceof OverlayError && err.code === 'ERR_SIGNATURE') {
        this.rejected.signature++;
        throw new RejectedMessageError('signature', err.message);
      }
      this.rejected.malformed++;
      throw new MalformedMessageError((err as Error).message);
    }
    const { header } = msg;
    const isResponse = (header.flags & Flags.RESPONSE) !== 0;
    if (Buffer.compare(header.overlayHash, this.overlayHash) !== 0) {
      // A node of another overlay telling us so: let its ERROR through, so that the request
      // fails with its words rather than a timeout.
      if (isResponse) {
        const error = this.overlayError(msg.body);
        if (error)
          return {
            kind: 'response',
            txid: header.txid,
            response: { sender: msg.senderId, body: error },
          };
      }
      this.rejected['config-mismatch']++;
      const text = `configuration mismatch: this node is in overlay "${this.options.overlayName}" (config ${Buffer.from(this.overlayHash).toString('hex')}), the message is for config ${Buffer.from(header.overlayHash).toString('hex')}`;
      throw new RejectedMessageError(
        'config-mismatch',
        text,
        isResponse
          ? undefined
          : this.errorReply(header.txid, ERROR_CONFIG_MISMATCH, text, data.length),
      );
    }
    if (!meetsPuzzle(msg.senderId, this.options.puzzleBits)) {
      this.rejected.puzzle++;
      throw new RejectedMessageError('puzzle', 'sender node-ID does not meet the crypto puzzle');
    }
    try {
      if (isResponse) {
        if (header.kind !== MessageKind.DHT_RESPONSE)
          throw new OverlayError('ERR_MALFORMED', 'response of a request kind');
        return {
          kind: 'response',
          txid: header.txid,
          response: { sender: msg.senderId, body: bodyToResponse(msg.body) },
        };
      }
      if (header.kind !== MessageKind.DHT_REQUEST)
        throw new OverlayError('ERR_MALFORMED', `unknown message kind ${header.kind}`);
      const body = bodyToRequest(msg.body);
      this.checkFresh(msg.senderId, header.txid, msg.timestamp, msg.signature, from);
      const addressed = header.destination.length > 0;
      if (addressed && !header.destination.some((id) => idEquals(id, this.ownId))) {
        this.rejected.misdirected++;
        // Told so (a sender whose table lists another node at this address fails at once,
        // not after a timeout); errorReply bounds what a replayer can have sent elsewhere.
        const text = 'request addressed to another node';
        const reply = this.errorReply(header.txid, ERROR_MISDIRECTED, text, data.length);
        throw new RejectedMessageError('misdirected', text, reply);
      }
      const request: Request =
        header.flags & Flags.CLIENT
          ? { sender: msg.senderId, client: true, addressed, body }
          : { sender: msg.senderId, addressed, body };
      return { kind: 'request', txid: header.txid, request };
    } catch (err) {
      if (err instanceof RejectedMessageError) throw err;
      this.rejected.malformed++;
      throw new MalformedMessageError((err as Error).message);
    }
  }

  private overlayError(body: unknown): ResponseBody | undefined {
    try {
      const r = bodyToResponse(body);
      return r.type === 'ERROR' && (r.code === ERROR_CONFIG_MISMATCH || r.code === ERROR_VERSION)
        ? r
        : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Refuses requests outside the time window, and the same request seen again after its
   * retransmission window or from another address: a sender retransmits from where it sent,
   * while a copy from elsewhere is someone's replay (with a forged source, it would put the
   * sender in routing tables at its victim's address, and bring the victim our answers).
   */
  private checkFresh(
    sender: Uint8Array,
    txid: number,
    timestamp: number,
    signature: Uint8Array,
    from: string,
  ): void {
    const now = this.clock.now();
    if (Math.abs(now - timestamp) > this.replayWindowMs) {
      this.rejected.stale++;
      throw new RejectedMessageError(
        'stale',
        `request timestamp is ${Math.round((now - timestamp) / 1000)} s off this node's clock`,
      );
    }
    if (now - this.lastPrune > this.replayWindowMs / 4) {
      for (const [k, first] of this.seen) {
        if (now - first.at > 2 * this.replayWindowMs) this.seen.delete(k);
      }
      this.lastPrune = now;
    }
    const key = `${Buffer.from(sender).toString('base64')}/${txid}/${Buffer.from(signature).toString('base64')}`;
    const first = this.seen.get(key);
    if (first === undefined) {
      // Bounded: a flood of validly signed requests must not take all memory. The oldest go
      // first (their replays become possible again, the lesser harm).
      const most = this.options.maxRememberedRequests ?? MAX_REMEMBERED_REQUESTS;
      setBounded(this.seen, key, { at: now, from }, most);
      return;
    }
    if (now - first.at > this.retransmitWindowMs || first.from !== from) {
      this.rejected.replay++;
      throw new RejectedMessageError(
        'replay',
        first.from === from ? 'request replayed' : `request replayed from ${from}`,
      );
    }
  }

  private encode(
    kind: number,
    txid: number,
    flags: number,
    body: unknown,
    destination: NodeId[] = [],
  ): Uint8Array {
    return encodeOverlayMessage(
      {
        ttl: DEFAULT_TTL,
        overlayHash: this.overlayHash,
        kind,
        txid,
        flags,
        via: [],
        destination,
      },
      encodeBody(body),
      this.options.keys,
      this.clock.now(),
    );
  }

  /**
   * The signed ERROR telling the sender of a rejected request why (another version, another
   * overlay), or undefined: when it would be over ERROR_REPLY_GROWTH times the request (the
   * sender's address may be forged, and its victim would get more than was sent), or when
   * ERROR_REPLIES_PER_S of its code have gone out this second already (each costs a signature).
   */
  private errorReply(
    txid: number,
    code: number,
    message: string,
    requestBytes: number,
  ): Uint8Array | undefined {
    const second = Math.floor(this.clock.now() / 1000);
    if (second !== this.errorSecond) {
      this.errorSecond = second;
      this.errorsThisSecond.clear();
    }
    const sent = this.errorsThisSecond.get(code) ?? 0;
    if (sent >= ERROR_REPLIES_PER_S) return undefined;
    const body = (text: string) => responseToBody({ type: 'ERROR', code, message: text });
    const most = requestBytes * ERROR_REPLY_GROWTH;
    let reply = this.encode(MessageKind.DHT_RESPONSE, txid, Flags.RESPONSE, body(message));
    // The words dropped first: the code alone still says what is wrong.
    if (reply.length > most)
      reply = this.encode(MessageKind.DHT_RESPONSE, txid, Flags.RESPONSE, body(''));
    if (reply.length > most) return undefined;
    this.errorsThisSecond.set(code, sent + 1);
    return reply;
  }
}

type Stored = Extract<ResponseBody, { type: 'STORED' }>;

function hasDetails(body: Stored): boolean {
  return [body, ...(body.more ?? [])].some((r) => !r.ok && r.detail !== undefined);
}

function withoutDetails(body: Stored): Stored {
  const bare = (r: StoreResult): StoreResult =>
    r.ok ? { ok: true } : { ok: false, reason: r.reason };
  const first = bare(body);
  return body.more
    ? { type: 'STORED', ...first, more: body.more.map(bare) }
    : { type: 'STORED', ...first };
}

/** The destination list naming `to`; none for a bootstrap address's all-zero placeholder. */
function namedNode(to: NodeId | undefined): NodeId[] {
  return to?.some((b) => b !== 0) ? [to] : [];
}
