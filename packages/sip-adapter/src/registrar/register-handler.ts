// The registrar's REGISTER processing (RFC 3261 §10.3): a REGISTER request in, its response out.
// Checks the AOR's domain, reads Contacts and expiries, applies them to the BindingStore, then
// publishes the change to the overlay; a refused or failed publish undoes the local change,
// except that a failed publish of a device removal leaves it standing and is retried.

import type { Clock } from '@peerbx/dht-kademlia';
import {
  isUserName,
  type Logger,
  OverlayError,
  silentLogger,
  USER_NAME_RULE,
} from '@peerbx/overlay-core';
import { RegistrarBusyError, SipParseError } from '../errors.js';
import { contactExpires, contactQ, optionTags } from '../message/headers.js';
import { unquote } from '../message/lexer.js';
import { createResponse, reasonText } from '../message/response.js';
import type { SipRequest, SipResponse } from '../message/sip-message.js';
import { formatUri, isSipUri } from '../message/uri.js';
import type { SipTransportAddress } from '../transport/transport.js';
import type { Binding, BindingStore, ContactInput, Flow } from './binding-store.js';
import type { BindingsPersistence } from './bindings-persistence.js';
import {
  LOCAL_HOST_ALIASES,
  REGISTER_BUSY_RETRY_AFTER_S,
  REGISTER_RETRY_AFTER_S,
} from './handler-constants.js';
import { behindNat } from './nat.js';

/** What the handler needs of the overlay bridge: RegistrationPublisher.sync (and renew). */
export interface RegistrationSync {
  sync(aor: string, resource: string, bindings: readonly Binding[]): Promise<unknown>;
  /** AORs whose published record lapses within `withinMs` of `now`, devices and all. */
  lapsing?(now: number, withinMs: number): string[];
  /** Publishes the AOR's bindings (`current()`) again if they outlive its record. */
  renew?(aor: string, resource: string, current: () => readonly Binding[]): Promise<unknown>;
}

/**
 * A user's record in the overlay is written again when it would lapse within this long while
 * the user's phones, refreshing here, outlive it (see sweep). Refreshes answered locally do
 * not extend it, and a record that lapsed makes callers at other nodes hear 404.
 */
export const RENEW_BEFORE_MS = 30_000;

export interface RegisterHandlerOptions {
  store: BindingStore;
  publisher: RegistrationSync;
  /** The overlay's SIP domain (OverlayConfig.domain). */
  domain: string;
  /**
   * The node's own addresses ("127.0.0.1", "10.0.0.5:5060"...), accepted as aliases of the
   * domain besides localhost and 127.0.0.1. Called per request: ports are known after binding.
   */
  localAddresses?: () => readonly string[];
  clock: Clock;
  /** Marks a TCP/WS flow as carrying a registration (SipSocketTransports.keepFlow). */
  keepFlow?: (connectionId: string, keep: boolean) => void;
  /** Where accepted bindings are saved, to survive a restart (FileBindingsStore). */
  persistence?: Pick<BindingsPersistence, 'save'>;
  logger?: Logger;
}

/** The canonical AOR and the overlay resource name for a To URI, or why there is none. */
export type AorResult =
  | { ok: true; aor: string; resource: string; user: string }
  | { ok: false; status: 403 | 404 | 416; reason: string };

/** True when `host` (optionally with port) names this node's domain or one of its aliases. */
export function isLocalDomain(
  host: string,
  port: number | undefined,
  domain: string,
  localAddresses: readonly string[],
): boolean {
  const h = host.toLowerCase();
  if (h === domain || LOCAL_HOST_ALIASES.includes(h)) return true;
  return localAddresses.some((a) => a === h || (port !== undefined && a === `${h}:${port}`));
}

/** The overlay resource of an AOR as aorOf makes it: `sip:alice@peerbx.local` → `alice@peerbx.local`. */
export function resourceOfAor(aor: string): string {
  return aor.replace(/^sips?:/, '');
}

/** How often a device removal the overlay missed is sent again, ms (at the sweeps). */
export const REMOVAL_RETRY_MS = 30_000;

/**
 * A verdict on the registration itself (not an outage, not a queue that is full): the overlay
 * refused the record, or, in enrolled mode, this node holds no certificate for the user.
 */
