// A PeerBX node's SIP side: the transports phones talk to, overlay channels to other nodes,
// the transaction layer over both, and the registrar and proxy as its transaction users.
// Every inbound message is parsed here once; what does not parse is answered 400 or dropped.

import { type Clock, idToHex, systemClock, type TimerHandle } from '@peerbx/dht-kademlia';
import {
  type Channel,
  KIND_SIP_REGISTRATION,
  type Logger,
  type StoredRecord,
  silentLogger,
} from '@peerbx/overlay-core';
import { DigestAuthenticator, type SipUsers } from '../auth/authenticator.js';
import { type AuthMode, authRequired } from '../auth/policy.js';
import { SipParseError } from '../errors.js';
import { createBadRequest, createResponse, reasonText } from '../message/response.js';
import {
  parseSipMessage,
  type SipMessage,
  type SipRequest,
  type SipResponse,
  serialize,
} from '../message/sip-message.js';
import { isSipUri } from '../message/uri.js';
import { Locator } from '../overlay-bridge/locator.js';
import type { OverlayAccess } from '../overlay-bridge/overlay-access.js';
import { RegistrationPublisher } from '../overlay-bridge/registration-publisher.js';
import { StatefulProxy, shutdownAnswer } from '../proxy/proxy.js';
import { type Binding, BindingStore } from '../registrar/binding-store.js';
import type { BindingsPersistence } from '../registrar/bindings-persistence.js';
import { isLocalDomain, RegisterHandler, resourceOfAor } from '../registrar/register-handler.js';
import type { TimerOptions } from '../transaction/index.js';
import {
  type ServerTransaction,
  stampTopVia,
  TransactionLayer,
  type TransactionUser,
} from '../transaction/index.js';
import type { UnframeableReason } from '../transport/errors.js';
import { SipSocketTransports } from '../transport/layer.js';
import { InterfaceAddresses, isWildcardAddress } from '../transport/local-address.js';
import type {
  SipDestination,
  SipTransportAddress,
  SipTransportProtocol,
} from '../transport/transport.js';
import { webPhone } from '../transport/web-phone.js';
import { OverlayFlows, SIP_APPLICATION } from './overlay-flows.js';
import {
  OVERLOAD_RETRY_AFTER_S,
  OverloadGuard,
  type OverloadGuardOptions,
} from './overload-guard.js';

/** The overlay as the SIP node uses it: store/fetch/connect, and incoming channels. */
export interface SipNodeOverlay extends OverlayAccess {
  readonly config: { readonly domain: string; readonly enrollment?: 'open' | 'enrolled' };
  readonly links: {
    handle(application: string, handler: (channel: Channel) => void): void;
    unhandle(application: string): void;
  };
}

