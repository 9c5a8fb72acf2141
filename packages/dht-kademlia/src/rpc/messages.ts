// The four Kademlia RPCs and their replies, as plain data. Transports encode them.

import type { Contact } from '../contact.js';
import type { NodeId } from '../node-id.js';

export type RequestBody =
  | { readonly type: 'PING' }
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
    };

/** Why a storing node refused a value. */
export type StoreRejection =
  | 'too-large'
  | 'too-many-values'
  | 'too-many-keys'
  | 'invalid'
  | 'expired'
  | 'not-responsible';

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
  | { readonly type: 'STORED'; readonly ok: true }
  | {
      readonly type: 'STORED';
      readonly ok: false;
      readonly reason: StoreRejection;
      readonly detail?: string;
    }
  | { readonly type: 'ERROR'; readonly code: number; readonly message: string };

export interface Request {
  /** The sender's node-ID. */
  readonly sender: NodeId;
  /** Clients attach to peers but route and store nothing: never put in routing tables. */
  readonly client?: boolean;
  readonly body: RequestBody;
}

export interface Response {
  /** The responder's node-ID. */
  readonly sender: NodeId;
  readonly body: ResponseBody;
}

export type RequestType = RequestBody['type'];