function isRefusal(err: unknown): err is OverlayError {
  return (
    err instanceof OverlayError && (err.code === 'ERR_FORBIDDEN' || err.code === 'ERR_CERTIFICATE')
  );
}

/** System calls on files (a user's key, the data directory), as Node names them in errors. */
const FILE_CALLS = new Set([
  'open',
  'read',
  'write',
  'close',
  'fsync',
  'rename',
  'unlink',
  'stat',
  'lstat',
  'fstat',
  'mkdir',
  'chmod',
  'fchmod',
  'scandir',
]);

/**
 * A fault of this node, not of the overlay: a user's key file it cannot use (unreadable,
 * readable by others, or the disk full when making it), its configuration, or a bug. Waiting
 * does not cure it; its operator must act.
 */
function isLocalFault(err: unknown): boolean {
  if (err instanceof OverlayError) return err.code === 'ERR_KEY_FILE' || err.code === 'ERR_CONFIG';
  const errno = err as NodeJS.ErrnoException;
  return (
    err instanceof TypeError ||
    err instanceof RangeError ||
    err instanceof ReferenceError ||
    // A file system call that failed, unless for want of a passing resource (files, memory).
    (err instanceof Error &&
      FILE_CALLS.has(errno.syscall ?? '') &&
      !['EMFILE', 'ENFILE', 'EAGAIN', 'EBUSY', 'ENOMEM'].includes(errno.code ?? ''))
  );
}

export class RegisterHandler {
  private readonly log: Logger;
  /** Per-AOR queue: a REGISTER waits for the previous one's overlay publish to finish. */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Registrations answered, by status, for statistics and tests. */
  readonly answered = new Map<number, number>();
  /** REGISTERs of a phone logged in as one user for another user's AOR (answered 403). */
  registeredAsOther = 0;
  /**
   * Registrations the overlay refused (a name another key owns, say): REGISTERs answered 403,
   * and renewals of records about to lapse, whose phones learn of it at their next REGISTER.
   */
  refusedByOverlay = 0;
  /** The TCP/WS flows kept open for registrations, and the AORs with a binding on each. */
  private readonly keptFlows = new Map<string, Set<string>>();
  /** AORs whose device removal the overlay could not be told yet (see handle), by AOR. */
  private readonly unpublished = new Map<string, { resource: string; nextTryAt: number }>();
  /**
   * AORs whose lapsing record is being written again (renewLapsing): until when not to try
   * again (infinity while a renewal runs; a while after one failed).
   */
  private readonly renewing = new Map<string, number>();

  constructor(private readonly options: RegisterHandlerOptions) {
    this.log = (options.logger ?? silentLogger).child({ component: 'registrar' });
  }

  /** The AOR a To (or Request-URI) names, with localhost and own addresses read as the domain. */
  aorOf(uri: SipRequest['to']['uri']): AorResult {
    if (!isSipUri(uri)) {
      return { ok: false, status: 416, reason: `Unsupported URI Scheme (${uri.scheme})` };
    }
    if (!uri.user) return { ok: false, status: 404, reason: 'Not Found (To has no user part)' };
    const local = isLocalDomain(
      uri.host,
      uri.port,
      this.options.domain,
      this.options.localAddresses?.() ?? [],
    );
    if (!local) {
      return {
        ok: false,
        status: 404,
        reason: `Not Found (domain ${uri.host} is not served here; use ${this.options.domain})`,
      };
    }
    if (!isUserName(uri.user)) {
      // The user's key lives in a file named after the user: no name can escape the directory.
      return { ok: false, status: 404, reason: `Not Found (user names are ${USER_NAME_RULE})` };
    }
    const resource = `${uri.user}@${this.options.domain}`;
    return { ok: true, aor: `sip:${resource}`, resource, user: uri.user };
  }

  /**
   * Answers one REGISTER. Never throws: every failure is a SIP response. `authenticatedUser`
   * (digest username, when the node authenticates) must be the AOR's user, else 403.
   */
  async handle(
    request: SipRequest,
    source: SipTransportAddress,
    authenticatedUser?: string,
  ): Promise<SipResponse> {
    let response: SipResponse;
    try {
      response = await this.process(request, source, authenticatedUser);
    } catch (err) {
      if (err instanceof SipParseError) {
        response = createResponse(request, 400, { reason: err.reasonPhrase });
      } else {
        this.log.error({ err: (err as Error).message, callId: request.callId }, 'REGISTER failed');
        response = createResponse(request, 500);
      }
    }
    this.answered.set(response.status, (this.answered.get(response.status) ?? 0) + 1);
    return response;
  }