export interface SipNodeOptions {
  overlay: SipNodeOverlay;
  /** UDP and TCP; default 127.0.0.1:5060. Port 0 picks a free port. */
  sip?: { host: string; port: number };
  /**
   * WebSocket; default 127.0.0.1:5066; false: none. `tls`: secure WebSocket (wss) with this
   * certificate and key (PEM). `origins`: web pages besides this machine's that may connect
   * (`*`: any; see originAllowed).
   */
  ws?:
    | {
        host: string;
        port: number;
        tls?: { cert: string | Buffer; key: string | Buffer };
        origins?: readonly string[];
      }
    | false;
  /** The SIP domain; default the overlay configuration's. */
  domain?: string;
  logger?: Logger;
  clock?: Clock;
  /** Transaction timers (tests shorten them). */
  timers?: TimerOptions;
  /** Timer C of the proxy, ms. */
  timerCMs?: number;
  /**
   * How long a call may ring, ms: an INVITE this node forwards that has no final answer by
   * then is CANCELed and answered 480 (the `ringTimeout` setting). Unset, Timer C alone.
   */
  ringTimeoutMs?: number;
  /** How long a TCP phone whose connection closed may still answer (TCP_ANSWER_GRACE_MS). */
  tcpAnswerGraceMs?: number;
  /** How long a browser whose connection closed has to come back (BROWSER_GONE_GRACE_MS). */
  browserGoneGraceMs?: number;
  /** How long a fetched registration is reused, ms. */
  locationCacheMs?: number;
  bindings?: BindingStore;
  /** Keeps bindings across restarts (FileBindingsStore in the data directory); default none. */
  bindingsStore?: BindingsPersistence;
  /**
   * Digest authentication of phones: `auto` (default) when listening on a non-loopback
   * address, `always`, or `never`. Requests from other nodes are never challenged.
   */
  auth?: AuthMode;
  /** The users phones authenticate as (realm: the SIP domain). */
  users?: SipUsers;
  /** Nonce HMAC key; default random per start. */
  authSecret?: Uint8Array;
  /**
   * Key of the tokens in this node's Record-Routes; default random per start (loadRouteSecret
   * keeps one in the data directory).
   */
  routeSecret?: Uint8Array;
  /** Digest algorithms offered, in order; default SHA-256 then MD5. */
  authAlgorithms?: readonly ('SHA-256' | 'MD5')[];
  /**
   * Let phones reach SIP addresses outside the overlay through this node (default false:
   * 403). Requests from other nodes are delivered to this node's own devices only, always.
   */
  relayExternal?: boolean;
  /**
   * Other addresses phones reach this node at (a port published by Docker or forwarded by a
   * router, a public address): a Route or Request-URI naming one names this node.
   */
  aliases?: readonly { host: string; port: number }[];
  /** How often expired bindings are swept and their TCP/WS flows let go, ms (default 5000). */
  bindingSweepMs?: number;
  /** Overload control: the queue delay that counts as overload, and so on (tests set these). */
  overload?: OverloadGuardOptions;
}

export interface SipNodeStats {
  /** Messages that did not parse: answered with 400, or dropped. */
  badRequestsAnswered: number;
  malformedDropped: number;
  /** Requests with a SIP version other than 2.0 (answered 505). */
  versionRejected: number;
  /** Requests of a phone logged in as one user that named another in From (answered 403). */
  sentAsOther: number;
}

/** Default period of the expired-binding sweep (SipNodeOptions.bindingSweepMs). */
const BINDING_SWEEP_MS = 5_000;
/**
 * A TCP phone whose connection closed while a request to it awaited its answer has this long
 * to answer over a new one; then the request ends as 480 (not at Timer C, 3 minutes).
 */
export const TCP_ANSWER_GRACE_MS = 10_000;
/**
 * A browser whose connection closed (not by this node, for idleness) has this long to register
 * again on a new one (a page reconnecting) before its calls are ended with its BYE.
 */
export const BROWSER_GONE_GRACE_MS = 4_000;
/** The reasons this node closes a connection itself (not its phone going away). */
const OWN_CLOSES: ReadonlySet<string> = new Set(['idle', 'evicted', 'no message', 'closing']);

/**
 * A node that stops waits this long at most for the phones it rang to answer its CANCELs
 * (their 487s are ACKed then), ms.
 */
export const SHUTDOWN_ANSWERS_MS = 500;

const ALLOW =
  'INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, SUBSCRIBE, NOTIFY, REFER, INFO, UPDATE, PRACK, REGISTER';

/** The user part of a request's From, or its whole URI when it has none. */
function fromUser(request: SipRequest): string {
  const uri = request.from.uri;
  return isSipUri(uri) ? (uri.user ?? uri.host) : String(uri);
}

/**
 * Whether an authenticated user may send `request`: its From is that user, or anonymous
 * (RFC 3323: sip:anonymous@anonymous.invalid), whatever the domain (phones pointed at the
 * node write its address there).
 */
function speaksFor(user: string, request: SipRequest): boolean {
  const uri = request.from.uri;
  if (!isSipUri(uri)) return false;
  return (
    uri.user === user ||
    (uri.user?.toLowerCase() === 'anonymous' && uri.host.toLowerCase() === 'anonymous.invalid')
  );
}

