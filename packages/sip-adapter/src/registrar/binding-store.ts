// The registrar's bindings (RFC 3261 §10.3): address-of-record → contacts, each with its
// expiry, q-value, and the Call-ID/CSeq that last touched it. Pure logic on plain inputs; the
// REGISTER handler turns SIP messages into these inputs and outcomes into responses.

import { isSipUri, parseUri, type SipUri, sipUrisEqual } from '../message/uri.js';
import {
  DEFAULT_EXPIRES_S,
  MAX_BINDINGS_PER_AOR,
  MAX_EXPIRES_S,
  MIN_EXPIRES_S,
} from './constants.js';

/** Where a binding's REGISTER came from: how to reach a phone behind NAT (RFC 5626 flow). */
export interface Flow {
  transport: 'udp' | 'tcp' | 'ws';
  address: string;
  port: number;
  connectionId?: string;
  /**
   * The phone is behind NAT (registrar/nat.ts): only this flow reaches it, never its
   * Contact. Over UDP, requests go to the address and port its REGISTER came from.
   */
  nat?: true;
}

export interface ContactInput {
  /** The Contact URI exactly as the phone sent it. */
  uri: string;
  /** The contact's `expires` parameter, seconds. */
  expires?: number;
  /** The contact's `q` parameter, 0 to 1. */
  q?: number;
  /** `+sip.instance`: a device's stable identity (RFC 5626); replaces its older bindings. */
  instance?: string;
}

export interface RegisterInput {
  aor: string;
  callId: string;
  cseq: number;
  /** The Contacts, or '*' (with Expires 0: remove every binding). */
  contacts: ContactInput[] | '*';
  /** The Expires header, seconds. */
  expires?: number;
  flow?: Flow;
}

export interface Binding {
  aor: string;
  uri: string;
  q: number;
  /** Absolute expiry, ms. */
  expiresAt: number;
  /** When the device last registered or refreshed, ms (absent in bindings saved before). */
  registeredAt?: number;
  callId: string;
  cseq: number;
  instance?: string;
  flow?: Flow;
}

export type RegisterOutcome =
  /** `changed`: the set of contacts or their q-values differ from before (not only expiries). */
  | { status: 200; bindings: Binding[]; changed: boolean }
  | { status: 423; minExpires: number }
  | { status: 400 | 403 | 500; reason: string };

export interface BindingStoreOptions {
  minExpires?: number;
  maxExpires?: number;
  defaultExpires?: number;
  maxBindingsPerAor?: number;
  /** Told of every AOR whose bindings changed (persistence, overlay publishing). */
  onChange?: (aor: string, bindings: Binding[]) => void;
}

/**
 * A binding's Contact parsed, with its host:port, once per binding (bindings are never
 * changed, only replaced); null when it is not a sip: or sips: URI.
 */
const parsedContacts = new WeakMap<Binding, { uri: SipUri; at: string } | null>();

function parsedContact(b: Binding): { uri: SipUri; at: string } | null {
  let parsed = parsedContacts.get(b);
  if (parsed === undefined) {
    parsed = null;
    try {
      const uri = parseUri(b.uri);
      if (isSipUri(uri)) parsed = { uri, at: hostPort(uri.host, uri.port) };
    } catch {
      // Not a URI: found by its flow only.
    }
    parsedContacts.set(b, parsed);
  }
  return parsed;
}

/** The binding's Contact URI, parsed; undefined when it is not a sip: or sips: URI. */
export function contactOf(b: Binding): SipUri | undefined {
  return parsedContact(b)?.uri;
}

/** The host:port (hostPort) of the binding's Contact; undefined when it is not a SIP URI. */
export function contactAt(b: Binding): string | undefined {
  return parsedContact(b)?.at;
}

/** "host:port" as near() finds bindings by: host in lower case, unbracketed; port 5060 unsaid. */
export function hostPort(host: string, port: number | undefined): string {
  return `${host.toLowerCase().replace(/^\[|\]$/g, '')}:${port ?? 5060}`;
}

/** "address:port" as near() finds a binding by the source of its REGISTER. */
export function flowAt(flow: Flow): string {
  return `${flow.address.toLowerCase()}:${flow.port}`;
}