  private async process(
    request: SipRequest,
    source: SipTransportAddress,
    authenticatedUser: string | undefined,
  ): Promise<SipResponse> {
    // §10.3 step 2 (§8.2.2.3): this registrar supports no extension a REGISTER may require.
    const required = optionTags(request.headers.getAll('require'));
    if (required.length > 0) {
      return createResponse(request, 420, {
        headers: [{ name: 'Unsupported', value: required.join(', ') }],
      });
    }
    const target = this.aorOf(request.to.uri);
    if (!target.ok) return createResponse(request, target.status, { reason: target.reason });
    if (authenticatedUser !== undefined && authenticatedUser !== target.user) {
      // Authorization will not help: the password was right, the name is someone else's.
      this.registeredAsOther++;
      return createResponse(request, 403, {
        reason: `Forbidden (${reasonText(authenticatedUser, 200)} may not register ${reasonText(target.user, 200)})`,
      });
    }
    const contacts = request.contacts; // may throw SipParseError → 400
    const expires = request.expires;
    const now = () => this.options.clock.now();
    if (Array.isArray(contacts) && contacts.length === 0) {
      // §10.3 step 8 without Contacts: a query for the current bindings.
      return this.ok(request, this.options.store.lookup(target.aor, now()));
    }
    let inputs: ContactInput[] | '*';
    if (contacts === '*') inputs = '*';
    else {
      // A device this node could never reach: it speaks no TLS (sips:), and rings SIP only.
      const unreachable = contacts.find(
        (c) => c.uri.scheme !== 'sip' && (contactExpires(c) ?? expires ?? 1) !== 0,
      );
      if (unreachable) {
        return createResponse(request, 400, {
          reason: `Bad Request (a ${reasonText(unreachable.uri.scheme, 20)}: Contact cannot be reached: this node rings sip: Contacts over UDP, TCP and WebSocket, and has no TLS)`,
        });
      }
      // The SIP domain is no host: ringing such a Contact would ask DNS (beyond this machine)
      // for a name no device has, or find another user's binding by host and port. Port 0 is
      // no port at all.
      const nowhere = contacts.find(
        (c) =>
          isSipUri(c.uri) &&
          (c.uri.host.toLowerCase() === this.options.domain || c.uri.port === 0) &&
          (contactExpires(c) ?? expires ?? 1) !== 0,
      );
      if (nowhere) {
        const uri = reasonText(formatUri(nowhere.uri), 100);
        return createResponse(request, 400, {
          reason:
            isSipUri(nowhere.uri) && nowhere.uri.port === 0
              ? `Bad Request (Contact ${uri} has port 0: give the port the phone listens on)`
              : `Bad Request (Contact ${uri} names the SIP domain, not the phone: give the phone's own address)`,
        });
      }
      inputs = contacts.map((c) => {
        const e = contactExpires(c);
        const q = contactQ(c);
        const instance = c.params['+sip.instance'];
        return {
          uri: formatUri(c.uri),
          ...(e === undefined ? {} : { expires: e }),
          ...(q === undefined ? {} : { q }),
          ...(instance ? { instance: unquote(instance) } : {}),
        };
      });
    }
    const contactHosts =
      contacts === '*' ? [] : contacts.flatMap((c) => (isSipUri(c.uri) ? [c.uri.host] : []));
    const flow: Flow = {
      transport: source.transport,
      address: source.address,
      port: source.port,
      ...(source.connectionId === undefined ? {} : { connectionId: source.connectionId }),
      ...(behindNat(request.topVia, source, contactHosts) ? { nat: true } : {}),
    };
    return this.serialized(target.aor, async () => {
      const store = this.options.store;
      const before = store.lookup(target.aor, now());
      const outcome = store.register(
        {
          aor: target.aor,
          callId: request.callId,
          cseq: request.cseq.seq,
          contacts: inputs,
          ...(expires === undefined ? {} : { expires }),
          flow,
        },
        now(),
      );
      if (outcome.status === 423) {
        return createResponse(request, 423, {
          headers: [{ name: 'Min-Expires', value: String(outcome.minExpires) }],
        });
      }
      if (outcome.status !== 200) {
        return createResponse(request, outcome.status, {
          reason: `${statusText(outcome.status)} (${outcome.reason})`,
        });
      }
      try {
        await this.options.publisher.sync(target.aor, target.resource, outcome.bindings);
        this.unpublished.delete(target.aor);
      } catch (err) {
        // A REGISTER that only takes devices away (a phone signing off) stands here even when
        // the overlay cannot be told: calls must stop ringing a phone that is gone. The overlay
        // is told at the next sweeps (every REMOVAL_RETRY_MS) until it takes it.
        const removalOnly =
          outcome.bindings.length < before.length &&
          outcome.bindings.every((b) => before.some((x) => x.uri === b.uri));
        if (!removalOnly || isRefusal(err)) {
          this.rollback(target.aor, before);
          return this.publishFailed(request, target.resource, err);
        }
        this.log.warn(
          { resource: target.resource, err: (err as Error).message },
          'device removal kept here; the overlay is told when it can be reached',
        );
        this.tellLater(target.aor, target.resource);
      }
      this.updateFlows(target.aor, before, outcome.bindings);
      // A refresh that moved only expiry times is written within a second, not waited for.
      const onlyExpiry = !outcome.changed && sameFlows(before, outcome.bindings);
      await this.persist(target.aor, outcome.bindings, onlyExpiry ? 'soon' : 'now');
      this.log.debug(
        { aor: target.aor, callId: request.callId, bindings: outcome.bindings.length },
        'registered',
      );
      return this.ok(request, outcome.bindings);
    });
  }