export class SipNode implements TransactionUser {
  readonly transports: SipSocketTransports;
  readonly transactions: TransactionLayer;
  readonly bindings: BindingStore;
  readonly registrar: RegisterHandler;
  readonly publisher: RegistrationPublisher;
  readonly locator: Locator;
  readonly proxy: StatefulProxy;
  readonly flows: OverlayFlows;
  /** Refuses a share of new requests while messages wait too long to be read (RFC 6357). */
  readonly overload: OverloadGuard;
  readonly domain: string;
  /** The WebSocket speaks TLS (wss). */
  readonly wsSecure: boolean;
  readonly nodeHex: string;
  /** Set when phones must authenticate (see SipNodeOptions.auth). */
  readonly auth: DigestAuthenticator | undefined;
  readonly stats: SipNodeStats = {
    badRequestsAnswered: 0,
    malformedDropped: 0,
    versionRejected: 0,
    sentAsOther: 0,
  };
  private readonly log: Logger;
  /** This machine's addresses, for a node listening on every interface. */
  private readonly interfaces = new InterfaceAddresses();
  /** SipNodeOptions.aliases, hosts in lower case without brackets. */
  private readonly aliases: readonly { host: string; port: number }[];
  private readonly overlay: SipNodeOverlay;
  private readonly bindingsStore: BindingsPersistence | undefined;
  /** Set once close() began: new requests are refused while calls under way are ended. */
  private stopping = false;
  private closing: Promise<void> | undefined;
  private closed = false;
  private readonly clock: Clock;
  private readonly sweepMs: number;
  private sweepTimer: TimerHandle | undefined;
  /** Pending ends of requests sent to TCP phones whose connection closed (flow-closed). */
  private readonly graceTimers = new Set<TimerHandle>();

