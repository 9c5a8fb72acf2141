// How a UdpTransport turns messages into datagrams and back. The DHT ships a compact unsigned
// codec (codec.ts); the overlay plugs in one that signs every datagram and checks signatures,
// replays and overlay membership before the DHT sees a message.

import { DhtError } from '../errors.js';
import type { NodeId } from '../node-id.js';
import type { Request, Response } from '../rpc/messages.js';
import type { WireMessage } from './codec.js';

export interface DatagramCodec {
  /**
   * `to`: the node-ID the request goes to, when known (not a bootstrap address's placeholder);
   * a codec may bind the request to it, so that a copy sent to another node is refused.
   */
  encodeRequest(txid: number, request: Request, to?: NodeId): Uint8Array;
  encodeResponse(txid: number, response: Response): Uint8Array;
  /**
   * Decodes one datagram from `from`. Throws MalformedMessageError for bytes that are not a
   * message, or RejectedMessageError for a well-formed message refused (bad signature,
   * replay, another overlay...). Both are counted and dropped; a rejection may carry a reply.
   */
  decode(data: Uint8Array, from: string): WireMessage;
  /**
   * Reads only whether a datagram is a response and its transaction id, checking nothing
   * else; undefined when it cannot tell. Lets the transport drop a response nobody waits
   * for before paying for `decode` (a signature check, say).
   */
  peek?(data: Uint8Array): { response: boolean; txid: number } | undefined;
}

/** A well-formed datagram that the codec refuses. `reply`, if any, is sent back as is. */
export class RejectedMessageError extends DhtError {
  constructor(
    readonly reason: string,
    message: string,
    readonly reply?: Uint8Array,
  ) {
    super('ERR_REJECTED', message);
    this.name = 'RejectedMessageError';
  }
}