  /** A device removal the overlay could not be told: told at the sweeps (REMOVAL_RETRY_MS). */
  private tellLater(aor: string, resource: string): void {
    this.unpublished.set(aor, { resource, nextTryAt: this.options.clock.now() + REMOVAL_RETRY_MS });
  }

  /** Saves the AOR's bindings; a failed save is logged, the registration stands in memory. */
  private async persist(
    aor: string,
    bindings: readonly Binding[],
    when: 'now' | 'soon',
  ): Promise<void> {
    const persistence = this.options.persistence;
    if (!persistence) return;
    try {
      await persistence.save(aor, bindings, when);
    } catch (err) {
      this.log.warn({ aor, err: (err as Error).message }, 'bindings not saved');
    }
  }

  private ok(request: SipRequest, bindings: readonly Binding[]): SipResponse {
    const now = this.options.clock.now();
    const headers = bindings.map((b) => ({
      name: 'Contact',
      value: `<${b.uri}>;expires=${Math.max(0, Math.round((b.expiresAt - now) / 1000))}${
        b.q === 1 ? '' : `;q=${b.q}`
      }${b.instance === undefined ? '' : `;+sip.instance="${b.instance}"`}`,
    }));
    // §10.3 step 8: a Date, from which a phone without a clock of its own may set one.
    headers.push({ name: 'Date', value: new Date(now).toUTCString() });
    return createResponse(request, 200, { headers });
  }