/** The keys near() finds a binding by: its Contact's host:port and user@host, its flow's source. */
function placesOf(b: Binding): string[] {
  const keys: string[] = [];
  const contact = parsedContact(b);
  if (contact) {
    keys.push(contact.at);
    if (contact.uri.user) keys.push(`${contact.uri.user}@${contact.uri.host.toLowerCase()}`);
  }
  if (b.flow) keys.push(flowAt(b.flow));
  return keys;
}

export class BindingStore {
  private readonly byAor = new Map<string, Binding[]>();
  /** Every binding under each of its placesOf keys: the proxy finds devices by address. */
  private readonly byPlace = new Map<string, Set<Binding>>();
  readonly minExpires: number;
  private readonly maxExpires: number;
  private readonly defaultExpires: number;
  private readonly maxBindings: number;

  constructor(private readonly options: BindingStoreOptions = {}) {
    this.minExpires = options.minExpires ?? MIN_EXPIRES_S;
    this.maxExpires = options.maxExpires ?? MAX_EXPIRES_S;
    this.defaultExpires = options.defaultExpires ?? DEFAULT_EXPIRES_S;
    this.maxBindings = options.maxBindingsPerAor ?? MAX_BINDINGS_PER_AOR;
  }

  /** Applies one REGISTER (§10.3 steps 6-8). Nothing changes unless the outcome is 200. */
  register(input: RegisterInput, now: number): RegisterOutcome {
    const current = this.lookup(input.aor, now);
    if (input.contacts === '*') {
      // §10.3 step 6: "*" only with Expires: 0 and no other Contact.
      if (input.expires !== 0) return { status: 400, reason: 'Contact "*" requires Expires: 0' };
      for (const b of current) {
        if (b.callId === input.callId && input.cseq <= b.cseq) {
          return { status: 500, reason: 'CSeq out of order for this Call-ID' };
        }
      }
      this.set(input.aor, []);
      return { status: 200, bindings: [], changed: current.length > 0 };
    }
    const next = current.map((b) => ({ ...b }));
    // Bindings this request wrote: a second Contact naming the same device (or the same one
    // twice) replaces its own binding, which is no older request of this Call-ID.
    const written = new Set<Binding>();
    for (const c of input.contacts) {
      const requested = c.expires ?? input.expires ?? this.defaultExpires;
      if (!Number.isFinite(requested) || requested < 0) {
        return { status: 400, reason: `invalid expiry for ${c.uri}` };
      }
      if (c.q !== undefined && !(c.q >= 0 && c.q <= 1))
        return { status: 400, reason: `invalid q-value for ${c.uri}` };
      if (requested > 0 && requested < this.minExpires)
        return { status: 423, minExpires: this.minExpires };
      const expires = Math.min(requested, this.maxExpires);
      const at = next.findIndex(
        (b) => sameContact(b.uri, c.uri) || (c.instance !== undefined && b.instance === c.instance),
      );
      const existing = at >= 0 ? next[at] : undefined;
      // §10.3 step 7: an older request of the same Call-ID must not undo a newer one.
      if (
        existing &&
        !written.has(existing) &&
        existing.callId === input.callId &&
        input.cseq <= existing.cseq
      ) {
        return { status: 500, reason: 'CSeq out of order for this Call-ID' };
      }
      if (expires === 0) {
        if (existing) {
          next.splice(at, 1);
          written.delete(existing);
        }
        continue;
      }
      const binding: Binding = {
        aor: input.aor,
        uri: c.uri,
        q: c.q ?? 1,
        expiresAt: now + expires * 1000,
        registeredAt: now,
        callId: input.callId,
        cseq: input.cseq,
        ...(c.instance !== undefined ? { instance: c.instance } : {}),
        ...(input.flow ? { flow: input.flow } : {}),
      };
      if (existing) {
        next[at] = binding;
        written.delete(existing);
      } else next.push(binding);
      written.add(binding);
    }
    if (written.size > this.maxBindings) {
      return {
        status: 403,
        reason: `at most ${this.maxBindings} devices may register for ${input.aor}`,
      };
    }
    // Over the limit: the bindings refreshed longest ago make room, as a phone that registers
    // with a new Contact at each start (Zoiper's rinstance, a browser phone per page load)
    // leaves its old ones behind until they expire; a live phone with a short expiry keeps
    // refreshing and stays. The user's own devices: refusing would lock the user out (a 403
    // is not retried, RFC 3261 §21.4.4) until they expire.
    let kept = next;
    if (next.length > this.maxBindings) {
      const evicted = new Set(
        next
          .filter((b) => !written.has(b))
          .sort((x, y) => (x.registeredAt ?? 0) - (y.registeredAt ?? 0))
          .slice(0, next.length - this.maxBindings),
      );
      kept = next.filter((b) => !evicted.has(b));
    }
    const changed = !sameSet(current, kept);
    this.set(input.aor, kept, changed);
    return { status: 200, bindings: sortByQ(kept), changed };
  }