  private constructor(
    options: SipNodeOptions,
    transports: SipSocketTransports,
    restored: readonly Binding[],
  ) {
    const clock = options.clock ?? systemClock;
    this.overlay = options.overlay;
    this.transports = transports;
    this.domain = sipDomain(options);
    this.aliases = (options.aliases ?? []).map(({ host, port }) => ({
      host: host.toLowerCase().replace(/^\[|\]$/g, ''),
      port,
    }));
    this.wsSecure = options.ws !== false && options.ws?.tls !== undefined;
    this.nodeHex = idToHex(options.overlay.nodeId);
    // Each part names itself as the component of its lines: what they share is the node.
    const log = (options.logger ?? silentLogger).child({ node: this.nodeHex });
    this.log = log.child({ component: 'sip-node' });
    this.bindings = options.bindings ?? new BindingStore();
    this.bindingsStore = options.bindingsStore;
    const hosts = [options.sip?.host ?? '127.0.0.1', ...(options.ws ? [options.ws.host] : [])];
    this.auth = authRequired(options.auth ?? 'auto', hosts)
      ? new DigestAuthenticator({
          realm: this.domain,
          users: options.users ?? {},
          clock,
          ...(options.authSecret ? { secret: options.authSecret } : {}),
          ...(options.authAlgorithms ? { algorithms: options.authAlgorithms } : {}),
          isOwnUri: (uri) =>
            uri.user === undefined &&
            isLocalDomain(uri.host, uri.port, this.domain, this.ownAddresses()),
          logger: log,
        })
      : undefined;
    if (this.auth && Object.keys(options.users ?? {}).length === 0) {
      this.log.warn(
        { realm: this.domain },
        'digest authentication is on but no users are configured: phones cannot register',
      );
    }
    this.publisher = new RegistrationPublisher(options.overlay, clock);
    // A node that wrote a registration lately is up: not one to skip as unreachable.
    this.locator = new Locator(options.overlay, clock, options.locationCacheMs, {}, (id, at) =>
      this.flows.heardOf(idToHex(id), at),
    );
    this.flows = new OverlayFlows({
      connect: (id, app) => options.overlay.connect(id, app),
      heardWithin: (id, ms) => options.overlay.heardWithin?.(id, ms) === true,
      onMessage: (data, source) => this.inbound(data, source),
      onClosed: (id) => this.flowGone(id),
      logger: log,
      now: () => clock.now(),
    });
    this.transactions = new TransactionLayer({
      send: (data, destination) => this.send(data, destination),
      user: this,
      clock,
      ...(options.timers ? { timers: options.timers } : {}),
    });
    this.registrar = new RegisterHandler({
      store: this.bindings,
      publisher: this.publisher,
      domain: this.domain,
      localAddresses: () => this.ownAddresses(),
      clock,
      keepFlow: (id, keep) => this.transports.keepFlow(id, keep),
      ...(options.bindingsStore ? { persistence: options.bindingsStore } : {}),
      logger: log,
    });
    this.proxy = new StatefulProxy({
      ...(options.routeSecret ? { routeSecret: options.routeSecret } : {}),
      dialogTokens: this.auth !== undefined,
      nodeHex: this.nodeHex,
      domain: this.domain,
      transactions: this.transactions,
      bindings: this.bindings,
      locator: this.locator,
      clock,
      localAddress: (t, toward) => this.localAddress(t, toward),
      ...(this.wsSecure ? { wsSecure: true } : {}),
      isOwnAddress: (host, port) => this.isOwnAddress(host, port),
      nodeFlow: (hex) => this.flows.toNode(hex),
      overlayPeer: (id) => this.flows.peerOf(id),
      flowAlive: (id) => this.flows.has(id) || this.transports.hasFlow(id),
      connectTcp: (address, port) => this.transports.connectTcp(address, port),
      tcpOpen: (address, port) => this.transports.hasTcpTo(address, port),
      logger: log,
      ...(options.timerCMs === undefined ? {} : { timerCMs: options.timerCMs }),
      ...(options.ringTimeoutMs === undefined ? {} : { ringTimeoutMs: options.ringTimeoutMs }),
      ...(options.relayExternal ? { relayExternal: true } : {}),
      ...(options.overlay.config.enrollment === 'enrolled' ? { namesCertified: true } : {}),
    });
    this.overload = new OverloadGuard({
      waiting: () => transports.queueProbeWaitingMs(),
      ...options.overload,
    });
    transports.on('message', ({ data, source }) => this.inbound(data, source));
    // A WebSocket phone that went away cannot answer on another connection; a TCP phone may
    // (RFC 3261 §18.2.2: a response goes over a new connection when the request's closed), and
    // gets TCP_ANSWER_GRACE_MS to do so. The bindings nothing else reaches go
    // (RegisterHandler.flowClosed); a browser that went away (not closed by this node) and does
    // not come back within BROWSER_GONE_GRACE_MS has its calls ended with its BYE.
    transports.on('flow-closed', ({ connectionId, transport, reason }) => {
      const later = (ms: number, task: () => void) => {
        const grace = clock.setTimeout(() => {
          this.graceTimers.delete(grace);
          task();
        }, ms);
        this.graceTimers.add(grace);
      };
      if (transport === 'ws') this.flowGone(connectionId);
      else
        later(options.tcpAnswerGraceMs ?? TCP_ANSWER_GRACE_MS, () => this.flowGone(connectionId));
      if (this.closed) return;
      this.registrar.flowClosed(connectionId);
      if (transport === 'ws' && !OWN_CLOSES.has(reason)) {
        later(options.browserGoneGraceMs ?? BROWSER_GONE_GRACE_MS, () => {
          if (!this.closed) this.proxy.browserGone(connectionId);
        });
      }
    });
    transports.on('queue-delay', (sojournMs, lost) =>
      lost ? this.overload.lost(sojournMs) : this.overload.sample(sojournMs),
    );
    options.overlay.links.handle(SIP_APPLICATION, (channel) => {
      this.flows.adopt(channel);
    });
    this.clock = clock;
    this.restoreRegistrations(restored, clock.now());
    this.sweepMs = Math.max(10, options.bindingSweepMs ?? BINDING_SWEEP_MS);
    this.scheduleSweep();
  }

