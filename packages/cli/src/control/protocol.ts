// The control endpoint's wire: a Unix socket in the data directory (mode 0600), one JSON line
// per request and one per answer, then the node closes the connection.

import { join } from 'node:path';
import { CONTROL_SOCKET } from '../constants.js';

export type ControlOp = 'status' | 'peers' | 'lookup' | 'ping' | 'trace';
export const CONTROL_OPS: readonly ControlOp[] = ['status', 'peers', 'lookup', 'ping', 'trace'];

export interface ControlRequest {
  op: ControlOp;
  arg?: string;
}

export type ControlResponse =
  | { ok: true; result: unknown }
  | { ok: false; code: string; message: string };

export function controlSocketPath(dataDir: string): string {
  return join(dataDir, CONTROL_SOCKET);
}

export interface StatusView {
  version: string;
  pid: number;
  uptimeS: number;
  nodeId: string;
  overlayName: string;
  enrollment: string;
  domain: string;
  dataDir: string;
  overlay: string;
  stream: string;
  /** wsTls: the WebSocket speaks TLS (wss); absent from older nodes. */
  sip: { udp: string; tcp: string; ws?: string; wsTls?: boolean };
  routingTable: { contacts: number; buckets: number; isolated: boolean };
  records: { total: number; byKind: Record<string, number> };
  links: number;
  /** Every user with a live binding at this node (AOR), and their devices in all. */
  registeredAors: string[];
  /** Absent from nodes older than this CLI, as is registrationWrites. */
  registeredDevices?: number;
  /** This node's writes of registrations to the overlay: done since start, and pending now. */
  registrationWrites?: { done: number; inFlight: number; waiting: number; background: number };
  /**
   * The overlay's own traffic since start: lookups and requests this node made, requests it
   * served, and the upkeep that keeps k copies of each record (absent from older nodes).
   */
  dht?: {
    lookups: number;
    requestsOut: number;
    /** Requests that got no answer (or a wrong one). */
    requestFailures: number;
    requestsIn: number;
    /** Nodes new among the closest, or back after silence, sent keys they lacked. */
    handOvers: number;
    keysHandedOver: number;
    /** Holders a fetch found with an older record, sent the newer one (read repair). */
    staleRepaired: number;
    keysReplicated: number;
  };
  /** What the node holds now (absent from older nodes). */
  current?: {
    /** SIP transactions alive, and the INVITEs among them still awaiting a final answer. */
    transactions: number;
    invitesAwaitingFinal: number;
    /** Open SIP connections from or to phones (TCP, WebSocket). */
    connections: { tcp: number; ws: number };
    /** The process's resident memory and JavaScript heap in use, MB. */
    memoryMb: { rss: number; heapUsed: number };
  };
  proxy: {
    forwarded: number;
    acksForwarded: number;
    /** Requests to a cached location that asked for it again, and the nodes those added. */
    locationRechecks: number;
    lateBranches: number;
  };
  /** What this node refused or dropped since it started, by where and why. */
  refused: {
    /** Overlay datagrams: unreadable, or refused by reason (signature, replay, ...). */
    overlay: {
      malformed: number;
      byReason: Record<string, number>;
      unmatched: number;
      /**
       * STOREs refused by reason (invalid: a forged or badly signed record, a name owned by
       * another key...; not-responsible left out), contacts refused (puzzle, or an address
       * that is not the one known), fetched records left out (forged, or of a name two keys
       * claim), and lookups of a name whose holders did not agree on its owner (503 to the
       * caller); absent from older nodes.
       */
      stores?: Record<string, number>;
      contactsRefused?: number;
      fetchedDropped?: number;
      contestedFetches?: number;
      /** Name claims held here that the name's other holders outvoted, and replaced. */
      claimsReplaced?: number;
      /** Checks of a claim held here against the name's other holders that ended. */
      claimsChecked?: number;
      /** Those not ended yet: under way, in line, or claims waiting for their first check. */
      claimChecksWaiting?: number;
      /** Requests of attached clients (a node's peerbx.client channel) that did not decode. */
      clientRequestsMalformed?: number;
      /**
       * Link handshakes that failed, by reason (overload: a connection dropped, or the oldest
       * pending one let go, with every handshake place taken), frames that did not decode, and
       * links closed because their node-ID held more than a few (overLimit); absent from older
       * nodes.
       */
      links?: {
        handshakesFailed: Record<string, number>;
        framesMalformed: number;
        overLimit?: number;
      };
    };
    /** SIP: unparsable messages (answered 400 or dropped), other versions, stray responses. */
    sip: {
      /** Datagrams, frames and streams that were not SIP at all (the transports drop them). */
      notSip: number;
      badRequestsAnswered: number;
      malformedDropped: number;
      versionRejected: number;
      strayResponsesDropped: number;
      /** REGISTERs answered 503 because too many overlay writes were waiting. */
      registrarBusy: number;
      /**
       * Registrations the overlay refused: REGISTERs answered 403 and renewals not made (a name
       * another key owns, say); absent from older nodes.
       */
      registrationsRefused?: number;
      /** Requests answered 503 because too many location lookups were waiting. */
      locatorBusy: number;
      /** New requests answered 503 because messages waited too long to be read (overload). */
      overloaded: number;
      /** New requests answered 503, statelessly, because too many transactions were kept. */
      transactionsFull: number;
      /**
       * Phones' logins (digest): wrong passwords and unknown users, requests refused unchecked
       * while their address was throttled (403), and requests of a logged-in phone sent as
       * another user (403); absent from older nodes.
       */
      logins?: { failed: number; throttled: number; asOtherUser: number };
    };
  };
}

export interface PeerView {
  nodeId: string;
  address: string;
  lastSeenS: number;
  failures: number;
  link: boolean;
}

export interface LookupView {
  aor: string;
  resource: string;
  /** The public key (hex) whose name claim owns the name, in an open overlay once claimed. */
  owner?: string;
  locations: { nodeId: string; devices: number; expiresInS: number; address?: string }[];
  local: { uri: string; expiresInS: number }[];
}

export interface PingView {
  nodeId: string;
  address: string;
  rttMs: number;
}

export interface TraceView {
  target: string;
  targetKind: 'node' | 'aor';
  resource?: string;
  steps: {
    hop: number;
    path: number;
    nodeId: string;
    address: string;
    outcome: string;
    returned: number;
  }[];
}
