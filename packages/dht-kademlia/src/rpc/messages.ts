// The four Kademlia RPCs, a leave notice, and their replies, as plain data. Transports encode
// them.

import type { Contact } from '../contact.js';
import type { NodeId } from '../node-id.js';

export type RequestBody =
  | { readonly type: 'PING' }
  /**
   * The sender leaves the overlay (graceful stop): drop it now, not after its timeouts. `to`
   * names the recipient, so that a copy replayed to another node means nothing there.
   */
  | { readonly type: 'LEAVE'; readonly to: NodeId }
  | { readonly type: 'FIND_NODE'; readonly target: NodeId }
  | {
      readonly type: 'FIND_VALUE';
      readonly key: NodeId;
      /** Skip this many of the holder's values: how a requester pages past a truncated reply. */
      readonly offset?: number;
    }
  | {
      readonly type: 'STORE';
      readonly key: NodeId;
      readonly value: Uint8Array;
      /** Remaining lifetime; relative so that clocks need not agree. */
      readonly ttlMs: number;
      /**
       * Further values under the same key, stored after `value` in order (RELOAD's StoreReq
       * carries several values for one resource the same way). A node that ignores them
       * answers without `more` in its STORED, and the sender stores them one by one.
       */
      readonly more?: readonly WireValue[];
      /**
       * Asks for the recipient's closest contacts to key in the STORED, as a NODES reply
       * would carry: a node that stores without a lookup first learns from them whether its
       * targets are the k closest (KademliaNode.storeOnClosest).
       */
      readonly closest?: boolean;
    };

/** Why a storing node refused a value. */
export type StoreRejection =
  | 'too-large'
  | 'too-many-values'
  | 'too-many-keys'
  | 'invalid'
  | 'expired'
  | 'not-responsible';

/** A storing node's answer for one value. */
export type StoreResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: StoreRejection; readonly detail?: string };

/** A refusal, with its detail only when there is one (exactOptionalPropertyTypes). */
export function refusal(reason: StoreRejection, detail?: string): StoreResult {
  return detail === undefined ? { ok: false, reason } : { ok: false, reason, detail };
}

/** At most this many values in one STORE's `more`. */
export const MAX_STORE_MORE = 15;

export interface WireValue {
  readonly value: Uint8Array;
  readonly ttlMs: number;
}

export type ResponseBody =
  | { readonly type: 'PONG' }
  | { readonly type: 'NODES'; readonly contacts: readonly Contact[] }
  | {
      readonly type: 'VALUE';
      readonly values: readonly WireValue[];
      readonly contacts: readonly Contact[];
      /** The holder had more values than one reply carries. */
      readonly truncated?: boolean;
    }
  | ({ readonly type: 'STORED' } & StoreResult & {
        /** One result per value of the request's `more`, in order. */
        readonly more?: readonly StoreResult[];
        /** The storing node's closest contacts to key, when the STORE asked (`closest`). */
        readonly contacts?: readonly Contact[];
      })
  | { readonly type: 'ERROR'; readonly code: number; readonly message: string };

export interface Request {
  /** The sender's node-ID. */
  readonly sender: NodeId;
  /** Clients attach to peers but route and store nothing: never put in routing tables. */
  readonly client?: boolean;
  /**
   * false: the request named no recipient (a codec that binds requests to their recipient
   * says so; a bootstrap PING knows only an address). A copy of a request sent to another
   * node looks the same, replayed from anywhere: such a request never puts its sender in the
   * routing table nor moves a contact to the address it came from. Unset (the unsigned
   * codec): no such rule.
   */
  readonly addressed?: boolean;
  readonly body: RequestBody;
}

export interface Response {
  /** The responder's node-ID. */
  readonly sender: NodeId;
  readonly body: ResponseBody;
}

export type RequestType = RequestBody['type'];