  private publishFailed(request: SipRequest, resource: string, err: unknown): SipResponse {
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof RegistrarBusyError) {
      // RFC 3261 §21.5.4: overloaded for now. A refresh that changes nothing needs no write,
      // except each AOR's first after a restart (the expiry published before is unknown).
      return createResponse(request, 503, {
        reason: `Service Unavailable (registrar busy: ${err.waiting} overlay writes waiting)`,
        headers: [{ name: 'Retry-After', value: String(REGISTER_BUSY_RETRY_AFTER_S) }],
      });
    }
    if (isRefusal(err)) {
      this.refusedByOverlay++;
      const user = resource.slice(0, resource.lastIndexOf('@'));
      // What fixes it, for the phone's display and the node's log alike.
      // A key file of the user's in users/ (the refusal names it) was copied from the wrong
      // node, or this node is where the user first registered and needs none.
      const hint = !/owned by another key/.test(message)
        ? undefined
        : /\(signed with users\/.+\)$/.test(message)
          ? `that key does not own it: copy in the key of the node where ${user} first registered (peerbx user-key ${user} there), or delete it if that is this node`
          : `run peerbx user-key ${user} on the node where ${user} first registered and copy the file into this node's users/ directory`;
      this.log.info(
        { resource, reason: message, ...(hint ? { hint } : {}) },
        'registration refused by the overlay',
      );
      // A certificate in users/ that is not for the key beside it, or not of this overlay's
      // authority: copied from elsewhere without its key, or issued by another overlay's admin.
      const certificate =
        /certificate for \S+ (?:names a different user key|is not signed by this overlay's authority|has a bad signature[^;]*)/.exec(
          message,
        )?.[0];
      return createResponse(request, 403, {
        reason:
          err.code === 'ERR_CERTIFICATE'
            ? `Forbidden (${reasonText(user, 200)} is not certified for this node: the overlay's admin issues a certificate with peerbx ca issue)`
            : certificate
              ? `Forbidden (${reasonText(certificate, 150)}: the overlay's admin issues a certificate and key for ${reasonText(user, 64)} into this node's data directory with peerbx ca issue)`
              : reasonText(hint ? `${message}: ${hint}` : message, 250),
      });
    }
    if (err instanceof OverlayError && err.code === 'ERR_FULL') {
      this.log.warn({ resource, err: message }, 'registration not published: no room for it');
      return createResponse(request, 503, {
        reason:
          'Service Unavailable (no room for the registration on the overlay nodes that hold it)',
        headers: [{ name: 'Retry-After', value: String(REGISTER_RETRY_AFTER_S) }],
      });
    }
    if (isLocalFault(err)) {
      this.log.error({ resource, err: message }, 'registration not published: fault of this node');
      return createResponse(request, 500, {
        reason: 'Server Internal Error (this node could not sign the registration; see its log)',
      });
    }
    this.log.warn(
      { resource, err: message },
      'registration not published: overlay unreachable, or this node short of files or memory',
    );
    return createResponse(request, 503, {
      reason: 'Service Unavailable (overlay unreachable)',
      headers: [{ name: 'Retry-After', value: String(REGISTER_RETRY_AFTER_S) }],
    });
  }

  /** Puts the AOR's bindings back as they were before a REGISTER the overlay did not take. */
  private rollback(aor: string, before: readonly Binding[]): void {
    const store = this.options.store;
    const now = this.options.clock.now();
    store.register(
      { aor, callId: `rollback-${now}-${Math.random()}`, cseq: 0, contacts: '*', expires: 0 },
      now,
    );
    store.restore(before, now);
  }

  /**
   * A phone's TCP or WebSocket connection closed. Bindings that nothing else reaches go now,
   * not when they expire: a browser's (WebSocket: never called over a new connection) and a
   * TCP phone's behind NAT. The overlay is told, so callers at other nodes get the user's
   * other devices, or 404, instead of 480 for up to the expiry (10 minutes for SIP.js), and
   * the REGISTER answers and status no longer list them. A page that reloads registers again
   * over its new connection. A TCP phone not behind NAT keeps its bindings: it is called over
   * a new connection (RFC 3261 §18.1.1).
   */
  flowClosed(connectionId: string): void {
    const aors = this.keptFlows.get(connectionId);
    if (!aors) return;
    const gone = (b: Binding) =>
      b.flow?.connectionId === connectionId && (b.flow.transport === 'ws' || b.flow.nat === true);
    for (const aor of [...aors]) {
      void this.serialized(aor, async () => {
        const left = this.options.store.removeWhere(aor, gone, this.options.clock.now());
        if (!left) return;
        this.dropFlowUse(connectionId, aor);
        const resource = resourceOfAor(aor);
        try {
          await this.options.publisher.sync(aor, resource, left);
          this.unpublished.delete(aor);
        } catch (err) {
          // Told at the next sweeps, as a removal by REGISTER (see handle).
          if (!isRefusal(err)) this.tellLater(aor, resource);
        }
        await this.persist(aor, left, 'now');
        this.log.debug({ aor, bindings: left.length }, 'devices of a closed connection removed');
      }).catch(() => undefined);
    }
  }

  /**
   * Keeps registered TCP/WS flows open, and lets go of flows that no binding uses any more
   * (of this AOR or of another registered over the same connection).
   */
  private updateFlows(aor: string, before: readonly Binding[], after: readonly Binding[]): void {
    if (!this.options.keepFlow) return;
    const used = new Set(after.flatMap((b) => (b.flow?.connectionId ? [b.flow.connectionId] : [])));
    for (const id of used) {
      const aors = this.keptFlows.get(id);
      if (aors) aors.add(aor);
      else {
        this.keptFlows.set(id, new Set([aor]));
        this.options.keepFlow(id, true);
      }
    }
    for (const b of before) {
      const id = b.flow?.connectionId;
      if (id && !used.has(id)) this.dropFlowUse(id, aor);
    }
  }

  private dropFlowUse(id: string, aor: string): void {
    const aors = this.keptFlows.get(id);
    if (!aors) return;
    aors.delete(aor);
    if (aors.size > 0) return;
    this.keptFlows.delete(id);
    this.options.keepFlow?.(id, false);
  }

  /**
   * Drops expired bindings and releases the flows only they kept open, so an expired
   * registration's TCP/WS connection falls to the idle timeout like any other. Returns how
   * many flows were released. SipNode calls this periodically.
   */
  sweep(): number {
    const store = this.options.store;
    const now = this.options.clock.now();
    store.expire(now);
    this.renewLapsing(now);
    for (const [aor, pending] of this.unpublished) {
      // Not while a REGISTER of the AOR waits: it publishes the bindings itself.
      if (pending.nextTryAt > now || this.queues.has(aor)) continue;
      pending.nextTryAt = now + REMOVAL_RETRY_MS;
      void this.serialized(aor, async () => {
        if (this.unpublished.get(aor) !== pending) return; // a REGISTER published since
        const current = store.lookup(aor, this.options.clock.now());
        await this.options.publisher.sync(aor, pending.resource, current);
        this.unpublished.delete(aor);
      }).catch((err: unknown) => {
        // Refused (the name is another key's now, say): trying again would not change that.
        if (isRefusal(err) && this.unpublished.get(aor) === pending) this.unpublished.delete(aor);
      });
    }
    let released = 0;
    for (const [id, aors] of [...this.keptFlows]) {
      for (const aor of [...aors]) {
        if (!store.lookup(aor, now).some((b) => b.flow?.connectionId === id)) {
          this.dropFlowUse(id, aor);
        }
      }
      if (!this.keptFlows.has(id)) released++;
    }
    return released;
  }

  /**
   * Writes again the records about to lapse of users whose bindings outlive them: a phone
   * that registered anew since (a new Call-ID after a restart), or one device that outlives
   * another. Not twice at once, and after a failure not again for REMOVAL_RETRY_MS. It holds
   * up no REGISTER: the publisher orders the user's writes, and reads the bindings when the
   * write's turn comes.
   */
  private renewLapsing(now: number): void {
    const publisher = this.options.publisher;
    if (!publisher.lapsing || !publisher.renew) return;
    for (const aor of publisher.lapsing(now, RENEW_BEFORE_MS)) {
      const waitUntil = this.renewing.get(aor);
      if (waitUntil !== undefined && waitUntil > now) continue;
      if (this.unpublished.has(aor)) continue;
      this.renewing.set(aor, Number.POSITIVE_INFINITY);
      const store = this.options.store;
      const clock = this.options.clock;
      publisher
        .renew(aor, resourceOfAor(aor), () => store.lookup(aor, clock.now()))
        .then(
          () => this.renewing.delete(aor),
          (err: unknown) => {
            this.renewing.set(aor, clock.now() + REMOVAL_RETRY_MS);
            if (isRefusal(err)) this.refusedByOverlay++;
            this.log.warn({ aor, err: (err as Error).message }, 'registration not renewed');
          },
        );
    }
  }

  private serialized<T>(aor: string, work: () => Promise<T>): Promise<T> {
    const previous = this.queues.get(aor) ?? Promise.resolve();
    const next = previous.then(work, work);
    const tail = next.catch(() => undefined);
    this.queues.set(aor, tail);
    void tail.then(() => {
      if (this.queues.get(aor) === tail) this.queues.delete(aor);
    });
    return next;
  }
}

/** True when every binding in `after` arrived over the flow its namesake in `before` used. */
function sameFlows(before: readonly Binding[], after: readonly Binding[]): boolean {
  return after.every((b) => {
    const old = before.find((x) => x.uri === b.uri);
    const f = b.flow;
    const g = old?.flow;
    if (!f || !g) return f === g;
    return (
      f.transport === g.transport &&
      f.address === g.address &&
      f.port === g.port &&
      f.connectionId === g.connectionId &&
      f.nat === g.nat
    );
  });
}

function statusText(status: number): string {
  return status === 400 ? 'Bad Request' : status === 403 ? 'Forbidden' : 'Server Internal Error';
}