  /**
   * Expired bindings go, and the TCP/WS flows only they kept open are released (idle timeout).
   * The nodes where a request awaits its final answer (a call ringing there) are asked whether
   * they are still there: one whose power failed answers nothing, its channel closes within
   * seconds (Link.probe), and the caller hears 480 instead of ringing until Timer C.
   */
  private scheduleSweep(): void {
    this.sweepTimer = this.clock.setTimeout(() => {
      this.sweepTimer = undefined;
      if (this.closed) return;
      try {
        this.registrar.sweep();
        // Callers' nodes too: one that died silently never closes its channel.
        const awaited = this.transactions.awaitedFlows();
        for (const id of this.proxy.upstreamFlows()) if (this.flows.has(id)) awaited.add(id);
        for (const id of awaited) this.flows.probe(id);
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'binding sweep failed');
      }
      this.scheduleSweep();
    }, this.sweepMs);
  }

  /** Binds the SIP transports and starts serving phones and other nodes. */
  static async start(options: SipNodeOptions): Promise<SipNode> {
    const sip = options.sip ?? { host: '127.0.0.1', port: 5060 };
    const ws = options.ws;
    const domain = sipDomain(options);
    const restored = options.bindingsStore ? await options.bindingsStore.load() : [];
    let node: SipNode | undefined;
    const transports = await SipSocketTransports.listen({
      host: sip.host,
      port: sip.port,
      ...(ws === false
        ? { ws: false }
        : ws
          ? {
              wsHost: ws.host,
              wsPort: ws.port,
              ...(ws.tls ? { wsTls: ws.tls } : {}),
              ...(ws.origins ? { wsOrigins: ws.origins } : {}),
            }
          : {}),
      ...(ws === false ? {} : { wsPage: webPhone(domain) }),
      ...(options.logger ? { logger: options.logger } : {}),
      onUnframeable: (source, headers, reason) => node?.unframeable(source, headers, reason),
    });
    node = new SipNode(options, transports, restored);
    return node;
  }

  get addresses() {
    return this.transports.addresses;
  }

  /** A connection closed for good: what waited on it ends, what came over it is cancelled. */
  private flowGone(connectionId: string): void {
    this.transactions.flowClosed(connectionId);
    this.proxy.upstreamClosed(connectionId);
  }

  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    this.stopping = true;
    // Calls being set up end here, not at the phones' timeouts: their callers get an answer
    // (503 from their own node, 480 from the callee's) and their callees a CANCEL, sent before
    // the sockets close (UDP sends leave on a later tick). The callees' 487s are waited for
    // (SHUTDOWN_ANSWERS_MS at most), so that they are ACKed and not resent until Timer H; new
    // requests meanwhile are refused.
    try {
      if (this.proxy.shutdown() > 0) {
        const until = this.clock.now() + SHUTDOWN_ANSWERS_MS;
        do await new Promise((resolve) => this.clock.setTimeout(() => resolve(undefined), 10));
        while (this.transactions.invitesAwaitingFinal() > 0 && this.clock.now() < until);
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'calls under way not ended');
    }
    this.closed = true;
    if (this.sweepTimer) this.clock.clearTimeout(this.sweepTimer);
    for (const t of this.graceTimers) this.clock.clearTimeout(t);
    this.graceTimers.clear();
    this.overlay.links.unhandle(SIP_APPLICATION);
    this.proxy.close();
    this.transactions.close();
    this.flows.close();
    await this.transports.close();
    const store = this.bindingsStore;
    if (store?.close) await store.close();
    else await store?.flush?.();
  }

  // --- TransactionUser -------------------------------------------------------------------------

  receiveRequest(request: SipRequest, tx: ServerTransaction, source: SipTransportAddress): void {
    const fromNode = this.flows.has(source.connectionId ?? '');
    if (this.stopping) {
      // As shutdown answers what was under way: a CANCEL finds its INVITE answered (§9.2),
      // another node hears its callee is away for now (480), a phone that its proxy is (503).
      if (request.method === 'CANCEL') tx.respond(createResponse(request, 200));
      else {
        const { status, reason } = shutdownAnswer(fromNode);
        tx.refuse(createResponse(request, status, { reason }));
      }
      return;
    }
    if (request.method === 'REGISTER') {
      if (fromNode) {
        tx.respond(
          createResponse(request, 403, { reason: 'REGISTER is only taken from local phones' }),
        );
        return;
      }
      let user: string | undefined;
      if (this.auth) {
        const outcome = this.auth.check(request, 'registrar', source.address);
        if (!outcome.ok) {
          tx.refuse(outcome.response);
          return;
        }
        user = outcome.user;
      }
      void this.registrar.handle(request, source, user).then((res) => tx.respond(res));
      return;
    }
    const outOfDialog = !request.toTag && request.method !== 'CANCEL';
    // Addressed to the node itself, not to a user (looked at once).
    const toNode = (outOfDialog || request.method === 'OPTIONS') && this.isForMe(request);
    const forMe = request.method === 'OPTIONS' && toNode;
    // A new out-of-dialog request (CANCEL belongs to its INVITE; OPTIONS to us is a keepalive).
    const fresh = outOfDialog && !forMe;
    // Overload: new requests only; what continues or ends a call already taken goes on.
    if (fresh && !this.overload.admit()) {
      tx.refuse(
        createResponse(request, 503, {
          reason: 'Service Unavailable (overloaded)',
          headers: [{ name: 'Retry-After', value: String(OVERLOAD_RETRY_AFTER_S) }],
        }),
      );
      return;
    }
    // Requests from phones: out-of-dialog ones, and in-dialog ones that do not come along a
    // Record-Route this node made for their dialog (a To tag alone proves no call: it would
    // reach any phone of the overlay unasked). CANCEL cannot be challenged (RFC 3261 §22.1).
    const proven = () => request.method === 'CANCEL' || forMe || this.proxy.routedDialog(request);
    if (this.auth && !fromNode && (fresh || !proven())) {
      const outcome = this.auth.check(request, 'proxy', source.address);
      if (!outcome.ok) {
        tx.refuse(outcome.response);
        return;
      }
      this.auth.stripCredentials(request);
      // RFC 3261 §22, §26.1.2: a phone that proved to be one user speaks for that user only.
      if (!speaksFor(outcome.user, request)) {
        this.stats.sentAsOther++;
        tx.respond(
          createResponse(request, 403, {
            reason: `Forbidden (${outcome.user} may not send as ${reasonText(fromUser(request), 64)})`,
          }),
        );
        return;
      }
    }
    if (forMe) {
      tx.respond(
        createResponse(request, 200, {
          headers: [
            { name: 'Allow', value: ALLOW },
            { name: 'Accept', value: 'application/sdp' },
          ],
        }),
      );
      return;
    }
    if (fresh && toNode) {
      // RFC 3261 §8.2.1, §21.5.2: the node itself takes OPTIONS and REGISTER, nothing else.
      const known = ALLOW.split(', ').includes(request.method);
      tx.respond(
        createResponse(
          request,
          known ? 405 : 501,
          known ? { headers: [{ name: 'Allow', value: 'OPTIONS, REGISTER' }] } : {},
        ),
      );
      return;
    }
    this.proxy.receiveRequest(request, tx, source);
  }

  receiveAck(ack: SipRequest, source: SipTransportAddress): void {
    // An ACK cannot be challenged (RFC 3261 §22.1): where phones must authenticate, one from a
    // phone goes on only along a Record-Route this node made for its dialog, as other
    // in-dialog requests do unchallenged; a made-up one (with SDP, say) would reach a phone.
    if (this.auth && !this.flows.has(source.connectionId ?? '') && !this.proxy.routedDialog(ack)) {
      this.log.debug({ callId: ack.callId }, 'ACK outside a dialog routed here dropped');
      return;
    }
    this.proxy.receiveAck(ack, source);
  }

  receiveStrayResponse(response: SipResponse): void {
    this.proxy.receiveStrayResponse(response);
  }

  transportError(error: unknown, tx: ServerTransaction): void {
    this.log.debug({ err: (error as Error).message, branch: tx.branch }, 'response not sent');
  }

  /**
   * Puts saved bindings back, and brings the overlay up to date with them in the background,
   * after whatever REGISTERs are waiting for overlay writes: each user's record from before the
   * stop (which the overlay stores again) stands where it still fits the bindings, and is
   * written again where it does not. Users whose devices here all left while the overlay could
   * not be told (see RegisterHandler.handle), or just before the node stopped, still have a
   * record naming devices here: they get a tombstone, unless a REGISTER came first.
   */
  private restoreRegistrations(restored: readonly Binding[], now: number): void {
    const own = (
      this.overlay.ownRecords?.(KIND_SIP_REGISTRATION, this.overlay.nodeId) ?? Promise.resolve([])
    ).then(
      (records) => new Map(records.map((r) => [r.resource, r])),
      () => new Map<string, StoredRecord>(),
    );
    const restore = (aor: string, resource: string, saved: Promise<StoredRecord | undefined>) => {
      const current = () => this.bindings.lookup(aor, this.clock.now());
      this.publisher.restore(aor, resource, current, saved).catch((err: unknown) => {
        // Stopping closed the store under it: the binding is saved, the next start publishes it.
        const level = this.stopping ? 'debug' : 'warn';
        this.log[level](
          { aor, err: (err as Error).message },
          'restored registration not published',
        );
      });
    };
    if (restored.length > 0) {
      this.bindings.restore(restored, now);
      for (const aor of this.bindings.aors()) {
        if (this.bindings.lookup(aor, now).length === 0) continue;
        const resource = resourceOfAor(aor);
        restore(
          aor,
          resource,
          own.then((records) => records.get(resource)),
        );
      }
      this.log.info({ bindings: restored.length }, 'bindings restored');
    }
    void own.then((records) => {
      for (const record of records.values()) {
        const aor = `sip:${record.resource}`;
        if (this.stopping || record.value.length === 0) continue;
        if (this.bindings.lookup(aor, this.clock.now()).length > 0) continue;
        restore(aor, record.resource, Promise.resolve(record));
      }
    });
  }

  // --- inbound and outbound ----------------------------------------------------------------------

  /** One message from a phone or another node: parsed, checked, handed to the transactions. */
  private inbound(data: Buffer, source: SipTransportAddress): void {
    if (this.closed) return;
    try {
      this.handle(data, source);
    } finally {
      // After the message's own sends: a call forwarded in this turn does not wait behind it.
      this.transports.probeQueue();
    }
  }

  private handle(data: Buffer, source: SipTransportAddress): void {
    let message: SipMessage;
    try {
      message = parseSipMessage(data);
    } catch (err) {
      if (err instanceof SipParseError) {
        const reply = createBadRequest(err);
        if (reply) {
          this.stats.badRequestsAnswered++;
          this.reply(reply, source);
        } else this.stats.malformedDropped++;
        this.log.debug(
          { err: err.message, from: `${source.address}:${source.port}` },
          'unparsable message',
        );
        return;
      }
      this.stats.malformedDropped++;
      return;
    }
    if (message.version !== 'SIP/2.0') {
      if (message.kind === 'request' && message.method !== 'ACK') {
        this.stats.versionRejected++;
        this.reply(createResponse(message, 505), source);
      }
      return;
    }
    try {
      // Not over another node's flow: its "source" is a channel, not a packet's address.
      if (message.kind === 'request' && !this.flows.has(source.connectionId ?? '')) {
        stampTopVia(message, source);
      }
      this.transactions.receive(message, source);
    } catch (err) {
      // A header the transaction layer needed did not parse: answer like the parser would.
      if (err instanceof SipParseError && message.kind === 'request' && message.method !== 'ACK') {
        this.stats.badRequestsAnswered++;
        this.reply(createResponse(message, 400, { reason: err.reasonPhrase }), source);
      } else {
        this.stats.malformedDropped++;
      }
    }
  }

  /**
   * A stream that cannot be framed any further is closed; its last request is answered first
   * where its headers allow (RFC 3261 §18.3): 513 when it is over the size limit, 400 for a
   * missing or bad Content-Length. Bytes that are not SIP, or headers too long to read, get
   * nothing.
   */
  private unframeable(source: SipTransportAddress, headers: Buffer, reason: UnframeableReason) {
    if (this.closed || reason === 'not-sip' || reason === 'header-too-large') return;
    // The headers alone, without the Content-Length that could not be used, parse as a request.
    const text = headers.toString('latin1').replace(/\r\n(?:content-length|l)[ \t]*:[^\r]*/gi, '');
    let request: SipMessage;
    try {
      request = parseSipMessage(Buffer.from(text, 'latin1'));
    } catch {
      return;
    }
    if (request.kind !== 'request' || request.method === 'ACK') return;
    const [status, phrase] =
      reason === 'body-too-large'
        ? [513, 'Message Too Large']
        : [
            400,
            reason === 'missing-content-length' ? 'Missing Content-Length' : 'Bad Content-Length',
          ];
    this.stats.badRequestsAnswered++;
    this.reply(createResponse(request, status, { reason: phrase }), source);
  }

  private reply(response: SipResponse, source: SipTransportAddress): void {
    const destination: SipDestination =
      source.connectionId !== undefined
        ? { connectionId: source.connectionId }
        : { transport: source.transport, address: source.address, port: source.port };
    try {
      const sent = this.send(serialize(response), destination);
      if (sent) sent.catch(() => undefined);
    } catch {
      // The flow went away: nothing to answer on.
    }
  }

  private send(
    data: Uint8Array,
    destination: SipDestination,
  ): Promise<SipTransportAddress> | undefined {
    if ('connectionId' in destination && this.flows.has(destination.connectionId)) {
      this.flows.send(destination.connectionId, data);
      return undefined;
    }
    return this.transports.send(data, destination);
  }

  /** A request to the node itself: one of our hosts, no user part, no Route but ours. */
  private isForMe(request: SipRequest): boolean {
    const uri = request.requestUri;
    if (!isSipUri(uri) || uri.user !== undefined) return false;
    if (!isLocalDomain(uri.host, uri.port, this.domain, this.ownAddresses())) return false;
    if (!request.headers.has('route')) return true;
    // A phone whose outbound proxy is this node puts a Route naming it (a preloaded Route,
    // RFC 3261 §8.1.2); Routes that all name this node lead here.
    try {
      return request.routes.every((r) => this.proxy.namesThisNode(r.uri));
    } catch {
      return false;
    }
  }

  /**
   * Our address for `t` as a peer at `toward` must see it (Record-Route, Via): the bound one, or
   * when bound to every interface, the one its open connection reached (a TCP or WebSocket
   * flow), else that of the interface facing the peer.
   */
  private localAddress(
    t: SipTransportProtocol,
    toward?: SipDestination | SipTransportAddress,
  ): { host: string; port: number } {
    const a = this.transports.addresses;
    const bound = t === 'ws' && a.ws ? a.ws : a.udp;
    if (!isWildcardAddress(bound.address)) return { host: bound.address, port: bound.port };
    const flow = toward && 'connectionId' in toward ? toward.connectionId : undefined;
    const host =
      (flow === undefined ? undefined : this.transports.localAddressOf(flow)) ??
      this.interfaces.facing(toward && 'address' in toward ? toward.address : undefined);
    return { host: host.includes(':') ? `[${host}]` : host, port: bound.port };
  }

  /** Hosts and host:port pairs that name this node (every interface's when bound to all). */
  private ownAddresses(): string[] {
    const a = this.transports.addresses;
    const out = [a.udp.address, `${a.udp.address}:${a.udp.port}`, `${a.tcp.address}:${a.tcp.port}`];
    if (a.ws) out.push(`${a.ws.address}:${a.ws.port}`);
    // A host as is, in brackets when IPv6, and with its port.
    const forms = (address: string, port: number) => {
      const host = address.includes(':') ? `[${address}]` : address;
      out.push(address, host, `${host}:${port}`);
    };
    for (const alias of this.aliases) forms(alias.host, alias.port);
    for (const x of [a.udp, a.tcp, ...(a.ws ? [a.ws] : [])]) {
      if (!isWildcardAddress(x.address)) continue;
      for (const i of this.interfaces.list()) forms(i.address, x.port);
    }
    return out;
  }

  private isOwnAddress(host: string, port: number | undefined): boolean {
    const h = host.toLowerCase().replace(/^\[|\]$/g, '');
    if (this.aliases.some((x) => x.host === h && (port === undefined || x.port === port))) {
      return true;
    }
    const a = this.transports.addresses;
    const all = [a.udp, a.tcp, ...(a.ws ? [a.ws] : [])];
    const loopback = h === 'localhost' || h === '127.0.0.1' || h === '::1';
    return all.some(
      (x) =>
        (x.address === h ||
          (loopback && (x.address === '127.0.0.1' || isWildcardAddress(x.address))) ||
          (isWildcardAddress(x.address) && this.interfaces.has(h))) &&
        (port === undefined || x.port === port),
    );
  }
}

/** The SIP domain of the node's users: the option, else the overlay configuration's. */
function sipDomain(options: SipNodeOptions): string {
  return (options.domain ?? options.overlay.config.domain).toLowerCase();
}
