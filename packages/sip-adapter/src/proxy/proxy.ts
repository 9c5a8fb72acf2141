// The transaction-stateful proxy (RFC 3261 §16) of a PeerBX node. A request is validated
// (Max-Forwards, loops), its Route set preprocessed (our own entry popped), and its targets
// found: the Route set, the Request-URI of an in-dialog request, or the AOR's bindings here
// and the nodes the overlay names. Each target is a branch; the ResponseContext picks the
// answer. Other nodes are reached over overlay channels; phones over the flows they registered.

import { createSecretKey, type KeyObject, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { type Clock, idFromHex, idToHex } from '@peerbx/dht-kademlia';
import { type Logger, setBounded, silentLogger } from '@peerbx/overlay-core';
import { LocatorBusyError, SipParseError } from '../errors.js';
import { optionTags } from '../message/headers.js';
import { createResponse, reasonText } from '../message/response.js';
import { type SipRequest, type SipResponse, serialize } from '../message/sip-message.js';
import {
  createVia,
  formatUri,
  formatVia,
  isSipUri,
  parseUri,
  type SipUri,
  type Uri,
  type Via,
} from '../message/uri.js';
import type { Location, Locator } from '../overlay-bridge/locator.js';
import {
  type Binding,
  type BindingStore,
  contactAt,
  contactOf,
  flowAt,
  hostPort,
} from '../registrar/binding-store.js';
import { LOCAL_HOST_ALIASES } from '../registrar/handler-constants.js';
import { behindNat, isPrivateAddress, sameHost } from '../registrar/nat.js';
import type { ServerTransaction, TransactionLayer } from '../transaction/index.js';
import { SipTransportError } from '../transport/errors.js';
import type {
  SipDestination,
  SipTransportAddress,
  SipTransportProtocol,
} from '../transport/transport.js';
import { BrowserCalls } from './browser-calls.js';
import {
  DIALOG_METHODS,
  LARGE_REQUEST_TCP_WAIT_MS,
  LOCATION_RECHECK_MAX_AGE_MS,
  LOCATION_RECHECK_MS,
  LOCATION_RECHECK_TIMEOUT_MS,
  LOOKUPS_BUSY_RETRY_AFTER_S,
  NO_TCP_REMEMBER_MS,
  NODE_CONNECT_TIMEOUT_MS,
  OVERLAY_RETRY_AFTER_S,
  REFRESHED_DIALOGS_MAX,
  TARGET_REFRESH_METHODS,
  TIMER_C_MS,
  UDP_REQUEST_MAX_BYTES,
  VIA_NODE_PARAM,
} from './constants.js';
import { isLoop, loopHash, proxyBranch } from './loop-detection.js';
import {
  checkDialogToken,
  checkRouteToken,
  DIALOG_TOKEN_PARAM,
  dialogSide,
  dialogToken,
  formatNodeRoute,
  formatRouteFlow,
  nodeOfUri,
  parseRouteFlow,
  ROUTE_FLOW_PARAM,
  ROUTE_TOKEN_PARAM,
  type RouteAddress,
  routeToken,
  routeTokenParams,
  uriHostPort,
} from './node-route.js';
import { type Branch, ResponseContext } from './response-context.js';

/**
 * Where a forwarded request goes: a phone or address over SIP transports, or another node.
 * `contact`: the address is a phone's Contact (or a URI's), where it may take a connection;
 * not where its REGISTER came from (a phone behind NAT).
 */
export type NextHop =
  | {
      kind: 'address';
      destination: SipDestination;
      transport: SipTransportProtocol;
      contact?: true;
    }
  | { kind: 'node'; nodeHex: string };
type AddressHop = Extract<NextHop, { kind: 'address' }>;

/** Why a request is not forwarded: the final response the proxy answers with instead. */
interface Refusal {
  status: number;
  reason: string;
}

/**
 * What a stopping node answers a request, under way or new: 480 to another node (the callee
 * is away, for now), 503 to a phone (its proxy is going).
 */
export function shutdownAnswer(fromNode: boolean): Refusal {
  return fromNode
    ? { status: 480, reason: "Temporarily Unavailable (callee's node shutting down)" }
    : { status: 503, reason: 'Service Unavailable (node shutting down)' };
}

/** What the proxy needs of the node around it (passed in, so tests can fake any of it). */
export interface ProxyComponents {
  nodeHex: string;
  domain: string;
  transactions: TransactionLayer;
  bindings: BindingStore;
  locator: Pick<Locator, 'locate' | 'invalidate' | 'isCached' | 'fromCache' | 'isKnownUser'>;
  clock: Clock;
  /**
   * Our address for a transport, as the peer at `toward` (when known) reaches us: differs by
   * peer only when the node listens on every interface.
   */
  localAddress(
    transport: SipTransportProtocol,
    toward?: SipDestination | SipTransportAddress,
  ): { host: string; port: number };
  /** The WebSocket is secure (wss): our Via toward a phone on it says WSS (RFC 7118 §5.2). */
  wsSecure?: boolean;
  /** True when host[:port] is one of this node's own SIP addresses. */
  isOwnAddress(host: string, port: number | undefined): boolean;
  /**
   * The connectionId of an open overlay channel to a node (at once, not a promise), else a
   * channel being opened.
   */
  nodeFlow(nodeHex: string): string | Promise<string>;
  /** The node on the other end of an overlay flow, or undefined for a phone's flow. */
  overlayPeer(connectionId: string): string | undefined;
  /** False when a TCP/WS flow has closed (a binding on it is unreachable). */
  flowAlive(connectionId: string): boolean;
  /**
   * Opens a TCP connection to a phone (or finds one open); rejects when it takes none. Without
   * it, requests too large for UDP still go over UDP.
   */
  connectTcp?(address: string, port: number): Promise<unknown>;
  /** Whether a TCP connection to a phone at address:port is open now (none is made). */
  tcpOpen?(address: string, port: number): boolean;
  logger?: Logger;
  timerCMs?: number;
  /** A call not answered this long is CANCELed and answered 480 (ResponseContext); none by default. */
  ringTimeoutMs?: number;
  nodeConnectTimeoutMs?: number;
  /**
   * Forward requests from phones to SIP addresses outside the overlay (other SIP servers or
   * devices not registered here). Default false: such requests get 403. Requests from other
   * nodes are never forwarded anywhere but to this node's own devices.
   */
  relayExternal?: boolean;
  /**
   * Users are named by an authority's certificates (an enrolled overlay), of which the overlay
   * keeps no list: a user registered nowhere may exist (480, not 404).
   */
  namesCertified?: boolean;
  /** Key of the MACs in our Record-Route entries; default random per start. */
  routeSecret?: Uint8Array;
  /** Put dialog tokens in our Record-Routes (the node challenges its phones: see routedDialog). */
  dialogTokens?: boolean;
}

export interface ProxyStats {
  forwarded: number;
  generated: Record<number, number>;
  acksForwarded: number;
  /**
   * Responses that matched no client transaction, dropped rather than forwarded statelessly
   * as RFC 3261 §16.7 has it. That forwarding was there for late 2xx responses to INVITE,
   * which RFC 6026's Accepted state now catches in the client transaction; what is left is a
   * leftover or a forgery, and forwarding along Vias an attacker wrote would make the node a
   * reflector.
   */
  strayResponsesDropped: number;
  /** Requests answered 503 because too many location lookups were waiting. */
  lookupsBusy: number;
  /** Requests to cached locations that asked for the callee's location again (recheckLocation). */
  locationRechecks: number;
  /** Branches those added: nodes the callee registered at after the cached answer. */
  lateBranches: number;
}

export class StatefulProxy {
  private readonly log: Logger;
  private readonly contexts = new Map<ServerTransaction, ResponseContext>();
  /** Answered calls of browsers here, ended with a BYE when a browser's connection closes. */
  private readonly browserCalls: BrowserCalls;
  /** Phones that took no TCP connection for a large request, until when (tooLargeForUdp). */
  private readonly noTcp = new Map<string, number>();
  /**
   * By dialog (Call-ID and both tags): the targets a phone here named in it, by user@host:port,
   * and how each is reached (learnTarget). Entries read count as new; the oldest go first.
   */
  private readonly refreshedTargets = new Map<string, Map<string, AddressHop>>();
  /** A key object, so each Record-Route MAC skips preparing the key again. */
  private readonly routeSecret: KeyObject;
  readonly stats: ProxyStats = {
    forwarded: 0,
    generated: {},
    acksForwarded: 0,
    strayResponsesDropped: 0,
    lookupsBusy: 0,
    locationRechecks: 0,
    lateBranches: 0,
  };

  constructor(private readonly c: ProxyComponents) {
    this.log = (c.logger ?? silentLogger).child({ component: 'sip-proxy' });
    this.routeSecret = createSecretKey(c.routeSecret ?? randomBytes(32));
    this.browserCalls = new BrowserCalls({
      send: (bye, to) => this.sendOwn(bye, to),
      backOn: (contact) => this.browserBackOn(contact),
      viaToward: (flow) => this.ownVia('ws', { connectionId: flow }, 'z9hG4bK'),
      ask: (request, flow, answered) => {
        try {
          this.c.transactions.sendRequest(
            request,
            { connectionId: flow },
            {
              receiveResponse: (r) => {
                if (r.status >= 200) answered(r.status);
              },
            },
          );
        } catch {
          // The connection closed again: its own close ends the call.
        }
      },
    });
  }

  /** A request that made a server transaction (anything but REGISTER, ACK, OPTIONS to us). */
  receiveRequest(request: SipRequest, tx: ServerTransaction, source: SipTransportAddress): void {
    if (request.method === 'CANCEL') {
      this.receiveCancel(request, tx);
      return;
    }
    void this.route(request, tx, source).catch((err: unknown) => {
      const ctx = this.contexts.get(tx);
      if (ctx) {
        ctx.dispose();
        this.contexts.delete(tx);
        if (ctx.finalSent) return;
        ctx.finalSent = true;
      }
      if (err instanceof SipParseError) {
        // A header only the proxy reads (Route, Contact) did not parse.
        this.reply(tx, 400, err.reasonPhrase);
        return;
      }
      this.log.error({ err: (err as Error).message, callId: request.callId }, 'proxy failure');
      this.reply(tx, 500);
    });
  }

  /** An ACK for a 2xx (end to end, §16.7 step 5 / §13.2.2.4): forwarded statelessly. */
  receiveAck(ack: SipRequest, source: SipTransportAddress): void {
    void this.forwardAck(ack, source).catch((err: unknown) =>
      this.log.debug({ err: (err as Error).message, callId: ack.callId }, 'ACK dropped'),
    );
  }

  /** A response no client transaction matched: dropped and counted (see ProxyStats). */
  receiveStrayResponse(response: SipResponse): void {
    this.stats.strayResponsesDropped++;
    this.log.debug(
      { callId: response.callId, status: response.status, cseq: response.cseq.method },
      'stray response dropped',
    );
  }

  /**
   * The connection requests came over has closed (the caller's node died or left, a browser
   * phone went away): nobody is left to answer, so the phones their INVITEs still ring are
   * sent CANCEL (§16.10), not left ringing until they give up by themselves.
   */
  upstreamClosed(connectionId: string): void {
    for (const ctx of this.contexts.values()) {
      if (ctx.upstream === connectionId && !ctx.decided) ctx.cancelAll();
    }
  }

  /**
   * A browser's WebSocket connection closed a while ago: the calls it was in are ended with the
   * BYE it can no longer send, unless it registered again on a new connection (BrowserCalls).
   * Returns how many.
   */
  browserGone(connectionId: string): number {
    return this.browserCalls.flowClosed(connectionId);
  }

  /**
   * The live connection a browser registered with this Contact is on, if any. The Contact of
   * its calls may carry parameters its REGISTER's does not (sip.js adds `ob` to an INVITE's):
   * the device is the same when user, host, port and transport are.
   */
  private browserBackOn(contact: string): string | undefined {
    const wanted = parseContactUri(contact);
    if (!wanted) return undefined;
    const now = this.c.clock.now();
    for (const aor of this.c.bindings.aors()) {
      for (const b of this.c.bindings.lookup(aor, now)) {
        const id = b.flow?.connectionId;
        if (id === undefined || !this.c.flowAlive(id)) continue;
        const uri = parseContactUri(b.uri);
        if (uri && sameDevice(uri, wanted)) return id;
      }
    }
    return undefined;
  }

  /** Sends a request of the proxy's own (a BYE for a phone), to a node over its channel. */
  private sendOwn(request: SipRequest, to: SipDestination | { nodeHex: string }): void {
    // Nowhere to send it (the other side is gone too, or its node unreachable): noted only.
    const unsent = (err: unknown) =>
      this.log.debug(
        { method: request.method, callId: request.callId, err: (err as Error).message },
        "the node's own request could not be sent",
      );
    // Rare, and unseen but in a capture otherwise: a call the node ends on a phone's behalf.
    this.log.info(
      { method: request.method, callId: request.callId, reason: request.headers.get('reason') },
      "the node sends a request on a phone's behalf",
    );
    const start = (destination: SipDestination) => {
      try {
        this.c.transactions.sendRequest(request, destination, { receiveResponse: () => undefined });
      } catch (err) {
        unsent(err);
      }
    };
    if (!('nodeHex' in to)) {
      start(to);
      return;
    }
    const flow = this.c.nodeFlow(to.nodeHex);
    if (typeof flow === 'string') start({ connectionId: flow });
    else flow.then((connectionId) => start({ connectionId }), unsent);
  }

  /** The connections of requests (an INVITE ringing, say) still waiting for a final answer. */
  upstreamFlows(): Set<string> {
    const flows = new Set<string>();
    for (const ctx of this.contexts.values()) {
      if (ctx.upstream !== undefined && !ctx.finalSent) flows.add(ctx.upstream);
    }
    return flows;
  }

  /**
   * The node is stopping: every request still under way is answered and its ringing branches
   * cancelled, while the transports can still carry both: 503 to its own phones (their proxy
   * is going), 480 to other nodes (the callee is, for now). Then `close`.
   */
  shutdown(): number {
    let aborted = 0;
    for (const ctx of this.contexts.values()) {
      if (ctx.closed) continue;
      const fromNode = ctx.upstream !== undefined && this.c.overlayPeer(ctx.upstream) !== undefined;
      const { status, reason } = shutdownAnswer(fromNode);
      ctx.abort(status, reason);
      aborted++;
    }
    this.contexts.clear();
    return aborted;
  }

  /** Stops every Timer C and location recheck, and closes every context (the node is closing). */
  close(): void {
    for (const ctx of this.contexts.values()) ctx.dispose();
    this.contexts.clear();
  }

  // --- requests ------------------------------------------------------------------------------

  private async route(
    incoming: SipRequest,
    tx: ServerTransaction,
    source: SipTransportAddress,
  ): Promise<void> {
    // §16.3 step 3: Max-Forwards.
    const mf = incoming.maxForwards ?? 70;
    if (mf <= 0) {
      this.reply(tx, 483);
      return;
    }
    // §16.3 step 4: loop detection.
    if (isLoop(incoming, this.c.nodeHex)) {
      this.reply(tx, 482);
      return;
    }
    // §16.3 step 5: this proxy supports no extension, so any Proxy-Require tag is unknown.
    const unsupported = optionTags(incoming.headers.getAll('proxy-require'));
    if (unsupported.length > 0) {
      this.reply(tx, 420, undefined, [{ name: 'Unsupported', value: unsupported.join(', ') }]);
      return;
    }
    void incoming.routes; // a malformed Route is a 400 before anything starts
    this.browserCalls.seen(incoming, source.connectionId);
    const request = incoming.copy();
    request.headers.set('Max-Forwards', String(mf - 1));
    const tokens = this.preprocessRoutes(request);
    const fromPeer = source.connectionId ? this.c.overlayPeer(source.connectionId) : undefined;

    const ctx = new ResponseContext({
      server: tx,
      transactions: this.c.transactions,
      clock: this.c.clock,
      timerCMs: this.c.timerCMs ?? TIMER_C_MS,
      ...(this.c.ringTimeoutMs === undefined ? {} : { ringTimeoutMs: this.c.ringTimeoutMs }),
      done: (x) => this.contexts.delete(x.server),
      ...(source.connectionId === undefined ? {} : { upstream: source.connectionId }),
      loopHash: loopHash(incoming),
    });
    this.contexts.set(tx, ctx);

    // §26.2.2: a SIPS request goes over TLS at every hop, and this node has none for SIP.
    if (request.requestUri.scheme === 'sips') {
      this.finish(
        ctx,
        416,
        'Unsupported URI Scheme (sips: needs TLS, which this node does not have)',
      );
      return;
    }
    const routes = request.routes;
    if (routes.length > 0 || (request.toTag !== undefined && !this.namesUser(request.requestUri))) {
      // Loose routing / in-dialog: one target, the top Route or the Request-URI (§16.5, §16.12).
      // An in-dialog request to a user of the overlay (a remote target that is an AOR) goes to
      // the location service as any other (§16.5), not to a device found by host and port.
      const uri = routes[0]?.uri ?? request.requestUri;
      if (!isSipUri(uri)) {
        this.finish(ctx, 416);
        return;
      }
      const hop = this.nextHop(request, uri, routes.length > 0, tokens, fromPeer);
      if ('status' in hop) {
        this.finish(ctx, hop.status, hop.reason);
        return;
      }
      this.forward(ctx, request, hop, source, fromPeer);
      ctx.seal();
      return;
    }

    const target = request.requestUri;
    if (!isSipUri(target)) {
      this.finish(ctx, 416);
      return;
    }
    if (!target.user || !this.isAorHost(target)) {
      // Not ours to look up: an address (a phone's contact dialled directly).
      const hop = target.user
        ? this.nextHop(request, target, false, tokens, fromPeer)
        : { status: 404, reason: 'Not Found (not a user of this overlay)' };
      if ('status' in hop) {
        this.finish(ctx, hop.status, hop.reason);
        return;
      }
      this.forward(ctx, request, hop, source, fromPeer);
      ctx.seal();
      return;
    }

    // An AOR of the overlay: fork to the local bindings, and (from a local phone) to the nodes
    // where the user is registered.
    const resource = `${target.user}@${this.c.domain}`;
    const aor = `sip:${resource}`;
    const local = this.c.bindings
      .lookup(aor, this.c.clock.now())
      .filter((b) => this.bindingReachable(b));
    // Only a call rings here first: a MESSAGE (or any non-INVITE) a phone here answers at once
    // would be done before the callee's devices at other nodes got it.
    if (
      request.method === 'INVITE' &&
      !fromPeer &&
      local.length > 0 &&
      !this.c.locator.isCached(resource)
    ) {
      this.forkLocalFirst(ctx, request, resource, local, source);
      return;
    }
    let nodes: string[] = [];
    let overlayDown: Error | undefined;
    let registeredLocally = local.length > 0;
    // A cached location may miss a device that registered at another node since: a request
    // all of whose branches failed, or an INVITE still ringing, asks again (recheckLocation).
    let cached = false;
    if (!fromPeer) {
      // A cached answer serves in this turn: the INVITE goes on before the loop turns over.
      const known = this.c.locator.fromCache(resource);
      cached = known !== undefined;
      try {
        const at = (found: readonly Location[]) => found.map((l) => idToHex(l.nodeId));
        let hexes = at(known ?? (await this.c.locator.locate(resource)));
        if (cached && local.length === 0 && hexes.every((h) => h === this.c.nodeHex)) {
          // Cached here only, with no device here any more: ask again before answering 480 (and
          // answer that when the overlay cannot say).
          cached = false;
          const again = { maxAgeMs: LOCATION_RECHECK_MAX_AGE_MS };
          hexes = await this.c.locator.locate(resource, again).then(at, () => hexes);
        }
        nodes = hexes.filter((h) => h !== this.c.nodeHex);
        if (hexes.includes(this.c.nodeHex)) registeredLocally = true;
      } catch (err) {
        overlayDown = err as Error;
      }
    } else if (this.c.bindings.lookup(aor, this.c.clock.now()).length > 0) {
      registeredLocally = true;
    }
    if (ctx.canceled) {
      this.finish(ctx, 487);
      return;
    }
    if (local.length === 0 && nodes.length === 0) {
      if (overlayDown) {
        const busy = overlayDown instanceof LocatorBusyError;
        if (busy) this.stats.lookupsBusy++;
        else this.log.warn({ resource, err: overlayDown.message }, 'overlay unreachable');
        const why = busy ? 'too many location lookups waiting' : 'overlay unreachable';
        const retryAfter = busy ? LOOKUPS_BUSY_RETRY_AFTER_S : OVERLAY_RETRY_AFTER_S;
        this.finish(ctx, 503, `Service Unavailable (${why})`, [
          { name: 'Retry-After', value: String(retryAfter) },
        ]);
      } else if (fromPeer || registeredLocally) {
        this.finish(ctx, 480, 'Temporarily Unavailable (no device reachable)');
      } else {
        this.finish(ctx, ...this.nowhere(resource));
      }
      return;
    }
    this.forkToBindings(ctx, request, local, source, fromPeer);
    for (const nodeHex of nodes) this.forwardToNode(ctx, request, resource, nodeHex, source);
    if (cached) this.recheckLocation(ctx, request, resource, new Set(nodes), source);
    ctx.seal();
  }

  /**
   * A callee with devices here whose location is not cached: they ring at once, and the nodes
   * where the callee has other devices get their branches when the overlay has answered. A
   * call between two phones of one node never waits for the overlay (nor fails with it: an
   * office's box whose peers are all gone still connects its own phones).
   */
  private forkLocalFirst(
    ctx: ResponseContext,
    request: SipRequest,
    resource: string,
    local: readonly Binding[],
    source: SipTransportAddress,
  ): void {
    this.forkToBindings(ctx, request, local, source, undefined);
    // The answer waits for the lookup, even when every device here has declined meanwhile,
    // for LOCATION_RECHECK_TIMEOUT_MS at most; a later answer still rings the callee's other
    // devices while one here rings.
    ctx.holdOpen(() => undefined);
    ctx.seal();
    const clock = this.c.clock;
    const waitOver = clock.setTimeout(() => ctx.unhold(), LOCATION_RECHECK_TIMEOUT_MS);
    this.c.locator
      .locate(resource)
      .then((found) => {
        if (ctx.decided) return;
        for (const l of found) {
          const nodeHex = idToHex(l.nodeId);
          if (nodeHex !== this.c.nodeHex)
            this.forwardToNode(ctx, request, resource, nodeHex, source);
        }
      })
      .catch((err: unknown) => {
        if (err instanceof LocatorBusyError) this.stats.lookupsBusy++;
        this.log.debug({ resource, err: (err as Error).message }, 'other devices not looked up');
      })
      .finally(() => {
        clock.clearTimeout(waitOver);
        ctx.unhold();
      });
  }

  /** A branch to each of the callee's devices registered at this node. */
  private forkToBindings(
    ctx: ResponseContext,
    request: SipRequest,
    local: readonly Binding[],
    source: SipTransportAddress,
    fromPeer: string | undefined,
  ): void {
    for (const b of local) {
      const branch = request.copy();
      branch.uri = b.uri;
      this.forward(ctx, branch, this.hopForBinding(b), source, fromPeer);
    }
  }

  /** A branch to the node where the callee is registered, which forks to its devices there. */
  private forwardToNode(
    ctx: ResponseContext,
    request: SipRequest,
    resource: string,
    nodeHex: string,
    source: SipTransportAddress,
  ): void {
    const branch = request.copy();
    // The callee's node looks the user up by the canonical AOR, whatever alias was dialled.
    branch.uri = `sip:${resource}`;
    this.forward(ctx, branch, { kind: 'node', nodeHex }, source, undefined, () =>
      this.c.locator.invalidate(resource, idFromHex(nodeHex)),
    );
  }

  /**
   * The answer to a call to a user registered nowhere (RFC 3261 §16.5): 404 only for one the
   * node knows does not exist, a name nobody claimed in an open overlay; else 480 (§21.4.18: it
   * exists, and is not logged in; or, enrolled, it may).
   */
  private nowhere(resource: string): [404 | 480, string] {
    return this.c.namesCertified || this.c.locator.isKnownUser(resource)
      ? [480, `Temporarily Unavailable (${resource} has no device registered)`]
      : [404, `Not Found (${resource} is not registered)`];
  }

  /**
   * A request forked to cached locations whose branches have all ended without a 2xx, or an
   * INVITE still unanswered after LOCATION_RECHECK_MS, asks for the callee's location again
   * (an answer at most LOCATION_RECHECK_MAX_AGE_MS old, looked up behind the lookups callers
   * wait for) and forks to the nodes it did not know of: a device of the callee's registered at
   * another node since. A request answered sooner costs nothing more. The answer waits for that
   * lookup (at most LOCATION_RECHECK_TIMEOUT_MS), so a 480 from a node the callee left is not
   * the last word.
   */
  private recheckLocation(
    ctx: ResponseContext,
    request: SipRequest,
    resource: string,
    tried: ReadonlySet<string>,
    source: SipTransportAddress,
  ): void {
    const recheck = () => {
      this.stats.locationRechecks++;
      void withTimeout(
        this.c.locator.locate(resource, {
          maxAgeMs: LOCATION_RECHECK_MAX_AGE_MS,
          background: true,
          // This node's copy may be the stale one (it was away when the user unregistered).
          othersOnly: true,
        }),
        LOCATION_RECHECK_TIMEOUT_MS,
        'location recheck',
      )
        .then((located) => {
          if (ctx.decided) return;
          const aor = `sip:${resource}`;
          if (located.length === 0 && this.c.bindings.lookup(aor, this.c.clock.now()).length === 0)
            ctx.registeredNowhere(...this.nowhere(resource));
          for (const l of located) {
            const nodeHex = idToHex(l.nodeId);
            if (nodeHex === this.c.nodeHex || tried.has(nodeHex)) continue;
            this.stats.lateBranches++;
            this.forwardToNode(ctx, request, resource, nodeHex, source);
          }
        })
        .catch((err: unknown) => {
          this.log.debug({ resource, err: (err as Error).message }, 'location recheck failed');
        })
        .finally(() => ctx.unhold());
    };
    ctx.holdOpen(recheck, request.method === 'INVITE' ? LOCATION_RECHECK_MS : undefined);
  }

  /**
   * §16.4: a strict router's Request-URI put back, and our own top Route removed. Returns the
   * route tokens (ROUTE_TOKEN_PARAM, with ROUTE_FLOW_PARAM) of the entries of ours consumed.
   */
  private preprocessRoutes(request: SipRequest): RouteTokenParams[] {
    const tokens: RouteTokenParams[] = [];
    const take = (uri: Uri) => {
      const token = isSipUri(uri) ? uri.params[ROUTE_TOKEN_PARAM] : undefined;
      if (typeof token !== 'string') return;
      const flow = isSipUri(uri) ? uri.params[ROUTE_FLOW_PARAM] : undefined;
      tokens.push(typeof flow === 'string' ? { token, flow } : { token });
    };
    const ruri = request.requestUri;
    if (this.isOurUri(ruri)) {
      take(ruri);
      const all = request.headers.getList('route');
      const last = all.pop();
      if (last !== undefined) {
        const uri = last.replace(/^[^<]*<([^>]*)>.*$/, '$1');
        request.uri = uri;
        request.headers.delete('route');
        for (const r of all) request.headers.append('Route', r);
      }
    }
    // Ours are taken off together: one at a time, each reparsing the rest, a request with
    // thousands of Routes naming this node (64 KB of them) held the node for seconds.
    const routes = request.routes;
    let ours = 0;
    while (ours < routes.length && this.isOurUri(routes[ours]!.uri)) take(routes[ours++]!.uri);
    if (ours > 0) {
      const rest = request.headers.getList('route').slice(ours);
      if (rest.length > 0) request.headers.set('Route', rest.join(', '));
      else request.headers.delete('route');
    }
    return tokens;
  }

  /**
   * True when an in-dialog request comes along a Record-Route this node made for its dialog:
   * one of the Routes this node takes off (or its URI in the Request-URI) carries a dialog
   * token for its Call-ID and for where it goes next (dialogSide). A malformed Route is none.
   */
  routedDialog(request: SipRequest): boolean {
    try {
      const ours: Uri[] = [];
      const all = request.routes;
      // Strict routing (our URI in the Request-URI): the last Route holds the target.
      const strict = this.isOurUri(request.requestUri);
      if (strict) ours.push(request.requestUri);
      const routes = strict ? all.slice(0, -1) : all;
      const target = strict ? all.at(-1)?.uri : request.requestUri;
      let at = 0;
      while (at < routes.length && this.isOurUri(routes[at]!.uri)) ours.push(routes[at++]!.uri);
      const next = routes[at]?.uri ?? target;
      if (ours.length === 0 || next === undefined) return false;
      const side = dialogSide(next);
      return ours.some((uri) => {
        const t = isSipUri(uri) ? uri.params[DIALOG_TOKEN_PARAM] : undefined;
        return typeof t === 'string' && checkDialogToken(this.routeSecret, t, request.callId, side);
      });
    } catch {
      return false;
    }
  }

  /** True for a URI naming this node (its node-ID, or one of its addresses with no user). */
  namesThisNode(uri: SipRequest['requestUri']): boolean {
    return this.isOurUri(uri);
  }

  private isOurUri(uri: SipRequest['requestUri']): boolean {
    if (!isSipUri(uri)) return false;
    const node = nodeOfUri(uri);
    if (node !== undefined) return node === this.c.nodeHex;
    return uri.user === undefined && this.c.isOwnAddress(uri.host, uri.port ?? 5060);
  }

  /** True for the overlay domain, and for localhost / our addresses with no or our own port. */
  /** Our Via for `transport` as a peer at `toward` sees us, marked with this node's ID. */
  private ownVia(
    transport: SipTransportProtocol,
    toward: SipDestination | SipTransportAddress | undefined,
    branch: string,
  ): Via {
    const at = this.c.localAddress(transport, toward);
    return createVia({
      transport: transport === 'ws' && this.c.wsSecure ? 'wss' : transport,
      host: at.host,
      port: at.port,
      branch,
      params: { [VIA_NODE_PARAM]: this.c.nodeHex },
    });
  }

  /** A user at the overlay's SIP domain itself (never a device's address). */
  private namesUser(uri: Uri): boolean {
    return isSipUri(uri) && uri.user !== undefined && uri.host.toLowerCase() === this.c.domain;
  }

  private isAorHost(uri: SipUri): boolean {
    const host = uri.host.toLowerCase();
    if (host === this.c.domain) return true;
    const ours = uri.port === undefined || this.c.isOwnAddress(host, uri.port);
    return ours && (LOCAL_HOST_ALIASES.includes(host) || this.c.isOwnAddress(host, undefined));
  }

  /**
   * A binding can be rung: over the TCP/WS connection it registered on while that is open;
   * once it closed, at its Contact (RFC 3261 §18.1.1: a new connection), unless the phone is
   * behind NAT or a browser, which nothing outside reaches but their own connection.
   */
  private bindingReachable(b: Binding): boolean {
    const id = b.flow?.connectionId;
    return id === undefined || this.c.flowAlive(id) || this.contactHop(b) !== undefined;
  }

  /** Its Contact's address, for a phone that can be reached there. */
  private contactHop(b: Binding): NextHop | undefined {
    const flow = b.flow;
    if (flow?.nat || flow?.transport === 'ws') return undefined;
    const uri = contactOf(b);
    // A contact naming this node itself is forwarded anyway: loop detection answers it (482).
    return uri ? this.addressHop(uri, true) : undefined;
  }

  /**
   * A binding's next hop: the TCP/WS connection it registered over while open (the only way
   * to reach a browser or a TCP phone behind NAT); for a UDP phone behind NAT, the address its
   * REGISTER came from; else its Contact address (RFC 3261 §16.5), else (no usable Contact)
   * the address its REGISTER came from.
   */
  private hopForBinding(b: Binding): NextHop {
    const flow = b.flow;
    if (flow?.connectionId !== undefined && this.c.flowAlive(flow.connectionId)) {
      return {
        kind: 'address',
        destination: { connectionId: flow.connectionId },
        transport: flow.transport,
      };
    }
    return (
      this.contactHop(b) ??
      addressNextHop(flow ?? { transport: 'udp', address: '0.0.0.0', port: 0 })
    );
  }

  /**
   * The next hop for a top Route (`viaRoute`) or a Request-URI that is not an AOR to look up:
   * another node; a device registered here; the phone a Record-Route of ours was made for
   * (its token, in `tokens`, matches Call-ID and target); else, for phones and only when
   * relayExternal is set, the address itself. Requests from other nodes never reach an
   * address that is not one of this node's own devices: no node can use us as a relay.
   */
  private nextHop(
    request: SipRequest,
    uri: SipUri,
    viaRoute: boolean,
    tokens: readonly RouteTokenParams[],
    fromPeer: string | undefined,
  ): NextHop | Refusal {
    const node = nodeOfUri(uri);
    if (node !== undefined) {
      if (node === this.c.nodeHex) return NO_ROUTE;
      if (fromPeer !== undefined) return peerRefusal(uri);
      return { kind: 'node', nodeHex: node };
    }
    if (!viaRoute) {
      const check = (t: RouteTokenParams) =>
        checkRouteToken(this.routeSecret, t.token, request.callId, uri, t.flow);
      // The dialog's phone behind NAT, where its requests came from (see forward).
      const natted = tokens.find((t) => t.flow !== undefined && check(t));
      const flow = natted?.flow === undefined ? undefined : parseRouteFlow(natted.flow);
      if (flow?.transport === 'udp') return addressNextHop(flow);
      const binding = this.localDevice(uri);
      if (binding) {
        if (!this.bindingReachable(binding)) {
          return { status: 480, reason: 'Temporarily Unavailable (device connection closed)' };
        }
        const hop = this.hopForBinding(binding);
        // A phone reached at its Contact is reached as this URI says: its dialog Contact may
        // name another transport than it registered with (TCP, after a request over TCP).
        if (hop.kind !== 'address' || !hop.contact) return hop;
        const direct = this.addressHop(uri, true);
        return direct && !this.lostTcpPort(direct, hop) ? direct : hop;
      }
      // A browser that did not register: over the connection its INVITE came on, while open.
      if (flow?.transport === 'ws' && this.c.flowAlive(flow.connectionId)) {
        return {
          kind: 'address',
          destination: { connectionId: flow.connectionId },
          transport: 'ws',
        };
      }
      if (tokens.some((t) => t.flow === undefined && check(t))) {
        const hop = this.addressHop(uri);
        if (hop) return hop;
      }
      const key = dialogKey(request);
      const targets = key === undefined ? undefined : this.refreshedTargets.get(key);
      const refreshed = targets?.get(targetKey(uri));
      const over =
        refreshed && 'connectionId' in refreshed.destination ? refreshed.destination : undefined;
      if (
        key !== undefined &&
        targets &&
        refreshed &&
        (!over || this.c.flowAlive(over.connectionId))
      ) {
        setBounded(this.refreshedTargets, key, targets, REFRESHED_DIALOGS_MAX);
        return refreshed;
      }
    }
    if (!viaRoute && /^wss?$/i.test(uri.params.transport ?? '')) {
      // A browser's Contact no binding here names any more: its connection closed.
      return { status: 480, reason: "Temporarily Unavailable (the browser's connection closed)" };
    }
    if (fromPeer !== undefined) return peerRefusal(uri);
    if (this.c.isOwnAddress(uri.host, uri.port ?? 5060)) {
      return NO_ROUTE;
    }
    if (!this.c.relayExternal) {
      return {
        status: 403,
        reason: `Forbidden (${reasonText(uriHostPort(uri))} is outside the overlay domain ${this.c.domain}; this node does not relay to other SIP hosts)`,
      };
    }
    return this.addressHop(uri) ?? NO_ROUTE;
  }

  /**
   * A dialog Contact over TCP at another port than the phone's registered Contact, with no
   * connection open to it: the port of the phone's own end of a connection that is gone
   * (baresip names it in the Contact of its answer; the node restarted since, say). Nothing
   * listens there; the registered Contact takes a new connection.
   */
  private lostTcpPort(direct: AddressHop, registered: AddressHop): boolean {
    if (direct.transport !== 'tcp') return false;
    if (!('address' in direct.destination) || !('address' in registered.destination)) return false;
    const { address, port } = direct.destination;
    const at = registered.destination;
    if (at.address === address && at.port === port) return false;
    return this.c.tcpOpen?.(address, port) === false;
  }

  private addressHop(uri: SipUri, allowSelf = false): AddressHop | undefined {
    const t = (uri.params.transport ?? 'udp').toLowerCase();
    const transport: SipTransportProtocol =
      t === 'tcp' ? 'tcp' : t === 'ws' || t === 'wss' ? 'ws' : 'udp';
    const port = uri.port ?? 5060;
    const host = uri.host.replace(/^\[|\]$/g, '');
    if (!allowSelf && this.c.isOwnAddress(uri.host, port)) return undefined;
    return { ...addressNextHop({ transport, address: host, port }), contact: true };
  }

  /**
   * The live binding (any AOR) a target URI reaches: its Contact with the same user and
   * host:port, else any Contact or REGISTER source at that host:port (phones often answer
   * with a dialog Contact other than the one they registered). None when the bindings that
   * fit lead to different places: phones behind different NATs often have the same private
   * Contact (192.168.1.100:5060), and a request must not reach the wrong one. A TCP target
   * at a port nothing here names finds the binding of the same user at that host.
   */
  private localDevice(uri: SipUri): Binding | undefined {
    const want = uriHostPort(uri);
    const exact: Binding[] = [];
    const loose: Binding[] = [];
    // A TCP target at a port no binding names: the phone's own end of a connection (see
    // lostTcpPort), reached through its binding of the same user at that host.
    const sameUser: Binding[] = [];
    const tcpUser = isTcp(uri) ? uri.user : undefined;
    const host = uri.host.toLowerCase();
    const keys = tcpUser === undefined ? [want] : [want, `${tcpUser}@${host}`];
    for (const b of this.c.bindings.near(keys, this.c.clock.now())) {
      const u = contactOf(b);
      if (u && contactAt(b) === want) (u.user === uri.user ? exact : loose).push(b);
      else if (b.flow && flowAt(b.flow) === want) loose.push(b);
      else if (tcpUser !== undefined && u?.user === tcpUser && u.host.toLowerCase() === host)
        sameUser.push(b);
    }
    const fits = exact.length > 0 ? exact : loose.length > 0 ? loose : sameUser;
    const first = fits[0];
    if (!first || fits.length === 1) return first;
    // Bindings alike in all hopForBinding reads (flow; Contact host, port, transport) lead to
    // the same place: its hop is worked out once. Many users registered from one address (a
    // gateway's lines) make one kind, not one each.
    const hops = new Map<string, string>();
    const place = (b: Binding) => {
      const f = b.flow;
      const u = contactOf(b);
      const kind = [
        f?.connectionId,
        f?.nat,
        f?.transport,
        f?.address,
        f?.port,
        u?.host,
        u?.port,
        u?.params.transport,
      ].join(' ');
      let hop = hops.get(kind);
      if (hop === undefined) {
        hop = JSON.stringify(this.hopForBinding(b));
        hops.set(kind, hop);
      }
      return hop;
    };
    const there = place(first);
    return fits.every((b) => b === first || place(b) === there) ? first : undefined;
  }

  /**
   * §16.6: Record-Route and Via added, then the branch started (after an overlay connect, or a
   * phone's TCP connection for a request too large for UDP).
   */
  private forward(
    ctx: ResponseContext,
    request: SipRequest,
    hop: NextHop,
    source: SipTransportAddress,
    fromPeer: string | undefined,
    onNodeFailure?: () => void,
  ): void {
    // RFC 6665 §4.3: a proxy that Record-Routes a SUBSCRIBE Record-Routes every NOTIFY too: a
    // NOTIFY can create the subscriber's dialog (one that came before the 200, or from a
    // forked device whose 200 this node absorbed), whose route set it then gives (QA).
    const creates = request.toTag === undefined || request.method === 'NOTIFY';
    if (DIALOG_METHODS.has(request.method) && creates) {
      // The phone on this node's side of the call must reach us: the caller's transport when it
      // came from a phone, the callee's when it came over the overlay.
      const phoneSide: SipTransportProtocol =
        fromPeer === undefined ? source.transport : hop.kind === 'address' ? hop.transport : 'udp';
      const phone =
        fromPeer === undefined ? source : hop.kind === 'address' ? hop.destination : undefined;
      const at = this.c.localAddress(phoneSide, phone);
      const rr: RouteAddress = { host: at.host, port: at.port, transport: phoneSide };
      // From a phone here: in-dialog requests coming back along this route may go to its
      // Contact; for a phone behind NAT over UDP, to where its request came from; for a
      // browser, over its connection (its Contact names no place).
      const contact = fromPeer === undefined ? firstContactUri(request) : undefined;
      const { address, port, connectionId } = source;
      const flow = !contact
        ? undefined
        : source.transport === 'ws' && connectionId !== undefined
          ? formatRouteFlow({ transport: 'ws', connectionId })
          : source.transport === 'udp' && behindNat(request.topVia, source, [contact.host])
            ? formatRouteFlow({ address, port, transport: 'udp' })
            : undefined;
      const token = contact && routeToken(this.routeSecret, request.callId, contact, flow);
      // Only a node that challenges its phones checks the dialog token (routedDialog): the
      // dialog's far side, the node it goes to or came from, else a phone here or outside.
      const far = hop.kind === 'node' ? hop.nodeHex : fromPeer;
      const dialog = this.c.dialogTokens
        ? dialogToken(this.routeSecret, request.callId, far === undefined ? 'phone' : `node:${far}`)
        : undefined;
      request.headers.prepend(
        'Record-Route',
        formatNodeRoute(this.c.nodeHex, rr, token, dialog, token === undefined ? undefined : flow),
      );
      // Both phones here, over different transports or addresses (a browser calling a UDP
      // softphone): each is given a route it can use. The top entry, which the callee sends its
      // in-dialog requests to, faces the callee; the caller's, its reverse route set's first,
      // faces the caller (RFC 5658 §4, double Record-Route). The node takes both off at once.
      if (fromPeer === undefined && hop.kind === 'address') {
        const there = this.c.localAddress(hop.transport, hop.destination);
        if (
          there.host !== at.host ||
          there.port !== at.port ||
          hop.transport !== source.transport
        ) {
          const callee: RouteAddress = {
            host: there.host,
            port: there.port,
            transport: hop.transport,
          };
          request.headers.prepend(
            'Record-Route',
            formatNodeRoute(this.c.nodeHex, callee, undefined, dialog),
          );
        }
      }
    }
    const natted = this.nattedCalleeWatch(request, hop);
    const browser = this.browserCallWatch(request, hop, source, fromPeer);
    const target = this.targetWatch(request, hop, source, fromPeer);
    const onResponse =
      natted || browser || target
        ? (branch: Branch, response: SipResponse) => {
            natted?.(response);
            target?.(response);
            if (response.status >= 200) browser?.(branch, response);
          }
        : undefined;
    if (hop.kind === 'address' && this.tooLargeForUdp(hop, request)) {
      // RFC 3261 §18.1.1: over TCP, as a congestion controlled transport; over UDP when the
      // phone takes no connection (its Record-Route above stays the one of its own transport).
      const { address, port } = hop.destination as { address: string; port: number };
      ctx.opened();
      void this.tcpTaken(address, port).then((taken) => {
        const over: NextHop = taken ? addressNextHop({ transport: 'tcp', address, port }) : hop;
        this.sendBranch(ctx, request, over, onNodeFailure, true, onResponse);
      });
      return;
    }
    this.sendBranch(ctx, request, hop, onNodeFailure, false, onResponse);
  }

  /**
   * A dialog's target named by a phone here (§12.2): the Contact of its in-dialog target
   * refresh (re-INVITE, UPDATE, ...) that the far side accepted (2xx), or of its answer to a
   * refresh or to the request that began the dialog. The far side's requests in that dialog
   * go there from then on, though no route token of ours names it (a phone that moved to
   * another port or network, or answered with another Contact than it registered, or whose
   * registration ended in the call): without this, this node refused them 403 as requests to
   * an address that is none of its devices. Kept per dialog (Call-ID and both tags); `via` is
   * where the phone that named it is (see targetWatch), never another host.
   */
  private learnTarget(message: SipRequest | SipResponse, contact: SipUri, via: AddressHop): void {
    const key = dialogKey(message);
    if (key === undefined) return;
    const targets = this.refreshedTargets.get(key) ?? new Map<string, AddressHop>();
    // The first phone to name a target of the dialog keeps it: another that learnt the
    // dialog's Call-ID and tags cannot take it over.
    if (!targets.has(targetKey(contact))) setBounded(targets, targetKey(contact), via, 8);
    setBounded(this.refreshedTargets, key, targets, REFRESHED_DIALOGS_MAX);
  }

  /**
   * For learnTarget: the answers to a target refresh or a dialog's first request, from a
   * phone here (reached for another node, or a device registered here; not an outside host
   * this node relays to); and a phone here's own in-dialog refresh once the far side took it
   * with a 2xx, reached where that refresh came from.
   */
  private targetWatch(
    request: SipRequest,
    hop: NextHop,
    source: SipTransportAddress,
    fromPeer: string | undefined,
  ): ((response: SipResponse) => void) | undefined {
    if (!TARGET_REFRESH_METHODS.has(request.method)) return undefined;
    const mine = fromPeer === undefined && request.toTag !== undefined;
    const asked = mine ? firstContactUri(request) : undefined;
    const answers =
      hop.kind === 'address' && (fromPeer !== undefined || this.deviceAt(hop.destination));
    if (!asked && !answers) return undefined;
    // Reached where its refresh came from, whatever its Contact says: a phone can point the
    // dialog at itself only, not at another host (nor a port of this machine).
    const { address, port, connectionId } = source;
    const askedVia: AddressHop =
      connectionId !== undefined
        ? { kind: 'address', destination: { connectionId }, transport: source.transport }
        : addressNextHop({ transport: 'udp', address, port });
    return (response) => {
      const ok = response.status >= 200 && response.status < 300;
      // The phone here's own refresh, taken by the far side.
      if (asked && ok) this.learnTarget(response, asked, askedVia);
      // The answer of a phone here: a 2xx, or a 1xx with a To tag (an early dialog).
      const early = response.status > 100 && response.status < 200 && response.toTag !== undefined;
      if (!answers || hop.kind !== 'address' || !(ok || early)) return;
      const contact = firstContactUri(response);
      if (!contact) return;
      // At its Contact when that is on the host it was reached at; over its connection, or
      // behind NAT where it was reached, as the request went; nowhere else (a phone's answer
      // must not point other nodes' requests at another host).
      const at = hop.destination;
      if (!('address' in at)) {
        this.learnTarget(response, contact, stripContact(hop));
        return;
      }
      const there = sameHost(contact.host, at.address) ? this.addressHop(contact) : undefined;
      const natted = hop.transport === 'udp' && isPrivateAddress(contact.host);
      const via = there ?? (natted ? stripContact(hop) : undefined);
      if (via) this.learnTarget(response, contact, via);
    };
  }

  /** Whether a phone registered here is at `to` (a connection, or its address). */
  private deviceAt(to: SipDestination): boolean {
    if ('connectionId' in to) return true;
    const at = hostPort(to.address, to.port);
    return this.c.bindings.near([at], this.c.clock.now()).length > 0;
  }

  /** For a UDP callee's answer that shows it behind NAT: routeToNattedCallee. */
  private nattedCalleeWatch(
    request: SipRequest,
    hop: NextHop,
  ): ((response: SipResponse) => void) | undefined {
    if (
      hop.kind !== 'address' ||
      !('address' in hop.destination) ||
      hop.transport !== 'udp' ||
      !DIALOG_METHODS.has(request.method) ||
      request.toTag !== undefined
    )
      return undefined;
    const at = hop.destination;
    return (response) => this.routeToNattedCallee(response, at);
  }

  /**
   * For an INVITE from a browser here, or to one: its call is remembered from now (its CSeqs
   * counted), and what its 2xx tells of the BYE it would send, once that goes upstream
   * (BrowserCalls).
   */
  private browserCallWatch(
    request: SipRequest,
    hop: NextHop,
    source: SipTransportAddress,
    fromPeer: string | undefined,
  ): ((branch: Branch, ok: SipResponse) => void) | undefined {
    if (request.method !== 'INVITE' || request.toTag !== undefined) return undefined;
    const watches: ((branch: Branch, ok: SipResponse) => void)[] = [];
    // The caller a browser here.
    const contact = source.transport === 'ws' ? firstContactUri(request) : undefined;
    if (contact && source.connectionId !== undefined) {
      const call = this.browserCalls.expect(
        request.callId,
        source.connectionId,
        formatUri(contact),
        request.cseq.seq,
      );
      const to = hop.kind === 'node' ? { nodeHex: hop.nodeHex } : undefined;
      watches.push((branch, ok) => {
        const destination = to ?? branch.destination;
        if (destination) this.browserCalls.callerAnswered(call, branch.request, ok, destination);
      });
    }
    // The callee a browser here (the caller may be one too).
    if (hop.kind === 'address' && hop.transport === 'ws' && 'connectionId' in hop.destination) {
      const call = this.browserCalls.expect(
        request.callId,
        hop.destination.connectionId,
        formatUri(request.requestUri),
        0,
      );
      const upstream =
        fromPeer !== undefined
          ? { nodeHex: fromPeer }
          : source.connectionId !== undefined
            ? { connectionId: source.connectionId }
            : { transport: source.transport, address: source.address, port: source.port };
      const via = this.ownVia(source.transport, source, 'z9hG4bK');
      watches.push((branch, ok) =>
        this.browserCalls.calleeAnswered(call, branch.request, ok, upstream, via),
      );
    }
    if (watches.length === 0) return undefined;
    return (branch, ok) => {
      for (const watch of watches) watch(branch, ok);
    };
  }

  /**
   * RFC 3261 §18.1.1: a request over UDP_REQUEST_MAX_BYTES (with our Via) to a UDP address
   * that may take a connection (a Contact, not a phone behind NAT), unless it refused one
   * lately. A request with a small body is not measured.
   */
  private tooLargeForUdp(hop: AddressHop, request: SipRequest): boolean {
    if (!this.c.connectTcp || hop.transport !== 'udp' || !hop.contact) return false;
    if (request.body.length < UDP_REQUEST_MAX_BYTES / 2) return false;
    const { address, port } = hop.destination as { address: string; port: number };
    if (isIP(address) === 0) return false;
    const refused = this.noTcp.get(`${address}:${port}`);
    if (refused !== undefined && refused > this.c.clock.now()) return false;
    // Our Via, which is not added yet, takes about 140 bytes.
    return serialize(request).length + 140 > UDP_REQUEST_MAX_BYTES;
  }

  /** Whether the phone at address:port took a TCP connection within LARGE_REQUEST_TCP_WAIT_MS. */
  private async tcpTaken(address: string, port: number): Promise<boolean> {
    const connect = this.c.connectTcp;
    if (!connect) return false;
    try {
      await withTimeout(connect(address, port), LARGE_REQUEST_TCP_WAIT_MS, 'TCP connection');
      return true;
    } catch (err) {
      // Refused, reset or silent: remembered. Our own connection table full says nothing.
      const full = err instanceof SipTransportError && err.code === 'ERR_LIMIT';
      if (!full) {
        setBounded(this.noTcp, `${address}:${port}`, this.c.clock.now() + NO_TCP_REMEMBER_MS, 1024);
      }
      this.log.debug(
        { address, port, err: (err as Error).message },
        'a large request goes over UDP: the phone takes no TCP connection',
      );
      return false;
    }
  }

  /**
   * §16.6 steps 8-10: our Via, then the branch started on `hop` (after an overlay connect for
   * a node). `opened`: the context was told of the branch already (ctx.opened).
   */
  private sendBranch(
    ctx: ResponseContext,
    request: SipRequest,
    hop: NextHop,
    onNodeFailure: (() => void) | undefined,
    opened: boolean,
    onResponse?: (branch: Branch, response: SipResponse) => void,
  ): void {
    const outTransport: SipTransportProtocol = hop.kind === 'node' ? 'tcp' : hop.transport;
    const via = this.ownVia(
      outTransport,
      hop.kind === 'address' ? hop.destination : undefined,
      proxyBranch(ctx.loopHash ?? loopHash(request)),
    );
    request.headers.prepend('Via', formatVia(via));
    this.stats.forwarded++;
    const branch: Branch = {
      request,
      provisional: false,
      cancelPending: false,
      canceled: false,
      ...(onNodeFailure ? { onFinal: (status: number) => status === 480 && onNodeFailure() } : {}),
    };
    if (onResponse) branch.onResponse = (response) => onResponse(branch, response);
    if (!opened) ctx.opened();
    if (hop.kind === 'address') {
      // Decided while a phone's TCP connection opened (a 2xx, a 6xx, a CANCEL): not started.
      if (opened && ctx.shut) ctx.fail(branch, 487);
      else ctx.start(branch, hop.destination);
      return;
    }
    const flow = this.c.nodeFlow(hop.nodeHex);
    if (typeof flow === 'string') {
      ctx.start(branch, { connectionId: flow });
      return;
    }
    void withTimeout(flow, this.c.nodeConnectTimeoutMs ?? NODE_CONNECT_TIMEOUT_MS, 'channel').then(
      (connectionId) => {
        // Decided while the channel opened (a 2xx, a 6xx, a CANCEL): the branch never starts.
        if (ctx.shut) ctx.fail(branch, 487);
        else ctx.start(branch, { connectionId });
      },
      (err: unknown) => {
        this.log.info(
          { node: hop.nodeHex, err: (err as Error).message, callId: request.callId },
          'node unreachable',
        );
        ctx.fail(branch, 480, 'Temporarily Unavailable (node unreachable)');
      },
    );
  }

  /**
   * §16.7 step 4: a callee whose answer gives a private Contact other than the address the
   * request reached it at is behind NAT. Our Record-Route in that answer gets a route token
   * for that Contact, with the address (ROUTE_FLOW_PARAM), so that the caller's in-dialog
   * requests reach the phone there (nextHop) and not at its private address.
   */
  private routeToNattedCallee(response: SipResponse, at: { address: string; port: number }): void {
    const contact = firstContactUri(response);
    if (!contact || !isPrivateAddress(contact.host) || sameHost(contact.host, at.address)) return;
    const ours = `<sip:${this.c.nodeHex}@`;
    const values = response.headers.getAll('record-route');
    const i = values.findIndex((v) => v.includes(ours));
    const value = values[i];
    if (value === undefined) return;
    const start = value.indexOf(ours);
    const end = value.indexOf('>', start);
    if (end < 0 || value.slice(start, end).includes(`;${ROUTE_TOKEN_PARAM}=`)) return;
    const flow = formatRouteFlow({ ...at, transport: 'udp' });
    const token = routeToken(this.routeSecret, response.callId, contact, flow);
    values[i] = `${value.slice(0, end)}${routeTokenParams(token, flow)}${value.slice(end)}`;
    response.headers.delete('record-route');
    for (const v of values) response.headers.append('Record-Route', v);
  }

  /** §16.10: CANCEL answered here, and passed on to every pending branch. */
  private receiveCancel(cancel: SipRequest, tx: ServerTransaction): void {
    const target = this.c.transactions.findCancelTarget(cancel);
    if (!target) {
      this.reply(tx, 481);
      return;
    }
    // The INVITE's transaction still there, its final answer sent: the CANCEL changes nothing
    // but is answered 200 all the same (§9.2, RFC 6026's Accepted state after a 2xx).
    this.reply(tx, 200);
    this.contexts.get(target)?.cancelAll(cancel.headers.getAll('reason'));
  }

  private async forwardAck(incoming: SipRequest, source: SipTransportAddress): Promise<void> {
    const mf = incoming.maxForwards ?? 70;
    if (mf <= 0) return;
    const ack = incoming.copy();
    ack.headers.set('Max-Forwards', String(mf - 1));
    const tokens = this.preprocessRoutes(ack);
    const routes = ack.routes;
    const uri = routes[0]?.uri ?? ack.requestUri;
    if (!isSipUri(uri)) return;
    const fromPeer = source.connectionId ? this.c.overlayPeer(source.connectionId) : undefined;
    const hop = this.nextHop(ack, uri, routes.length > 0, tokens, fromPeer);
    if ('status' in hop) {
      this.log.debug({ callId: ack.callId, why: hop.reason }, 'ACK not forwarded');
      return;
    }
    const transport: SipTransportProtocol = hop.kind === 'node' ? 'tcp' : hop.transport;
    const toward = hop.kind === 'address' ? hop.destination : undefined;
    ack.headers.prepend(
      'Via',
      formatVia(this.ownVia(transport, toward, proxyBranch(loopHash(ack)))),
    );
    // Over an open channel at once, as forward() sends: an ACK and the BYE a phone sends right
    // after it keep their order.
    let destination: SipDestination;
    if (hop.kind === 'address') destination = hop.destination;
    else {
      const flow = this.c.nodeFlow(hop.nodeHex);
      destination = { connectionId: typeof flow === 'string' ? flow : await flow };
    }
    this.stats.acksForwarded++;
    this.c.transactions.sendStateless(ack, destination);
  }

  private finish(
    ctx: ResponseContext,
    status: number,
    reason?: string,
    headers?: { name: string; value: string }[],
  ): void {
    ctx.dispose();
    this.contexts.delete(ctx.server);
    ctx.finalSent = true;
    this.reply(ctx.server, status, reason, headers);
  }

  private reply(
    tx: ServerTransaction,
    status: number,
    reason?: string,
    headers?: { name: string; value: string }[],
  ): void {
    // A final response already went out (and a non-INVITE transaction let go of the request).
    if (!tx.holdsRequest) return;
    this.stats.generated[status] = (this.stats.generated[status] ?? 0) + 1;
    tx.respond(
      createResponse(tx.request, status, {
        ...(reason ? { reason } : {}),
        ...(headers ? { headers } : {}),
      }),
    );
  }
}

/** A URI whose transport parameter is TCP. */
function isTcp(uri: SipUri): boolean {
  return (uri.params.transport ?? '').toLowerCase() === 'tcp';
}

function parseContactUri(text: string): SipUri | undefined {
  try {
    const uri = parseUri(text);
    return isSipUri(uri) ? uri : undefined;
  } catch {
    return undefined;
  }
}

/** Two Contacts of one device: scheme, user, host, port and transport alike. */
function sameDevice(a: SipUri, b: SipUri): boolean {
  const transport = (u: SipUri) => u.params.transport?.toLowerCase();
  return (
    a.scheme === b.scheme &&
    a.user === b.user &&
    a.host.toLowerCase() === b.host.toLowerCase() &&
    a.port === b.port &&
    transport(a) === transport(b)
  );
}

/** The first Contact of a request, when it is a SIP URI that parses. */
function firstContactUri(message: SipRequest | SipResponse): SipUri | undefined {
  try {
    const contacts = message.contacts;
    const uri = contacts === '*' ? undefined : contacts[0]?.uri;
    return uri && isSipUri(uri) ? uri : undefined;
  } catch {
    return undefined;
  }
}

/** The next hop to an address (IP and port) over a transport, a phone's or an outside host's. */
function addressNextHop(to: {
  transport: SipTransportProtocol;
  address: string;
  port: number;
}): AddressHop {
  const { transport, address, port } = to;
  return { kind: 'address', destination: { transport, address, port }, transport };
}

/** A route token taken off one of our Routes, with the NATed phone's flow it names, if any. */
interface RouteTokenParams {
  token: string;
  flow?: string;
}

const NO_ROUTE: Refusal = { status: 404, reason: 'Not Found (no route to the Request-URI)' };

function peerRefusal(uri: SipUri): Refusal {
  return {
    status: 403,
    reason: `Forbidden (requests from other nodes reach only devices registered here, not ${reasonText(uriHostPort(uri))})`,
  };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${what} after ${ms} ms`)), ms);
    }),
  ]);
}

/** A hop as given, not marked as a phone's Contact (which a large request may reach by TCP). */
function stripContact(hop: AddressHop): AddressHop {
  return { kind: 'address', destination: hop.destination, transport: hop.transport };
}

/** How a dialog target is remembered: user@host:port (refreshedTargets). */
function targetKey(uri: SipUri): string {
  return `${uri.user ?? ''}@${uriHostPort(uri)}`;
}

/** A dialog's key for refreshedTargets: its Call-ID and both tags; none without a To tag. */
function dialogKey(message: SipRequest | SipResponse): string | undefined {
  const { fromTag, toTag } = message;
  if (fromTag === undefined || toTag === undefined) return undefined;
  return `${message.callId}\n${fromTag < toTag ? `${fromTag}\n${toTag}` : `${toTag}\n${fromTag}`}`;
}