  /** Live bindings of an AOR, highest q first. */
  lookup(aor: string, now: number): Binding[] {
    const all = this.byAor.get(aor) ?? [];
    const live = all.filter((b) => b.expiresAt > now);
    if (live.length !== all.length) this.set(aor, live);
    return sortByQ(live);
  }

  /**
   * Removes the AOR's bindings that `unreachable` picks (a phone whose connection closed);
   * returns the bindings left, or undefined when none was removed.
   */
  removeWhere(
    aor: string,
    unreachable: (b: Binding) => boolean,
    now: number,
  ): Binding[] | undefined {
    const live = this.lookup(aor, now);
    const left = live.filter((b) => !unreachable(b));
    if (left.length === live.length) return undefined;
    this.set(aor, left);
    return left;
  }

  aors(): string[] {
    return [...this.byAor.keys()];
  }

  /**
   * The live bindings (any AOR) with a Contact at one of `keys` ("host:port", or "user@host"
   * with the host in lower case), or whose REGISTER came from there ("address:port"); each
   * once. Found through an index: a node with many phones does not go through all of them.
   */
  near(keys: readonly string[], now: number): Binding[] {
    const found = new Set<Binding>();
    for (const key of keys) {
      for (const b of this.byPlace.get(key) ?? []) if (b.expiresAt > now) found.add(b);
    }
    return [...found];
  }

  /** Drops expired bindings; returns how many went. */
  expire(now: number): number {
    let n = 0;
    for (const [aor, all] of [...this.byAor]) {
      const live = all.filter((b) => b.expiresAt > now);
      n += all.length - live.length;
      if (live.length !== all.length) this.set(aor, live);
    }
    return n;
  }

  /** Puts back bindings saved earlier (after a restart); expired ones are skipped. */
  restore(bindings: readonly Binding[], now: number): void {
    for (const b of bindings) {
      if (b.expiresAt <= now) continue;
      const list = this.byAor.get(b.aor) ?? [];
      if (!list.some((x) => sameContact(x.uri, b.uri))) {
        const copy = { ...b };
        list.push(copy);
        this.index(copy, true);
      }
      this.byAor.set(b.aor, list);
    }
  }

  private set(aor: string, bindings: Binding[], notify = true): void {
    for (const b of this.byAor.get(aor) ?? []) this.index(b, false);
    for (const b of bindings) this.index(b, true);
    if (bindings.length === 0) this.byAor.delete(aor);
    else this.byAor.set(aor, bindings);
    if (notify) this.options.onChange?.(aor, sortByQ(bindings));
  }

  private index(b: Binding, add: boolean): void {
    for (const key of placesOf(b)) {
      const at = this.byPlace.get(key);
      if (add) {
        if (at) at.add(b);
        else this.byPlace.set(key, new Set([b]));
      } else if (at?.delete(b) && at.size === 0) this.byPlace.delete(key);
    }
  }
}

function sortByQ(bindings: Binding[]): Binding[] {
  return [...bindings].sort((a, b) => b.q - a.q || b.expiresAt - a.expiresAt);
}

/**
 * Contact URIs compare as SIP URIs (§19.1.4): `transport=UDP` and `transport=udp` are one
 * contact, whose REGISTER refreshes the binding (§10.3 step 7). QA: they made two bindings,
 * and each call rang the phone twice. Other schemes compare as written.
 */
function sameContact(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    const [x, y] = [parseUri(a.trim()), parseUri(b.trim())];
    return isSipUri(x) && isSipUri(y) ? sipUrisEqual(x, y) : a.trim() === b.trim();
  } catch {
    return a.trim() === b.trim();
  }
}

function sameSet(a: readonly Binding[], b: readonly Binding[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((x) => b.some((y) => sameContact(x.uri, y.uri) && x.q === y.q));
}
