// A Kademlia node: routing table, RPC handlers, lookups, storage and the periodic upkeep
// (bucket refresh, republish, replication, expiry). No I/O of its own: it is handed a
// Transport, a Clock and a Random, so the same code runs over UDP and in the simulator.

import { type Clock, systemClock, type TimerHandle } from './clock.js';
import {
  ALONE_AFTER_REJOIN_ROUNDS,
  BOOTSTRAP_PING_ATTEMPTS,
  CLOSER_CHECK_MIN_AGE_MS,
  DEFAULT_ALPHA,
  DEFAULT_DISJOINT_PATHS,
  DEFAULT_EXPIRE_CHECK_INTERVAL_MS,
  DEFAULT_K,
  DEFAULT_MAX_LOOKUP_REQUESTS,
  DEFAULT_MIN_REQUEST_TIMEOUT_MS,
  DEFAULT_REFRESH_INTERVAL_MS,
  DEFAULT_REPLICATE_INTERVAL_MS,
  DEFAULT_REPUBLISH_INTERVAL_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_VALUE_TTL_MS,
  EVICTION_PING_MIN_AGE_MS,
  HAND_OVER_RETRY_MS,
  HAND_OVER_SENDERS,
  INCOMPLETE_RETRY_MS,
  LEAVE_HAND_OVER_MS,
  LEAVE_KEYS_IN_FLIGHT,
  LEAVE_NOTICE_TIMEOUT_MS,
  LEAVE_NOTICES_IN_FLIGHT,
  LEFT_QUIET_MS,
  MAX_DROPPED_PER_CHECK,
  MAX_HAND_OVERS_WAITING,
  MAX_HOLDER_PINGS,
  MAX_REJOIN_ADDRESSES,
  MAX_VALUE_PAGES,
  PRESUMED_DEAD_MS,
  REJOIN_SLOW_EVERY,
  STALL_CHECK_MS,
  STALL_MS,
  UPKEEP_PARALLELISM,
} from './constants.js';
import type { Contact } from './contact.js';
import { DhtError, NoPeersError, TimeoutError } from './errors.js';
import { type LookupResult, lookup, noLookup, type QueryAnswer } from './lookup/lookup.js';
import type { Transport } from './network.js';
import {
  assertNodeId,
  compareDistance,
  hashToId,
  idEquals,
  idFromHex,
  idToHex,
  isNodeId,
  type NodeId,
  randomIdAtPrefix,
} from './node-id.js';
import { cryptoRandom, type Random } from './random.js';
import { RoutingTable } from './routing-table/routing-table.js';
import { closestForRequester, handleFindNode } from './rpc/handlers/find-node.js';
import { handleFindValue } from './rpc/handlers/find-value.js';
import { handlePing } from './rpc/handlers/ping.js';
import { handleStore, type StoreOutcome, type ValueValidator } from './rpc/handlers/store.js';
import {
  MAX_STORE_MORE,
  type Request,
  type RequestBody,
  type Response,
  type ResponseBody,
  refusal,
  type StoreRejection,
  type StoreResult,
  type WireValue,
} from './rpc/messages.js';
import { RttEstimator } from './rpc/rtt.js';
import { ValueStore, type ValueStoreOptions } from './storage/value-store.js';

export interface KademliaOptions {
  id: NodeId;
  transport: Transport;
  clock?: Clock;
  random?: Random;
  /** Replication: each value is stored on the k nodes closest to its key. */
  k?: number;
  /**
   * Contacts per routing-table bucket; default k. More than k lets a node of a small overlay
   * (an office's few dozen nodes) know every other one, so that its stores and fetches go to
   * the k closest at once instead of after a lookup (storeOnClosest, knowsAllNear).
   */
  bucketSize?: number;
  alpha?: number;
  /** Disjoint lookup paths, S/Kademlia's d. */
  disjointPaths?: number;
  /** Timeout of a request to a contact never measured, and the ceiling for all. */
  requestTimeoutMs?: number;
  /** Floor of the adaptive timeout of a measured contact (RFC 6298 style: SRTT + 4 RTTVAR). */
  minRequestTimeoutMs?: number;
  maxLookupRequests?: number;
  refreshIntervalMs?: number;
  /**
   * A published value is stored again about this long after its last store (Kademlia: 1 h):
   * at the last upkeep check before, or a check or two earlier, so it comes before holders
   * replicate it.
   */
  republishIntervalMs?: number;
  /** A held key nobody stored for this long is re-stored on the current k closest. */
  replicateIntervalMs?: number;
  /**
   * How often the node pings the holders of what it published and the k closest nodes of the
   * keys it holds, and stores again what is due: published values whose last store is old, did
   * not reach every target, or reached a node that stopped answering; held keys past
   * replicateIntervalMs or one of whose k closest nodes stopped answering. Default: the smaller
   * of the two intervals (then each check re-stores everything, as plain Kademlia does).
   */
  upkeepCheckIntervalMs?: number;
  expireCheckIntervalMs?: number;
  /** Refresh every bucket farther than the closest neighbour after joining (Kademlia §2.3). */
  refreshOnJoin?: boolean;
  store?: ValueStore | ValueStoreOptions;
  /** The contact hook: false keeps a contact out of the routing table and out of lookups. */
  acceptContact?: (contact: Contact) => boolean;
  /** Checks a value before this node stores it. */
  validateValue?: ValueValidator;
  /** Client role: asks, but is never put in routing tables and serves nothing. */
  client?: boolean;
  /**
   * A hand-over is starting: `keys` held keys go to `to`, a node new among their k closest or
   * one dropped lately that is back (`back`: it was silent, and gets what changed since).
   */
  onHandOver?: (to: Contact, keys: number, back: boolean) => void;
  /**
   * Checks every STALL_CHECK_MS whether this node ran (see watchStall): for a node in a
   * process of its own, which can be stopped; not for a simulated clock, which never stalls.
   */
  watchStalls?: boolean;
  /** This node did not run for `ms` (see STALL_MS), and is telling its contacts it is back. */
  onStall?: (ms: number, contacts: number) => void;
  /**
   * Whether an address is this node's own (its port at one of its machine's addresses): its
   * ID named at any other is another node with its key. Default: its contact's address only.
   */
  isOwnAddress?: (address: string) => boolean;
  /**
   * Another node answers or asks with this node's ID, at `address`: a second node started
   * from a copy of this one's data directory (key), say. Told at most once per address per
   * IDENTITY_CLASH_REPORT_MS.
   */
  onIdentityClash?: (address: string) => void;
}

/** A node heard at another address than listed is PINGed there at most this often. */
const MOVE_CHECK_INTERVAL_MS = 5_000;
/** Nodes whose last move check is remembered (checkMove). */
const MAX_MOVE_CHECKS = 4096;
/** An address where this node's ID was seen is probed, and a clash there told, this seldom. */
export const IDENTITY_CLASH_REPORT_MS = 10 * 60_000;

export interface NodeStats {
  requestsIn: Record<RequestBody['type'], number>;
  requestsOut: number;
  requestFailures: number;
  contactsRefused: number;
  storeRejections: Partial<Record<StoreRejection, number>>;
  lookups: number;
  /** Hand-overs that sent a node new among the closest, or back, at least one held key. */
  handOvers: number;
  /** Keys those hand-overs sent (each with every value held under it). */
  keysHandedOver: number;
  /** Held keys stored again on their k closest by the replication check. */
  keysReplicated: number;
  /** Times this node found it had not run for STALL_MS or more (see afterStall). */
  stalls: number;
  /** Times another node was found with this node's ID (see onIdentityClash). */
  identityClashes: number;
}

/** A published value's entry: the key and the value's hash (not the value: it may be 1 KB). */
function publishedKey(key: NodeId, value: Uint8Array): string {
  return `${idToHex(key)}:${idToHex(hashToId(value))}`;
}

/** The detail of a STORE's value refused unchecked after a forged one. */
const NOT_CHECKED = 'not checked: an earlier value of this STORE was forged';

export interface PutResult {
  /** Contacts among the k closest (self included) that accepted the value. */
  stored: Contact[];
  rejected: { contact: Contact; reason: StoreRejection; detail?: string }[];
  lookup: LookupResult;
}

/** One value of a putMany(). */
export interface PutItem {
  value: Uint8Array;
  /** Lifetime (default DEFAULT_VALUE_TTL_MS). */
  ttlMs?: number;
}

export interface LookupOptions {
  /** Record every request for diagnostics. */
  trace?: boolean;
  /** Disjoint paths for this lookup; defaults to the node's setting. */
  paths?: number;
  /**
   * Ask contacts presumed dead too (see runLookup): for a store tried again after a target
   * refused it as not-responsible, which says the lookup missed closer nodes.
   */
  askPresumedDead?: boolean;
}

export interface GetOptions extends LookupOptions {
  /** Holders that must answer with values before the lookup stops (default 1). */
  quorum?: number;
  /**
   * Only other nodes make the quorum, not this node's own copy (which may be the stale one:
   * this node was away when the value changed). Its values are still in the result.
   */
  othersOnly?: boolean;
  /**
   * Called with each holder's values while the lookup still waits for more holders (not for
   * the answer that completes the quorum, nor for values this node holds itself).
   */
  onValues?: (values: readonly WireValue[], holder: Contact) => void;
}

export interface PublishedValue {
  key: NodeId;
  value: Uint8Array;
  expiresAt: number;
}

/** A value this node published, with when it last went out and whether every target took it. */
interface Published extends PublishedValue {
  storedAt: number;
  complete: boolean;
  /** A store of it is under way: an upkeep check leaves it alone. */
  storing: boolean;
  /** Counted as stored this much earlier, once (spreads restored values' republishing). */
  backdateMs: number;
  /** The other nodes that took it at its last store: pinged at upkeep checks. */
  holders: Contact[];
  /**
   * Its next store is the one retry that `not-responsible` refusals get (storedAgain): then
   * they count as answers.
   */
  retriedRefusals: boolean;
}

type Timer = 'refresh' | 'republish' | 'replicate' | 'expire' | 'incomplete' | 'stall';

export class KademliaNode {
  readonly id: NodeId;
  readonly table: RoutingTable;
  readonly store: ValueStore;
  readonly k: number;
  readonly alpha: number;
  readonly disjointPaths: number;
  readonly contact: Contact;
  readonly stats: NodeStats = {
    requestsIn: { PING: 0, FIND_NODE: 0, FIND_VALUE: 0, STORE: 0, LEAVE: 0 },
    requestsOut: 0,
    requestFailures: 0,
    contactsRefused: 0,
    storeRejections: {},
    lookups: 0,
    handOvers: 0,
    keysHandedOver: 0,
    keysReplicated: 0,
    stalls: 0,
    identityClashes: 0,
  };

  private readonly transport: Transport;
  private readonly clock: Clock;
  private readonly random: Random;
  private readonly opts: Required<
    Pick<
      KademliaOptions,
      | 'requestTimeoutMs'
      | 'maxLookupRequests'
      | 'refreshIntervalMs'
      | 'republishIntervalMs'
      | 'replicateIntervalMs'
      | 'upkeepCheckIntervalMs'
      | 'expireCheckIntervalMs'
      | 'refreshOnJoin'
      | 'client'
    >
  >;
  private readonly acceptContact: (contact: Contact) => boolean;
  private readonly isOwnAddress: (address: string) => boolean;
  private readonly onIdentityClash: KademliaOptions['onIdentityClash'];
  /** Addresses this node's ID was named at, and when each was last PINGed (selfSeenAt). */
  private readonly selfProbedAt = new Map<string, number>();
  /** When each node heard at an address other than listed was last PINGed there (checkMove). */
  private readonly moveChecks = new Map<string, number>();
  /** Addresses a node with this node's ID was found at, and when each was last told of. */
  private readonly clashToldAt = new Map<string, number>();
  private readonly validateValue: ValueValidator | undefined;
  private readonly onHandOver: KademliaOptions['onHandOver'];
  private readonly onStall: KademliaOptions['onStall'];
  private readonly watchStalls: boolean;
  /** Values this node published itself, which it republishes until they expire. */
  private readonly published = new Map<string, Published>();
  /** When each stored key last arrived by STORE: replication skips keys refreshed by others. */
  private readonly lastStoreAt = new Map<string, number>();
  /** When a STORE last changed what each held key holds (a new or replaced value: handOver). */
  private readonly lastChangeAt = new Map<string, number>();
  /** Where the next upkeep check's PINGs start, per list (unanswering). */
  private readonly pingCursor = { published: 0, held: 0 };
  /** When this node last replicated each held key itself (it need not be among the closest). */
  private readonly lastReplicatedAt = new Map<string, number>();
  /**
   * Held keys whose last replication a target refused as `not-responsible`: replicated once
   * more at the next upkeep check (the refuser may have found closer nodes dead meanwhile).
   */
  private readonly replicateAgain = new Set<string>();
  /** Least-recently-seen contacts being pinged before a possible eviction. */
  private readonly evictionPings = new Set<string>();
  /** Contacts closer to a refused key being pinged (checkCloser). */
  private readonly closerPings = new Set<string>();
  /** The addresses this node joined through (bootstrap), for rejoining. */
  private readonly seeds: string[] = [];
  /** The contacts the routing table dropped last (failures), most recent first, for rejoining. */
  private readonly dropped: Contact[] = [];
  /**
   * Addresses that said they leave (LEAVE), and when, until heard from again: a rejoin skips
   * them for LEFT_QUIET_MS (a leaver still answers while it tells the others, then stops), and
   * a node with only such addresses left to try is alone (see lost).
   */
  private readonly leftAt = new Map<string, number>();
  /**
   * Contacts the routing table dropped lately, when, and since when they were silent (the
   * first request they left unanswered), by hex ID (the last MAX_DROPPED_PER_CHECK). Those
   * dropped since the last replication check: a held key whose k closest one of them was
   * among, and that nobody stored since, lost a replica, also when it was dropped before the
   * check's PINGs could find it dead. One that is back (handOver) kept what it held, and is
   * handed what changed since it went silent.
   */
  private readonly droppedLately = new Map<
    string,
    { id: NodeId; at: number; silentSince: number }
  >();
  /**
   * Hand-overs per newcomer (hex ID): the keys still to send, one run at a time. A run stops
   * at the newcomer's first silence (a STORE timed out) instead of sending thousands of
   * STOREs into it, each waiting for its timeout and resent meanwhile (a small overlay's
   * newcomer is every key's holder); the rest goes when it answers again.
   */
  private readonly handOvers = new Map<
    string,
    { to: Contact; keys: Map<string, NodeId>; running: boolean; retry?: TimerHandle }
  >();
  /** When the last replication check began (droppedLately). */
  private replicatedAt = Number.NEGATIVE_INFINITY;
  /**
   * Since the routing table lost its last contact: rejoin rounds that reached nobody
   * (undefined while it has contacts), and the rejoin under way.
   */
  private lostRounds: number | undefined;
  /** The wait before incomplete stores are tried again (see retryIncompleteSoon). */
  private incompleteRetryMs = INCOMPLETE_RETRY_MS;
  private rejoining: Promise<void> | undefined;
  private readonly timers = new Map<Timer, TimerHandle>();
  private readonly rtt: RttEstimator;
  private running = false;

  constructor(options: KademliaOptions) {
    assertNodeId(options.id, 'node id');
    this.id = options.id;
    this.transport = options.transport;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? cryptoRandom;
    this.k = options.k ?? DEFAULT_K;
    this.alpha = options.alpha ?? DEFAULT_ALPHA;
    this.disjointPaths = options.disjointPaths ?? DEFAULT_DISJOINT_PATHS;
    this.opts = {
      requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      maxLookupRequests: options.maxLookupRequests ?? DEFAULT_MAX_LOOKUP_REQUESTS,
      refreshIntervalMs: options.refreshIntervalMs ?? DEFAULT_REFRESH_INTERVAL_MS,
      republishIntervalMs: options.republishIntervalMs ?? DEFAULT_REPUBLISH_INTERVAL_MS,
      replicateIntervalMs: options.replicateIntervalMs ?? DEFAULT_REPLICATE_INTERVAL_MS,
      upkeepCheckIntervalMs:
        options.upkeepCheckIntervalMs ??
        Math.min(
          options.republishIntervalMs ?? DEFAULT_REPUBLISH_INTERVAL_MS,
          options.replicateIntervalMs ?? DEFAULT_REPLICATE_INTERVAL_MS,
        ),
      expireCheckIntervalMs: options.expireCheckIntervalMs ?? DEFAULT_EXPIRE_CHECK_INTERVAL_MS,
      refreshOnJoin: options.refreshOnJoin ?? true,
      client: options.client ?? false,
    };
    this.acceptContact = options.acceptContact ?? (() => true);
    this.isOwnAddress = options.isOwnAddress ?? ((address) => address === this.contact.address);
    this.onIdentityClash = options.onIdentityClash;
    this.validateValue = options.validateValue;
    this.onHandOver = options.onHandOver;
    this.onStall = options.onStall;
    this.watchStalls = options.watchStalls ?? false;
    this.store =
      options.store instanceof ValueStore ? options.store : new ValueStore(options.store ?? {});
    this.table = new RoutingTable(
      this.id,
      { bucketSize: Math.max(this.k, options.bucketSize ?? this.k) },
      this.clock.now(),
    );
    this.contact = { id: this.id, address: this.transport.address };
    this.rtt = new RttEstimator(
      this.opts.requestTimeoutMs,
      Math.min(
        this.opts.requestTimeoutMs,
        options.minRequestTimeoutMs ?? DEFAULT_MIN_REQUEST_TIMEOUT_MS,
      ),
    );
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Starts answering requests and the periodic upkeep. Does not join: see bootstrap(). */
  start(): void {
    if (this.running) return;
    this.running = true;
    // Values held from before a restart: when they were last stored is not known. Taken as
    // stored at a random time within the last replication interval, they come due spread over
    // the next one, not all at the first check: thousands of lookups, each with its STOREs,
    // from a node just back (seen: 10-25 times its usual requests for minutes). A replica
    // lost with a node that died is still stored again at once (replicate: lostReplica).
    const now = this.clock.now();
    for (const key of this.store.keys()) {
      const hex = idToHex(key);
      const storedAt = now - this.random.next() * this.opts.replicateIntervalMs;
      if (!this.lastStoreAt.has(hex)) this.lastStoreAt.set(hex, storedAt);
    }
    this.transport.listen((req, from) => this.handle(req, from));
    this.schedule('refresh', this.opts.refreshIntervalMs, () => this.refreshStaleBuckets());
    this.schedule('republish', this.opts.upkeepCheckIntervalMs, () => this.republish());
    this.schedule('replicate', this.opts.upkeepCheckIntervalMs, () => this.replicate());
    this.schedule('expire', this.opts.expireCheckIntervalMs, () => this.expire());
    if (this.watchStalls) this.watchStall(now);
  }

  /**
   * Every STALL_CHECK_MS, whether this node ran meanwhile. One that did not (stopped,
   * suspended) answered nothing: its peers dropped it from their tables, and lookups pass it
   * over as presumed dead, so it is "not in the overlay" to a node that dials it until it
   * sends them something, at its next upkeep (QA: calls to its phones failed for 25 s after
   * it ran again). And the silences it saw of its peers as it resumed (requests whose time ran
   * out while it stood still) were its own.
   */
  private watchStall(last: number): void {
    const handle = this.clock.setTimeout(() => {
      if (!this.running) return;
      const now = this.clock.now();
      if (now - last >= STALL_CHECK_MS + STALL_MS) this.afterStall(now - last);
      this.watchStall(now);
    }, STALL_CHECK_MS);
    this.timers.set('stall', handle);
  }

  /**
   * Back from a stall: the contacts spread over the routing table are PINGed, so that they
   * list this node again (and tell others who ask), and answer for themselves.
   */
  private afterStall(ms: number): void {
    this.stats.stalls++;
    this.rtt.forgetSilences();
    const contacts = this.table.spread(MAX_REJOIN_ADDRESSES);
    this.onStall?.(ms, contacts.length);
    void inParallel(contacts, this.alpha, (c) => this.ping(c));
  }

  /**
   * Joins the overlay through known nodes (addresses or contacts): learns their IDs with a
   * PING, looks up the own ID, then refreshes the buckets beyond the closest neighbour.
   * Returns the number of contacts in the routing table afterwards. `attempts`: PINGs to a
   * silent node before it counts as down (fewer when the caller has other nodes to try).
   */
  async bootstrap(
    seeds: readonly (Contact | string)[],
    attempts = BOOTSTRAP_PING_ATTEMPTS,
  ): Promise<number> {
    this.start();
    for (const s of seeds) {
      const address = typeof s === 'string' ? s : s.address;
      if (!this.seeds.includes(address) && this.seeds.length < MAX_REJOIN_ADDRESSES)
        this.seeds.push(address);
    }
    return this.join(seeds, attempts);
  }

  /**
   * Whether this node lost every contact it had lately: its routing table emptied, and its
   * tries to rejoin have reached nobody for fewer than ALONE_AFTER_REJOIN_ROUNDS rounds (one
   * when the table emptied, then one per upkeep check). Its lookups then ask nobody, and
   * "found nothing" means nothing. After that many, the others are taken to be gone (they
   * left, or were shut down): the node is alone, as a founder that never had peers is, and
   * "found nothing" means not found again; it still tries to rejoin now and then. A node whose
   * last contact said it leaves, with nobody else to try, is alone at once (see lost).
   */
  get isolated(): boolean {
    return (
      this.table.size === 0 &&
      this.lostRounds !== undefined &&
      this.lostRounds < ALONE_AFTER_REJOIN_ROUNDS
    );
  }

  /**
   * A node whose routing table lost its last contact (its own network was down long enough
   * for every contact to fail, say, and the others dropped it too) PINGs the addresses it
   * joined through and the contacts it dropped last, at once and then at each upkeep check
   * until one answers (after ALONE_AFTER_REJOIN_ROUNDS rounds, at every REJOIN_SLOW_EVERY-th
   * check only); then it joins again through those that did. Without this it would stay alone
   * until restarted, or know only the few that happen to contact it first.
   */
  private rejoin(now = false): Promise<void> {
    this.rejoining ??= this.rejoinRound(now).finally(() => {
      this.rejoining = undefined;
    });
    return this.rejoining;
  }

  /**
   * Cut off, and a node answered a request of ours (one that sent us a request, say: the
   * others are back): a rejoin round now, not at the next upkeep check, and what was stored
   * incompletely meanwhile is stored again once it rejoined.
   */
  private backInTouch(): void {
    if (this.lostRounds === undefined || this.rejoining || !this.running) return;
    void this.rejoin(true).then(() => {
      if (this.lostRounds === undefined && this.running) {
        this.storeAgain((p) => !p.complete).catch(() => undefined);
      }
    });
  }

  /** `now`: a round whatever the count (backInTouch), not only at every REJOIN_SLOW_EVERY-th. */
  private async rejoinRound(now: boolean): Promise<void> {
    const rounds = this.lostRounds;
    if (rounds === undefined) return;
    // Every check at first; then, the others being taken as gone, every REJOIN_SLOW_EVERY-th.
    const over = rounds - ALONE_AFTER_REJOIN_ROUNDS;
    if (!now && over >= 0 && over % REJOIN_SLOW_EVERY !== 0) {
      this.lostRounds = rounds + 1;
      return;
    }
    // Also when contacts came back on their own meanwhile (a node sent a request): the few
    // that did are not the overlay. One round, then the table is not empty any more.
    const addresses = this.rejoinAddresses();
    const reached = await Promise.all(
      addresses.map((a) => this.pingAddress(a, 1).catch(() => undefined)),
    );
    const live = reached.filter((c): c is Contact => c !== undefined);
    if (live.length > 0) {
      // The silences of the outage were this node's, not its peers': a lookup should ask them.
      this.rtt.forgetSilences();
      await this.join(live).catch(() => undefined);
    }
    this.lostRounds = this.table.size > 0 ? undefined : rounds + 1;
  }

  /** Where a rejoin round PINGs: dropped contacts and seeds, but not nodes that just left. */
  private rejoinAddresses(): string[] {
    const now = this.clock.now();
    return [...new Set([...this.dropped.map((c) => c.address), ...this.seeds])].filter(
      (a) => (this.leftAt.get(a) ?? Number.NEGATIVE_INFINITY) <= now - LEFT_QUIET_MS,
    );
  }

  /**
   * Contacts to rejoin through after a restart (the layer above keeps them on disk): up to
   * MAX_REJOIN_ADDRESSES, spread over the routing table.
   */
  rejoinContacts(): Contact[] {
    return this.table.spread(MAX_REJOIN_ADDRESSES);
  }

  /**
   * Joins through contacts known from an earlier run (rejoinContacts), each PINGed once, at
   * once: the first to answer is enough to join through (the others join the table as they
   * answer). Unlike bootstrap(), nobody answering is no error: the node then counts as having
   * lost every contact, isolated, and tries them again at each upkeep check, as a node cut
   * off while running does. Returns the number of contacts in the routing table afterwards.
   */
  async rejoinThrough(contacts: readonly Contact[]): Promise<number> {
    this.start();
    const others = contacts.filter((c) => !idEquals(c.id, this.id)).slice(0, MAX_REJOIN_ADDRESSES);
    for (const c of [...others].reverse()) if (!this.table.has(c.id)) this.keepForRejoin(c);
    const first = await new Promise<Contact | undefined>((resolve) => {
      let failed = 0;
      if (others.length === 0) resolve(undefined);
      for (const c of others) {
        this.pingAddress(c.address, 1).then(resolve, () => {
          if (++failed === others.length) resolve(undefined);
        });
      }
    });
    if (!first) {
      if (this.table.size === 0) this.lostRounds ??= 0;
      return this.table.size;
    }
    return this.joinFrom();
  }

  private async join(
    seeds: readonly (Contact | string)[],
    attempts = BOOTSTRAP_PING_ATTEMPTS,
  ): Promise<number> {
    const errors: Error[] = [];
    const reached = await Promise.all(
      seeds.map((s) =>
        this.pingAddress(typeof s === 'string' ? s : s.address, attempts).then(
          (c) => c,
          (err: unknown) => {
            errors.push(err as Error);
            return undefined;
          },
        ),
      ),
    );
    if (seeds.length > 0 && reached.every((c) => c === undefined)) {
      // A refusal (another overlay, another version) says more than a timeout: show it first.
      const refusal = errors.find((e) => !(e instanceof TimeoutError));
      throw new NoPeersError(
        `no bootstrap node answered (${seeds.length} tried): ${(refusal ?? errors[0])?.message}`,
        refusal === undefined,
      );
    }
    return this.joinFrom();
  }

  /** The rest of a join, once some contact answered: looks up the own ID, then refreshes. */
  private async joinFrom(): Promise<number> {
    await this.findNode(this.id);
    if (this.opts.refreshOnJoin) {
      const nearest = this.table.closest(this.id, 1)[0];
      if (nearest) {
        const depth = this.table.bucketIndexOf(nearest.id);
        const refreshes: Promise<unknown>[] = [];
        for (let i = 0; i < depth; i++) refreshes.push(this.refreshBucket(i));
        await Promise.all(refreshes);
      }
    }
    return this.table.size;
  }

  /** Stops timers and the transport; stored data is simply dropped (see leave()). */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const t of this.timers.values()) this.clock.clearTimeout(t);
    this.timers.clear();
    for (const h of this.handOvers.values()) if (h.retry) this.clock.clearTimeout(h.retry);
    this.handOvers.clear();
    await this.transport.close();
  }

  /**
   * Graceful leave: hands the stored values to the closest other nodes, a few keys at a time
   * and for at most `handOverMs`, tells every contact it leaves (LEAVE: they drop it now
   * instead of after timeouts), then stops. Returns how many values were handed over. What
   * the time did not allow the other holders store again on their own (upkeep: a holder that
   * stopped answering). All at once, a store of 100,000 keys held the event loop for 20 s
   * signing STOREs, and its LEAVEs never went (QA).
   */
  async leave(handOverMs = LEAVE_HAND_OVER_MS): Promise<number> {
    let handed = 0;
    const until = this.clock.now() + handOverMs;
    const handOver = inParallel([...this.store.keys()], LEAVE_KEYS_IN_FLIGHT, async (key) => {
      const now = this.clock.now();
      if (now >= until || !this.running) return;
      const values = this.heldValues(key, now);
      await Promise.all(
        this.table.closest(key, this.k).map((t) =>
          this.sendStores(t, key, values).then((rs) => {
            handed += rs.filter((r) => r?.ok).length;
          }),
        ),
      );
    });
    // STOREs still out at the deadline (a silent target's take a timeout) are not waited for:
    // the LEAVEs go now, and what those STOREs get before the node stops is counted.
    let timer: TimerHandle | undefined;
    await Promise.race([
      handOver,
      new Promise<void>((resolve) => {
        timer = this.clock.setTimeout(resolve, handOverMs);
      }),
    ]);
    if (timer !== undefined) this.clock.clearTimeout(timer);
    if (!this.opts.client) {
      const contacts = this.table.closest(this.id, this.table.size);
      await inParallel(contacts, LEAVE_NOTICES_IN_FLIGHT, (c) =>
        this.request(c, { type: 'LEAVE', to: c.id }, true, LEAVE_NOTICE_TIMEOUT_MS),
      );
    }
    await this.stop();
    return handed;
  }

  // --- Queries -------------------------------------------------------------------------

  /**
   * A peer named this node's ID at `address`. Not its own: a node there may have its key (a
   * copy of its data directory started elsewhere), or the peer's entry is stale (this node
   * was there before a restart). A PING tells: a node with this key refuses it as sent by
   * itself (409), and is told of as a clash; one with another ID, or none, is not.
   */
  private selfSeenAt(address: string): void {
    if (this.isOwnAddress(address) || !this.running || !this.due(this.selfProbedAt, address)) {
      return;
    }
    void this.request({ id: this.id, address }, { type: 'PING' }, false).then(
      (res) => {
        if (idEquals(res.sender, this.id)) this.identityClash(address);
      },
      (err: unknown) => {
        if (err instanceof DhtError && /peer error 409\b/.test(err.message)) {
          this.identityClash(address);
        }
      },
    );
  }

  /** Another node has this node's ID at `address` (see onIdentityClash). */
  private identityClash(address: string): void {
    if (!this.due(this.clashToldAt, address)) return;
    this.stats.identityClashes++;
    this.onIdentityClash?.(address);
  }

  /**
   * Whether `key` (an address, a node-ID) is due, `intervalMs` after its last time in `last`
   * (or never there); due, it is noted now. The newest `most` keys are kept.
   */
  private due(
    last: Map<string, number>,
    key: string,
    intervalMs = IDENTITY_CLASH_REPORT_MS,
    most = 64,
  ): boolean {
    const now = this.clock.now();
    const at = last.get(key);
    if (at !== undefined && now - at < intervalMs) return false;
    last.delete(key);
    if (last.size >= most) {
      const oldest = last.keys().next();
      if (!oldest.done) last.delete(oldest.value);
    }
    last.set(key, now);
    return true;
  }

  async ping(contact: Contact): Promise<boolean> {
    try {
      await this.request(contact, { type: 'PING' });
      return true;
    } catch {
      return false;
    }
  }

  /**
   * PINGs an address whose node-ID is unknown, a few times over lossy links; resolves with
   * the contact that answered.
   */
  async pingAddress(address: string, attempts = BOOTSTRAP_PING_ATTEMPTS): Promise<Contact> {
    // The placeholder ID is never used for routing: the reply names the real one.
    const placeholder: Contact = { id: new Uint8Array(32), address };
    for (let i = 1; ; i++) {
      try {
        const res = await this.request(placeholder, { type: 'PING' }, false);
        const contact = { id: res.sender, address };
        this.rtt.heard(pathKey(contact));
        this.seen(contact, true);
        return contact;
      } catch (err) {
        // Only silence is worth another try; a refusal will not change.
        if (i >= attempts || !(err instanceof TimeoutError)) throw err;
      }
    }
  }

  /**
   * Whether key's values belong here as far as this node's routing table knows: fewer than k
   * of the nodes it knows are closer to key. It counts only nodes that answered a request of
   * its own and failed none since (closestAnswering), and not `sender` (a holder handing values
   * over as it leaves, or storing on the others when one of them died, which this node may
   * still list). A node that knows k closer ones is not where a lookup for key ends.
   */
  isResponsibleFor(key: NodeId, sender?: NodeId): boolean {
    assertNodeId(key, 'key');
    return this.closerAnswering(key, sender).length < this.k;
  }

  /**
   * The contacts closer to key than this node that isResponsibleFor counts, up to 2k of them:
   * so many that leaving out the sender cannot bring a node that knows many closer ones under
   * k; it helps only a node at the edge of the k closest.
   */
  private closerAnswering(key: NodeId, sender: NodeId | undefined): Contact[] {
    return this.table
      .closestAnswering(key, 2 * this.k)
      .filter(
        (c) => compareDistance(key, c.id, this.id) < 0 && !(sender && idEquals(c.id, sender)),
      );
  }

  /** The k closest nodes to target that answered. */
  findNode(target: NodeId, options: LookupOptions = {}): Promise<LookupResult> {
    assertNodeId(target, 'target');
    return this.runLookup(target, 0, options);
  }

  /**
   * Finds values under key. Values this node holds itself count as one holder (unless
   * `othersOnly`). The result's
   * `values` may contain the same value from several holders.
   */
  async get(key: NodeId, options: GetOptions = {}): Promise<LookupResult> {
    assertNodeId(key, 'key');
    const quorum = Math.max(1, options.quorum ?? 1);
    const now = this.clock.now();
    const local = this.store
      .get(key, now)
      .map((v) => ({ value: v.value, ttlMs: v.expiresAt - now, holder: this.contact }));
    const own = options.othersOnly ? 0 : Math.min(1, local.length);
    if (own === 1 && quorum === 1) return noLookup(local);
    const result = await this.runLookup(key, quorum - own, options);
    result.values.unshift(...local);
    return result;
  }

  /**
   * Stores value under key on the k closest nodes (this one included when it is among them)
   * and remembers it for republishing until it expires.
   */
  async put(key: NodeId, value: Uint8Array, ttlMs = DEFAULT_VALUE_TTL_MS): Promise<PutResult> {
    assertNodeId(key, 'key');
    const [result] = await this.putMany(key, [{ value, ttlMs }]);
    return result as PutResult;
  }

  /**
   * Stores several values under one key after a single lookup: the same k closest nodes get
   * every value, in order. Each target is sent value i+1 only after it answered value i, so a
   * value that depends on an earlier one (a record on its name claim) never arrives first.
   * Each value is remembered for republishing like put(). One result per value, in order;
   * they share the lookup.
   */
  async putMany(key: NodeId, items: readonly PutItem[]): Promise<PutResult[]> {
    assertNodeId(key, 'key');
    const now = this.clock.now();
    const entries = items.map((it) =>
      this.remember({ key, value: it.value, expiresAt: now + (it.ttlMs ?? DEFAULT_VALUE_TTL_MS) }),
    );
    return this.storeEntries(key, entries);
  }

  /**
   * Stores published values of one key on its k closest after one lookup, in order, and notes
   * each store (storedAgain), also when it throws.
   */
  private async storeEntries(key: NodeId, entries: readonly Published[]): Promise<PutResult[]> {
    if (entries.length === 0) return [];
    let results: PutResult[] = [];
    try {
      // A store tried again after a not-responsible refusal asks every contact it knows.
      const askPresumedDead = entries.some((p) => p.retriedRefusals);
      // A republish looks up first: the holders it had may be gone, and still listed.
      const republish = entries.some((p) => p.holders.length > 0);
      const options = { lookup: republish, askPresumedDead };
      results = await this.storeOnClosest(key, options, () => {
        const now = this.clock.now();
        return entries.map((p) => ({ value: p.value, ttlMs: p.expiresAt - now }));
      });
      return results;
    } finally {
      entries.forEach((p, i) => {
        this.storedAgain(p, results[i]);
      });
      if (entries.some((p) => !p.complete)) this.retryIncompleteSoon();
    }
  }

  /** Remembers a value for republishing, its first store under way. */
  private remember(v: PublishedValue, backdateMs = 0): Published {
    const entry: Published = {
      ...v,
      storedAt: this.clock.now(),
      complete: false,
      storing: true,
      backdateMs,
      holders: [],
      retriedRefusals: false,
    };
    this.published.set(publishedKey(v.key, v.value), entry);
    return entry;
  }

  /**
   * Notes a store of a published value: when, and whether as many nodes answered as should
   * hold it (k, or every node this one knows and itself when there are fewer). A refusal
   * counts as an answer: storing again would be refused again. Not so at first a
   * `not-responsible`, which the refuser may reconsider once it has checked the closer nodes
   * it lists (checkCloser): that store is tried once more, then taken as answered. A lookup
   * that found fewer nodes than the routing table knows (silence, loss) leaves the store
   * incomplete. An incomplete store is retried at the next upkeep check, not a republish
   * interval later; so is one that failed (`result` undefined).
   */
  private storedAgain(entry: Published, result: PutResult | undefined): void {
    entry.storing = false;
    entry.storedAt = this.clock.now() - entry.backdateMs;
    entry.backdateMs = 0;
    // Stored nowhere but here while cut off: stored again once rejoined, and the holders it
    // had stay the ones pinged.
    if (!result || this.isolated) {
      entry.complete = false;
      return;
    }
    entry.holders = result.stored.filter((c) => !idEquals(c.id, this.id));
    const expected = Math.min(this.k, this.table.size + (this.opts.client ? 0 : 1));
    const answered = (refusals: boolean) =>
      result.stored.length +
        result.rejected.filter((r) => refusals || r.reason !== 'not-responsible').length >=
      expected;
    entry.complete = answered(entry.retriedRefusals);
    entry.retriedRefusals = !entry.complete && answered(true);
  }

  /** Stores incomplete values again in incompleteRetryMs (see INCOMPLETE_RETRY_MS). */
  private retryIncompleteSoon(): void {
    if (!this.running || this.timers.has('incomplete')) return;
    const handle = this.clock.setTimeout(() => {
      this.timers.delete('incomplete');
      if (this.running) this.retryIncomplete().catch(() => undefined);
    }, this.incompleteRetryMs);
    this.timers.set('incomplete', handle);
  }

  private async retryIncomplete(): Promise<void> {
    // Cut off: the upkeep check rejoins first, then stores what is incomplete (see republish).
    if (this.lostRounds !== undefined) return;
    this.incompleteRetryMs = Math.min(2 * this.incompleteRetryMs, this.opts.upkeepCheckIntervalMs);
    const due = await this.storeAgain((p) => !p.complete);
    // All stored as they should be: the next outage starts from the short wait again.
    if (due.every((p) => p.complete)) this.incompleteRetryMs = INCOMPLETE_RETRY_MS;
  }

  /**
   * Stores values under key on the given holders only, with no lookup and nothing remembered
   * for republishing: how a reader sends the newest value back to holders that returned an
   * older one (read repair). This node, when among them, stores them itself. Per holder, per
   * value, its result (undefined: expired, or no answer).
   */
  storeAt(
    holders: readonly Contact[],
    key: NodeId,
    values: readonly { value: Uint8Array; ttlMs: number }[],
  ): Promise<(StoreResult | undefined)[][]> {
    assertNodeId(key, 'key');
    return Promise.all(
      holders.map(async (h) => {
        if (!idEquals(h.id, this.id)) return this.sendStores(h, key, values);
        const now = this.clock.now();
        return values.map(({ value, ttlMs }) => {
          if (ttlMs <= 0) return undefined;
          const { forged: _forged, ...result } = this.storeOne(key, value, ttlMs, this.id, now);
          return result;
        });
      }),
    );
  }

  /** Stops republishing a value this node put (it still expires where it is stored). */
  unpublish(key: NodeId, value: Uint8Array): void {
    this.published.delete(publishedKey(key, value));
  }

  /**
   * Takes back a value this node put that the layer above found refused: no longer
   * republished, and gone from this node's own store when it stored it there (elsewhere it
   * expires where it was taken).
   */
  withdraw(key: NodeId, value: Uint8Array): void {
    this.unpublish(key, value);
    this.store.deleteValue(key, value);
  }

  publishedValues(): PublishedValue[] {
    return [...this.published.values()].map(({ key, value, expiresAt }) => ({
      key,
      value,
      expiresAt,
    }));
  }

  // --- Incoming requests -----------------------------------------------------------------

  private handle(req: Request, remoteAddress: string): Response {
    const now = this.clock.now();
    if (!isNodeId(req.sender)) {
      return this.reply({ type: 'ERROR', code: 400, message: 'sender id must be 32 bytes' });
    }
    if (idEquals(req.sender, this.id)) {
      // From elsewhere: a node with this node's key (a probe of its own, see selfSeenAt).
      if (!this.isOwnAddress(remoteAddress)) this.identityClash(remoteAddress);
      return this.reply({ type: 'ERROR', code: 409, message: 'sender claims this node id' });
    }
    this.stats.requestsIn[req.body.type]++;
    if (this.opts.client) {
      return this.reply({ type: 'ERROR', code: 403, message: 'this node is a client' });
    }
    const sender: Contact = { id: req.sender, address: remoteAddress };
    if (req.body.type === 'LEAVE') {
      if (!req.client && idEquals(req.body.to, this.id)) this.left(sender);
      return this.reply(handlePing());
    }
    // Its ID listed at another address (a node started from a copy of its key, or where it
    // was before a restart) is named to it in a lookup's answer (see selfSeenAt): read before
    // this request moves the entry here.
    const finding = req.body.type === 'FIND_NODE' || req.body.type === 'FIND_VALUE';
    const listed = finding && !req.client ? this.table.get(req.sender)?.address : undefined;
    const named = (answer: ResponseBody): ResponseBody =>
      listed !== undefined &&
      listed !== remoteAddress &&
      (answer.type === 'NODES' || answer.type === 'VALUE')
        ? { ...answer, contacts: [...answer.contacts, { id: req.sender, address: listed }] }
        : answer;
    if (!req.client) {
      this.seen(sender, false, req.addressed !== false);
      if (this.rtt.anySilence) this.rtt.heard(pathKey(sender));
    }
    const body = req.body;
    switch (body.type) {
      case 'PING':
        return this.reply(handlePing());
      case 'FIND_NODE':
        return this.reply(named(handleFindNode(this.table, body.target, req.sender, this.k)));
      case 'FIND_VALUE':
        return this.reply(
          named(
            handleFindValue(this.table, this.store, body.key, req.sender, this.k, now, body.offset),
          ),
        );
      case 'STORE': {
        // The values go in order (a layer above may let a value rely on one stored before it
        // in the same request). After a forged one, the rest are refused unchecked: an honest
        // sender sends none, and a forger would make each cost a signature check. A STORE
        // that asks for contacts was sent without a lookup (storeOnClosest): it is taken only
        // where it belongs as far as this node's table knows, as its sender was not sure.
        const contacts = body.closest
          ? { contacts: closestForRequester(this.table, body.key, req.sender, this.k) }
          : {};
        const misplaced = body.closest === true && !this.isResponsibleFor(body.key, req.sender);
        const storeOne = (value: Uint8Array, ttlMs: number) =>
          this.storeOne(body.key, value, ttlMs, req.sender, now, misplaced);
        const { forged: firstForged, ...first } = storeOne(body.value, body.ttlMs);
        if (!body.more) return this.reply({ type: 'STORED', ...first, ...contacts });
        let forged = firstForged === true;
        const more = body.more.slice(0, MAX_STORE_MORE).map((v): StoreResult => {
          if (forged) {
            this.stats.storeRejections.invalid = (this.stats.storeRejections.invalid ?? 0) + 1;
            return { ok: false, reason: 'invalid', detail: NOT_CHECKED };
          }
          const { forged: f, ...r } = storeOne(v.value, v.ttlMs);
          forged = f === true;
          return r;
        });
        return this.reply({ type: 'STORED', ...first, more, ...contacts });
      }
    }
  }

  /** A value was stored under key here (from a STORE or by this node): noted for upkeep. */
  private noteStored(key: NodeId, changed: boolean, now: number): void {
    const hex = idToHex(key);
    this.lastStoreAt.set(hex, now);
    if (changed) this.lastChangeAt.set(hex, now);
  }

  /** The values held under key, with their remaining lifetimes, to store elsewhere. */
  private heldValues(key: NodeId, now: number): { value: Uint8Array; ttlMs: number }[] {
    return this.store.get(key, now).map((v) => ({ value: v.value, ttlMs: v.expiresAt - now }));
  }

  /** One value of an incoming STORE: stored or refused (and the refusal counted). */
  private storeOne(
    key: NodeId,
    value: Uint8Array,
    ttlMs: number,
    sender: NodeId,
    now: number,
    misplaced = false,
  ): StoreOutcome {
    const { changed, ...result }: StoreOutcome = misplaced
      ? refusal('not-responsible')
      : handleStore(this.store, this.validateValue, key, value, ttlMs, sender, now);
    if (result.ok) this.noteStored(key, changed === true, now);
    else {
      this.stats.storeRejections[result.reason] =
        (this.stats.storeRejections[result.reason] ?? 0) + 1;
      if (result.reason === 'not-responsible') this.checkCloser(key, sender, now);
    }
    return result;
  }

  /**
   * A STORE refused as not-responsible (isResponsibleFor): the closer contacts that made it so
   * and have not answered a request of ours lately (CLOSER_CHECK_MIN_AGE_MS, or half an upkeep
   * period when that is shorter) are pinged. One that no longer answers (dead, or sending
   * without answering) is then left out of the count, so the publisher's next try, at its next
   * upkeep check, is taken. One PING per contact at a time, and none to a contact that
   * answered lately: refusals cannot be turned into a flood of them.
   */
  private checkCloser(key: NodeId, sender: NodeId, now: number): void {
    const fresh = Math.min(CLOSER_CHECK_MIN_AGE_MS, this.opts.upkeepCheckIntervalMs / 2);
    for (const c of this.closerAnswering(key, sender)) {
      const hex = idToHex(c.id);
      const answered = this.table.answeredAt(c.id) ?? 0;
      if (now - answered < fresh || this.closerPings.has(hex)) continue;
      this.closerPings.add(hex);
      void this.ping(c).finally(() => this.closerPings.delete(hex));
    }
  }

  private reply(body: Response['body']): Response {
    return { sender: this.id, body };
  }

  // --- Routing table upkeep ----------------------------------------------------------------

  /**
   * A contact proved alive (`answered`: by answering a request of ours): add or refresh it,
   * ping-before-evict when its bucket is full. `addressed` false: heard from in a request that
   * named no recipient (Request.addressed), which may be a copy of one sent to another node,
   * replayed from anywhere: it only refreshes a contact listed at that address, never adds one
   * nor moves one (a move is counted as a refused contact).
   */
  private seen(contact: Contact, answered = false, addressed = true): void {
    if (!this.acceptContact(contact)) {
      this.stats.contactsRefused++;
      return;
    }
    if (!addressed) {
      const listed = this.table.get(contact.id);
      if (!listed) return;
      if (listed.address !== contact.address) {
        this.stats.contactsRefused++;
        return;
      }
    } else if (!answered) {
      const listed = this.table.get(contact.id);
      if (listed && listed.address !== contact.address) {
        // Listed elsewhere: the source of the request may be forged (a signed request of the
        // node's own, sent from another address, QA). It moves once it answers there.
        this.checkMove(contact);
        return;
      }
    }
    const now = this.clock.now();
    const r = this.table.add(contact, now, answered);
    if (answered) this.backInTouch();
    if (r.status === 'added') {
      this.leftAt.delete(contact.address);
      if (answered) this.handOver(contact);
      else if (
        this.lostRounds !== undefined ||
        this.handOvers.has(idToHex(contact.id)) ||
        this.handOverKeys(contact).length > 0
      ) {
        // Heard only as a sender: its address may be forged (a signed request of its own,
        // sent from a victim's address). Values go to it once it answered a PING there, so a
        // forged source brings its victim a PING (and its retransmissions), not every value
        // this node holds; one per new contact in the table that would get values (or, cut
        // off, that may show the others are back: backInTouch), each costing a puzzle key.
        this.request(contact, { type: 'PING' }, true).then(
          () => this.handOver(contact),
          () => undefined,
        );
      }
    } else if (r.status === 'full' && now - r.leastRecentlySeenAt >= EVICTION_PING_MIN_AGE_MS) {
      // A contact heard from within the last minute is alive: no PING needed to keep it (the
      // newcomer waits in the replacement cache). With full buckets, every message from a node
      // outside the table would otherwise cost a PING.
      this.pingBeforeEvict(r.leastRecentlySeen);
    }
  }

  /**
   * PINGs a listed node at the address a request of its came from (seen): answered there, it
   * is listed there. Once per node-ID every MOVE_CHECK_INTERVAL_MS, so that a forged source
   * brings its victim a PING now and then, not one per datagram.
   */
  private checkMove(contact: Contact): void {
    const key = idToHex(contact.id);
    if (!this.due(this.moveChecks, key, MOVE_CHECK_INTERVAL_MS, MAX_MOVE_CHECKS)) return;
    this.request(contact, { type: 'PING' }, true).catch(() => undefined);
  }

  private pingBeforeEvict(lrs: Contact): void {
    const key = idToHex(lrs.id);
    if (this.evictionPings.has(key)) return;
    this.evictionPings.add(key);
    // The full timeout: a slow contact that is alive keeps its place (Kademlia prefers old ones).
    this.request(lrs, { type: 'PING' }, true, this.opts.requestTimeoutMs).then(
      () => this.evictionPings.delete(key),
      // request() already recorded the failure, which swaps in the newest replacement.
      () => this.evictionPings.delete(key),
    );
  }

  /**
   * Kademlia §2.5: a newcomer that belongs among the k closest for a stored key gets the
   * value, sent by the HAND_OVER_SENDERS (2) nodes that were closest before it arrived.
   */
  private handOver(newcomer: Contact): void {
    const hex = idToHex(newcomer.id);
    let run = this.handOvers.get(hex);
    // Counted and told once per key: not again for one still waiting from a stopped run.
    const keys = this.handOverKeys(newcomer).filter((k) => !run?.keys.has(idToHex(k)));
    const back = this.droppedLately.delete(hex);
    if (keys.length > 0) {
      this.stats.handOvers++;
      this.stats.keysHandedOver += keys.length;
      this.onHandOver?.(newcomer, keys.length, back);
    }
    if (!run) {
      if (keys.length === 0) return;
      run = { to: newcomer, keys: new Map(), running: false };
      setLatest(this.handOvers, hex, run, MAX_HAND_OVERS_WAITING);
    }
    run.to = newcomer;
    for (const key of keys) run.keys.set(idToHex(key), key);
    this.sendHandOver(hex);
  }

  /**
   * Sends a newcomer the keys its hand-over holds, a few STOREs at a time (a node holding
   * 10,000 keys must not put them all in flight at once), each with the values held when it
   * goes; until they are all sent, or the newcomer leaves a STORE unanswered: then the rest
   * waits, HAND_OVER_RETRY_MS while the newcomer is listed, or until it is heard from again.
   */
  private sendHandOver(hex: string): void {
    const run = this.handOvers.get(hex);
    if (!run || run.running || !this.running) return;
    run.running = true;
    if (run.retry) this.clock.clearTimeout(run.retry);
    run.retry = undefined;
    const outcome = { silent: false };
    const worker = async () => {
      while (!outcome.silent && this.running) {
        const next = run.keys.entries().next().value;
        if (!next) return;
        const [keyHex, key] = next;
        run.keys.delete(keyHex);
        const sent = { silent: false };
        await this.sendStores(run.to, key, this.heldValues(key, this.clock.now()), sent);
        if (sent.silent) {
          outcome.silent = true;
          run.keys.set(keyHex, key);
        }
      }
    };
    void Promise.all(Array.from({ length: UPKEEP_PARALLELISM }, worker)).then(() => {
      run.running = false;
      if (this.handOvers.get(hex) !== run) return;
      if (run.keys.size === 0 || !this.running) {
        this.handOvers.delete(hex);
        return;
      }
      run.retry = this.clock.setTimeout(() => {
        run.retry = undefined;
        if (this.table.get(run.to.id)?.address === run.to.address) this.sendHandOver(hex);
      }, HAND_OVER_RETRY_MS);
    });
  }

  /**
   * The keys this node would hand over to the newcomer (handOver). A node dropped lately that
   * is back (restarted, or stalled) kept what it held: it needs only what was stored since it
   * was dropped. What changed here since then it gets from every holder that dropped it, not
   * only from the closest: the nodes closer than this one may have been away with it, and
   * hold the value it missed no more than it does.
   */
  private handOverKeys(newcomer: Contact): NodeId[] {
    const keys: NodeId[] = [];
    if (this.store.keyCount === 0) return keys;
    // Since it began leaving requests unanswered: a value changed while it was silent but
    // still listed (before enough of them failed to drop it) is one it missed too.
    const silentSince = this.droppedLately.get(idToHex(newcomer.id))?.silentSince;
    for (const key of this.store.keys()) {
      const closest = this.table.closest(key, this.k);
      if (!closest.some((c) => idEquals(c.id, newcomer.id))) continue;
      const hex = idToHex(key);
      if (silentSince !== undefined) {
        // Stored in the same millisecond as it went silent counts as after.
        if ((this.lastChangeAt.get(hex) ?? Number.NEGATIVE_INFINITY) >= silentSince) {
          keys.push(key);
          continue;
        }
        if ((this.lastStoreAt.get(hex) ?? Number.POSITIVE_INFINITY) < silentSince) continue;
      }
      // The HAND_OVER_SENDERS closest before it arrived send: one that lies (a node with an ID
      // chosen next to a key, keeping the owner's records from each newcomer, QA) does not
      // leave the newcomer with what it alone gave it.
      const closer = closest.filter(
        (c) => !idEquals(c.id, newcomer.id) && compareDistance(key, c.id, this.id) < 0,
      );
      if (closer.length >= HAND_OVER_SENDERS) continue;
      keys.push(key);
    }
    return keys;
  }

  private refreshBucket(index: number): Promise<LookupResult> {
    return this.findNode(randomIdAtPrefix(this.id, index, this.random));
  }

  private async refreshStaleBuckets(): Promise<void> {
    if (this.table.size === 0) return;
    const stale = this.table.staleBuckets(this.clock.now() - this.opts.refreshIntervalMs);
    for (const i of stale) await this.refreshBucket(i);
  }

  // --- Storage upkeep ------------------------------------------------------------------------

  /**
   * Stores again the published values that are due: last stored a republish interval ago (or
   * will be before the next check), or last stored on fewer nodes than it should have been.
   * A value stored everywhere lately costs nothing: a node that published thousands of
   * records does not re-send all of them at every check.
   */
  private async republish(): Promise<void> {
    if (this.lostRounds !== undefined) await this.rejoin();
    const dead = await this.deadHolders();
    const now = this.clock.now();
    // Two checks early: checks are jittered, and the holders' replication must come later.
    const age = this.opts.republishIntervalMs - 2 * this.opts.upkeepCheckIntervalMs;
    // Knowing fewer than k others, every node holds the value already: a dead holder leaves
    // no place another node could take (see replicate).
    const holderLost = (p: Published) =>
      this.table.size >= this.k && p.holders.some((h) => dead.has(idToHex(h.id)));
    await this.storeAgain((p) => !p.complete || now - p.storedAt >= age || holderLost(p));
  }

  /**
   * Stores again the published values `due` picks among those not expired (the expired are
   * forgotten) and with no store under way; returns them.
   */
  private async storeAgain(due: (p: Published) => boolean): Promise<Published[]> {
    const now = this.clock.now();
    const picked: Published[] = [];
    for (const [id, p] of this.published) {
      if (p.expiresAt <= now) this.published.delete(id);
      else if (!p.storing && due(p)) {
        p.storing = true;
        picked.push(p);
      }
    }
    await this.storeGrouped(picked);
    return picked;
  }

  /**
   * Between republishings, a published value's holders are pinged at each upkeep check (a
   * few dozen a check, in turn): a value one of them no longer answers for (two PINGs) is
   * stored again now, not an interval later.
   */
  private deadHolders(): Promise<Set<string>> {
    const holders: Contact[] = [];
    for (const p of this.published.values()) holders.push(...p.holders);
    return this.unanswering(holders, 'published');
  }

  /**
   * Which of these contacts (distinct, at most MAX_HOLDER_PINGS a check, in turn over checks)
   * answer neither of two PINGs, by hex ID.
   */
  private async unanswering(
    contacts: readonly Contact[],
    cursor: 'published' | 'held',
  ): Promise<Set<string>> {
    const byHex = new Map<string, Contact>();
    for (const c of contacts) byHex.set(idToHex(c.id), c);
    const all = [...byHex.values()];
    const count = Math.min(all.length, MAX_HOLDER_PINGS);
    const start = this.pingCursor[cursor];
    const batch = Array.from({ length: count }, (_, i) => all[(start + i) % all.length] as Contact);
    this.pingCursor[cursor] = all.length > 0 ? (start + count) % all.length : 0;
    const dead = new Set<string>();
    await Promise.all(
      batch.map(async (c) => {
        if (!((await this.ping(c)) || (await this.ping(c)))) dead.add(idToHex(c.id));
      }),
    );
    return dead;
  }

  /**
   * Publishes values under any keys at once (what a node published before a restart, say):
   * remembered for republishing like put(), stored with one lookup per key, each key's values
   * in the order given, a few keys at a time. Never rejects.
   */
  async putAll(values: readonly PublishedValue[]): Promise<void> {
    // Stored now, all of them; their republishing is spread over a quarter of the interval
    // so that it does not come due in one check every hour.
    const spread = this.opts.republishIntervalMs / 4;
    const entries = values.map((v) => this.remember(v, this.random.next() * spread));
    await this.storeGrouped(entries);
  }

  /** Values under one key (a name claim and its record, say) share one lookup, in order. */
  private async storeGrouped(values: readonly Published[]): Promise<void> {
    const byKey = new Map<string, Published[]>();
    for (const p of values) {
      const hex = idToHex(p.key);
      const group = byKey.get(hex);
      if (group) group.push(p);
      else byKey.set(hex, [p]);
    }
    await inParallel([...byKey.values()], UPKEEP_PARALLELISM, (group) =>
      this.storeEntries((group[0] as Published).key, group),
    );
  }

  /**
   * Re-stores every held key on its current k closest, so replicas lost to dead nodes come
   * back. Keys that arrived by STORE within the last interval are skipped: whoever sent them
   * is already doing this (Kademlia §2.5's optimisation).
   */
  private async replicate(): Promise<void> {
    // A node among the k closest to a held key that died took a replica along: that key is
    // replicated now, not only when nobody refreshed it, so k copies are back within this
    // period even when its publisher died too.
    // Cut off, it could store on nobody but itself; what was dropped meanwhile is weighed
    // once it has contacts again.
    if (this.table.size === 0) return;
    const keys = [...this.store.keys()];
    const near = keys.map((key) => this.table.closest(key, this.k));
    // Those dropped that came back (a request of theirs) took nothing along.
    const since = this.replicatedAt;
    this.replicatedAt = this.clock.now();
    const gone = [...this.droppedLately.values()].filter(
      (d) => d.at >= since && !this.table.has(d.id),
    );
    const dead = await this.unanswering(near.flat(), 'held');
    const now = this.clock.now();
    const interval = this.opts.replicateIntervalMs;
    // Checked more often than the interval: what this node replicated itself waits (nearly) a
    // whole interval again, also where it is no longer among the closest to store on itself.
    const ownAge = interval - this.opts.upkeepCheckIntervalMs;
    // While this node knows fewer than k others, every node is among the k closest to every
    // key, and was when the value was stored: one dying takes a replica that no other node
    // could take its place for. Storing again where every live node holds the value would
    // cost a lookup and k STOREs per key for nothing (10,000 keys in an office overlay).
    const noneToTakeOver = this.table.size < this.k;
    const due: { key: NodeId; hex: string; retry: boolean }[] = [];
    for (const [i, key] of keys.entries()) {
      // A key's publisher stores it again before a whole interval has passed (republish):
      // a holder replicates what nobody refreshed for that long, its publisher gone.
      const hex = idToHex(key);
      const last = this.lastStoreAt.get(hex);
      const own = this.lastReplicatedAt.get(hex);
      const closest = near[i] ?? [];
      const kth = closest[this.k - 1];
      const storedAt = Math.max(last ?? 0, own ?? 0);
      const lostReplica =
        !noneToTakeOver &&
        (closest.some((c) => dead.has(idToHex(c.id))) ||
          gone.some((d) => storedAt < d.at && (!kth || compareDistance(key, d.id, kth.id) < 0)));
      const retry = this.replicateAgain.delete(hex);
      if (!lostReplica && !retry) {
        if (last !== undefined && now - last < interval) continue;
        if (ownAge > 0 && own !== undefined && now - own < ownAge) continue;
      }
      if (this.store.get(key, now).length === 0) continue;
      due.push({ key, hex, retry });
      this.lastReplicatedAt.set(hex, now);
    }
    // One lookup per key, and its values in order (a record after its name claim), as a
    // publisher stores them. A `not-responsible` refusal gets one more try at the next check,
    // not a replication interval later: the refuser may still have counted a closer node that
    // died with the others, and pinged it on refusing (checkCloser).
    this.stats.keysReplicated += due.length;
    await inParallel(due, UPKEEP_PARALLELISM, async ({ key, hex, retry }) => {
      // The values as held when they go: one may have been replaced during a lookup.
      // Looked up first: holders died or nodes came (this check's reasons to run).
      const options = { lookup: true, askPresumedDead: retry };
      const results = await this.storeOnClosest(key, options, () =>
        this.heldValues(key, this.clock.now()),
      );
      const refused = results.some((r) => r.rejected.some((x) => x.reason === 'not-responsible'));
      if (refused && !retry) this.replicateAgain.add(hex);
    });
  }

  private expire(): void {
    const now = this.clock.now();
    this.store.deleteExpired(now);
    // What is noted per held key goes with the key.
    const notes = [this.lastStoreAt, this.lastChangeAt, this.lastReplicatedAt, this.replicateAgain];
    for (const noted of notes) {
      for (const hex of noted.keys()) if (!this.store.has(idFromHex(hex))) noted.delete(hex);
    }
    for (const [id, p] of this.published) if (p.expiresAt <= now) this.published.delete(id);
  }

  /**
   * Stores values of key on its k closest nodes, each getting them in order. When the routing
   * table is likely to hold every node near key (knowsAllNear), the k closest of them all
   * answered a request of its own and failed none since, and no refusal is being retried
   * (askPresumedDead), and the caller does not want a lookup (`lookup`), the values go to
   * them at once, each STORE asking its target for its own closest contacts to key, as a
   * FIND_NODE would. A lookup follows only when a target names a node closer to key than the
   * farthest target, or did not answer with its contacts (silent, or a node from before
   * them), or refused the values as not responsible for key (a STORE that asks for contacts
   * is taken only where the recipient's table says it belongs); then the lookup's closest
   * get the values, but for the nodes that answered already. Where tables have settled,
   * a store costs its k STOREs, not a lookup's FIND_NODEs (α or more) before them as well.
   * `values` is called before each wave: the values as they are when they go.
   */
  private async storeOnClosest(
    key: NodeId,
    options: { lookup: boolean; askPresumedDead: boolean },
    values: () => readonly { value: Uint8Array; ttlMs: number }[],
  ): Promise<PutResult[]> {
    const { askPresumedDead } = options;
    const lookUpFirst = async () =>
      this.storeOnTargets(key, await this.findNode(key, { askPresumedDead }), values());
    if (options.lookup || askPresumedDead || !this.knowsAllNear(key)) return lookUpFirst();
    const known = this.table.closest(key, this.k);
    const answering = this.table.closestAnswering(key, this.k);
    const allAnswered = known.every((c, i) => {
      const other = answering[i];
      return other !== undefined && idEquals(c.id, other.id);
    });
    if (known.length === 0 || !allAnswered) return lookUpFirst();
    const heard = new Map<string, readonly Contact[] | undefined>();
    const probe = { ...noLookup(), closest: known, closestAsked: known.length };
    const first = await this.storeOnTargets(key, probe, values(), { heard });
    // Done unless a target refused as not responsible, or kept its contacts to itself
    // (silent, or from before them), or named a node that belongs among the holders: one
    // closer to key than the farthest of them, or any other while they are fewer than k.
    const self = idToHex(this.id);
    const holders = new Set(heard.keys());
    if (first.some((r) => r.stored.some((c) => idEquals(c.id, this.id)))) holders.add(self);
    const [farthest] = [...holders].map(idFromHex).sort((a, b) => compareDistance(key, b, a));
    const belongs = (c: Contact) =>
      !holders.has(idToHex(c.id)) &&
      !idEquals(c.id, this.id) &&
      (holders.size < this.k || (farthest && compareDistance(key, c.id, farthest) < 0));
    const settled =
      farthest !== undefined &&
      !first.some((r) => r.rejected.some((x) => x.reason === 'not-responsible')) &&
      [...heard.values()].every((contacts) => contacts !== undefined && !contacts.some(belongs));
    if (settled) return first;
    // Nodes that answered have had their say; the lookup's closest get the values but for them.
    const answered = first.flatMap((r) => [...r.stored, ...r.rejected.map((x) => x.contact)]);
    const skip = new Set(answered.map((c) => idToHex(c.id)));
    const found = await this.findNode(key, { askPresumedDead });
    // The holders, as storeOnTargets takes them: the k closest, this node in the last place
    // when it is among them.
    const selfHolds = this.amongClosest(key, found.closest);
    const closest = found.closest.slice(0, selfHolds ? this.k - 1 : this.k);
    const targets = new Set(closest.map((c) => idToHex(c.id)));
    if (selfHolds) targets.add(self);
    const second = await this.storeOnTargets(key, found, values(), { skip });
    // A copy stored and a refusal count alike: where the node is one of the lookup's closest
    // (this one included when it is). A copy the first wave left beyond them (this node's
    // own, say, when its table missed a holder) is no holder's verdict.
    const counts = (c: Contact) => targets.has(idToHex(c.id));
    return second.map((r, i) => ({
      ...r,
      stored: [...(first[i]?.stored ?? []).filter(counts), ...r.stored],
      rejected: [...(first[i]?.rejected ?? []).filter((x) => counts(x.contact)), ...r.rejected],
    }));
  }

  /**
   * Whether this node's routing table is likely to hold every node near key: the bucket of
   * key's range, and every bucket deeper (they hold the nodes next closest to key when that
   * one holds fewer than k), has room and no node waiting in its replacement cache. A full
   * bucket turns nodes away, and among them may be closer ones than it kept; a range with
   * room is one with few nodes, which this node is likely to have heard from. (Only likely:
   * it hears of nodes from their requests and answers; the targets' contacts tell it more.)
   */
  private knowsAllNear(key: NodeId): boolean {
    for (let i = this.table.bucketIndexOf(key); i < this.table.bucketCount; i++) {
      const bucket = this.table.bucket(i);
      if (bucket.isFull || bucket.replacements.length > 0) return false;
    }
    return true;
  }

  /** Whether this node (a full node) is one of the k closest to key, beside `closest`. */
  private amongClosest(key: NodeId, closest: readonly Contact[]): boolean {
    if (this.opts.client) return false;
    return closest.length < this.k || closest.some((c) => compareDistance(key, this.id, c.id) < 0);
  }

  /**
   * Stores the values on the lookup's k closest (this node included when it is among them).
   * Each target gets them in order, together in one STORE when they fit (sendStores).
   */
  private async storeOnTargets(
    key: NodeId,
    found: LookupResult,
    values: readonly { value: Uint8Array; ttlMs: number }[],
    options: {
      /** Nodes (hex IDs, this one's too) that have the values already: left out. */
      skip?: ReadonlySet<string>;
      /** Each target's closest contacts to key, asked for in its STORE; undefined: none came. */
      heard?: Map<string, readonly Contact[] | undefined>;
    } = {},
  ): Promise<PutResult[]> {
    const { skip, heard } = options;
    const results: PutResult[] = values.map(() => ({ stored: [], rejected: [], lookup: found }));
    const targets = [...found.closest];
    const selfIsClose = this.amongClosest(key, targets);
    if (selfIsClose && !skip?.has(idToHex(this.id))) {
      values.forEach((v, i) => {
        const now = this.clock.now();
        const r = handleStore(this.store, this.validateValue, key, v.value, v.ttlMs, this.id, now);
        if (r.ok) {
          results[i]?.stored.push(this.contact);
          this.noteStored(key, r.changed === true, now);
        }
      });
    }
    if (selfIsClose) targets.length = Math.min(targets.length, this.k - 1);
    await Promise.all(
      targets.map(async (t) => {
        if (skip?.has(idToHex(t.id))) return;
        const closest: { contacts?: readonly Contact[] } | undefined = heard ? {} : undefined;
        const answers = await this.sendStores(t, key, values, undefined, closest);
        heard?.set(idToHex(t.id), closest?.contacts);
        answers.forEach((r, i) => {
          const result = results[i] as PutResult;
          if (r?.ok) result.stored.push(t);
          else if (r) {
            const { ok: _refused, ...why } = r;
            result.rejected.push({ contact: t, ...why });
          }
        });
      }),
    );
    return results;
  }

  /**
   * Stores the values on one node, in order: together in one STORE (first value plus `more`)
   * when they fit one datagram, else one STORE each, each sent once the previous one was
   * answered; also one by one after the node answered only the first (it ignores `more`).
   * Per value its result, or undefined when it had expired or the node did not answer;
   * `outcome.silent` is set when the run ended because `to` left a STORE unanswered.
   */
  private async sendStores(
    to: Contact,
    key: NodeId,
    values: readonly { value: Uint8Array; ttlMs: number }[],
    outcome?: { silent: boolean },
    /** Asks for the target's closest contacts to key (in the first STORE), put here. */
    closest?: { contacts?: readonly Contact[] },
  ): Promise<(StoreResult | undefined)[]> {
    const out: (StoreResult | undefined)[] = values.map(() => undefined);
    const live = values.flatMap((v, i) => (v.ttlMs > 0 ? [i] : []));
    let perRequest = 1 + MAX_STORE_MORE;
    let next = 0;
    while (next < live.length) {
      const batch = live.slice(next, next + perRequest);
      const [head, ...rest] = batch.map((i) => values[i] as { value: Uint8Array; ttlMs: number });
      if (!head) break;
      let res: Response;
      try {
        res = await this.request(to, {
          type: 'STORE',
          key,
          value: head.value,
          ttlMs: head.ttlMs,
          ...(rest.length > 0 ? { more: rest } : {}),
          ...(closest && next === 0 ? { closest: true } : {}),
        });
      } catch (err) {
        // Silence (or the node stopping) ends the run.
        if (!(err instanceof DhtError && err.code === 'ERR_TOO_LARGE')) {
          if (outcome && err instanceof TimeoutError) outcome.silent = true;
          break;
        }
        // Too large together: one per STORE from here. Too large alone: skip it, the next may go.
        if (rest.length > 0) perRequest = 1;
        else next++;
        continue;
      }
      if (res.body.type !== 'STORED') break;
      const { type: _type, more, contacts, ...first } = res.body;
      if (closest && next === 0 && contacts) closest.contacts = contacts;
      out[batch[0] as number] = first;
      const answered = (more ?? []).slice(0, rest.length);
      answered.forEach((r, j) => {
        out[batch[j + 1] as number] = r;
      });
      if (answered.length < rest.length) perRequest = 1;
      next += 1 + answered.length;
    }
    return out;
  }

  // --- Lookups and requests ------------------------------------------------------------------

  private runLookup(target: NodeId, quorum: number, options: GetOptions): Promise<LookupResult> {
    this.stats.lookups++;
    this.table.touchBucket(target, this.clock.now());
    const paths = Math.max(1, options.paths ?? this.disjointPaths);
    // Twice what the paths need: a path whose first k contacts died goes on to the next ones
    // it knows instead of ending with no answer. The extra ones cost nothing while the first
    // k answer (a path asks only until its k closest live contacts have).
    let initial = this.table.closest(target, 2 * this.k * paths);
    // A contact that left two requests in a row unanswered lately (the upkeep's two PINGs,
    // say) is presumed dead at that address: the routing table dropped it, but the nodes that
    // have not noticed yet still name it in their answers, and each such node among the
    // closest would hold every lookup up for a timeout. It is counted silent without being
    // asked until it answers a PING or sends a request, or PRESUMED_DEAD_MS have passed, or
    // this node rejoined after an outage of its own (forgetSilences); and not at all by a
    // store tried again after a not-responsible refusal (askPresumedDead).
    const since = this.clock.now() - PRESUMED_DEAD_MS;
    const presumedDead = (c: Contact) =>
      this.rtt.anySilence && this.rtt.silentTwiceSince(pathKey(c), since);
    if (!options.askPresumedDead && this.dropped.length > 0) {
      // Those this node dropped so lately take their place among the closest too, once no
      // node names them any more: the holders of a record that all died together still make
      // "nothing found" a silence (503), not "no such record" (404), until the nodes that
      // published it have stored it again (within an upkeep period).
      const gone = this.dropped.filter(
        (c) => presumedDead(c) && !initial.some((i) => idEquals(i.id, c.id)),
      );
      if (gone.length > 0) {
        initial = [...initial, ...gone].sort((a, b) => compareDistance(target, a.id, b.id));
      }
    }
    return lookup({
      target,
      ownId: this.id,
      k: this.k,
      alpha: this.alpha,
      paths,
      maxRequests: this.opts.maxLookupRequests * paths,
      initial,
      quorum,
      trace: options.trace ?? false,
      accept: this.acceptContact,
      onSelf: (c) => this.selfSeenAt(c.address),
      ...(options.askPresumedDead ? {} : { presumedSilent: presumedDead }),
      query: (c) => this.query(c, target, quorum > 0),
      // A value lookup from a node that holds values counts its own empty store as an answer.
      ...(quorum > 0 && !this.opts.client ? { self: this.contact } : {}),
      ...(options.onValues ? { onValues: options.onValues } : {}),
      ...(quorum > 0
        ? {
            hedge: {
              afterMs: this.rtt.lateAfter(),
              schedule: (fn: () => void, ms: number) => {
                const timer = this.clock.setTimeout(fn, ms);
                return () => this.clock.clearTimeout(timer);
              },
            },
          }
        : {}),
    });
  }

  private async query(contact: Contact, target: NodeId, wantValue: boolean): Promise<QueryAnswer> {
    const res = await this.request(
      contact,
      wantValue ? { type: 'FIND_VALUE', key: target } : { type: 'FIND_NODE', target },
    );
    const body = res.body;
    if (body.type === 'NODES') return { contacts: body.contacts };
    if (body.type === 'VALUE') {
      const values: WireValue[] = [...body.values];
      // A holder with more values than one datagram carries is asked for the rest, page by page.
      let truncated = body.truncated === true && body.values.length > 0;
      for (let page = 1; truncated && page < MAX_VALUE_PAGES; page++) {
        const more = await this.request(contact, {
          type: 'FIND_VALUE',
          key: target,
          offset: values.length,
        });
        if (more.body.type !== 'VALUE' || more.body.values.length === 0) break;
        values.push(...more.body.values);
        truncated = more.body.truncated === true;
      }
      return { contacts: body.contacts, values: values.filter((v) => v.ttlMs > 0) };
    }
    throw new DhtError('ERR_REJECTED', `unexpected ${body.type} reply to a lookup`);
  }

  /**
   * Sends one request; on success the responder is a live contact, on failure it counts
   * against the contact. `expectId` is false only when pinging an address of unknown ID.
   */
  /**
   * `timeoutMs` overrides the contact's round-trip based timeout (the default) where a false
   * timeout costs more than waiting: a PING that decides whether a contact is evicted.
   */
  private async request(
    to: Contact,
    body: RequestBody,
    expectId = true,
    timeoutMs?: number,
  ): Promise<Response> {
    if (!this.running) throw new DhtError('ERR_STOPPED', 'node is stopped');
    this.stats.requestsOut++;
    const req: Request = this.opts.client
      ? { sender: this.id, client: true, body }
      : { sender: this.id, body };
    let res: Response;
    const rttKey = expectId ? pathKey(to) : '';
    const sentAt = this.clock.now();
    try {
      res = await this.transport.request(
        to,
        req,
        timeoutMs ?? (expectId ? this.rtt.timeout(rttKey) : this.opts.requestTimeoutMs),
      );
    } catch (err) {
      this.stats.requestFailures++;
      // Only silence counts against a contact; an error of our own (a value too large to
      // send, say) says nothing about the peer.
      if (expectId && err instanceof TimeoutError) {
        this.rtt.timedOut(rttKey, this.clock.now(), sentAt);
        this.recordFailure(to, sentAt);
      }
      throw err;
    }
    if (expectId && !idEquals(res.sender, to.id)) {
      // Someone else answers at that address now: the old contact is gone.
      this.stats.requestFailures++;
      this.recordFailure(to, sentAt);
      throw new DhtError('ERR_REJECTED', 'reply came from a different node id');
    }
    if (res.body.type === 'ERROR') {
      throw new DhtError('ERR_REJECTED', `peer error ${res.body.code}: ${res.body.message}`);
    }
    if (expectId) {
      this.rtt.sample(rttKey, this.clock.now() - sentAt);
      this.seen(to, true);
    }
    return res;
  }

  /**
   * A request to `to` failed: counted against its routing-table entry when it is listed at
   * that address (a liar can name any node at an address where nothing or another node
   * answers). A contact the table drops is kept for rejoin, at its listed address, and for
   * the next replication check (droppedLately); when that was the last one, the first
   * rejoin round starts at once (a stall of a few seconds need not cost a whole upkeep period
   * cut off).
   */
  private recordFailure(to: Contact, sentAt: number): void {
    const listed = this.table.get(to.id);
    if (listed && listed.address !== to.address) return;
    const silentSince = this.table.failingSince(to.id) ?? sentAt;
    if (!this.table.recordFailure(to.id, this.clock.now(), sentAt) || !listed) return;
    this.lost(listed, false, silentSince);
  }

  /**
   * A node said it leaves (LEAVE, sent from the address it is listed at): out of the routing
   * table now, and presumed dead by lookups (which others may still point to it) until it is
   * heard from again; otherwise as a contact dropped for silence (see lost).
   */
  private left(sender: Contact): void {
    const listed = this.table.get(sender.id);
    if (!listed || listed.address !== sender.address) return;
    this.table.remove(sender.id);
    this.rtt.left(pathKey(listed), this.clock.now());
    setLatest(this.leftAt, listed.address, this.clock.now(), MAX_REJOIN_ADDRESSES);
    this.lost(listed, true);
  }

  /** Puts a contact first among those to rejoin through (at most MAX_REJOIN_ADDRESSES). */
  private keepForRejoin(contact: Contact): void {
    const i = this.dropped.findIndex((c) => idEquals(c.id, contact.id));
    if (i >= 0) this.dropped.splice(i, 1);
    this.dropped.unshift(contact);
    if (this.dropped.length > MAX_REJOIN_ADDRESSES) this.dropped.pop();
  }

  /**
   * A contact the table dropped: kept for rejoin and for the next replication check. The last
   * one gone, the node tries to rejoin at once (not through nodes that just left: a PING would
   * reach the leaver while it still tells the others, and bring it back into the table as it
   * stops). When the last one said it leaves (`left`) and every address left to try said so
   * too, the others are gone, not out of reach: the node is alone (it serves what it holds, as
   * a founder does) and tries again at the upkeep checks.
   */
  private lost(listed: Contact, left = false, silentSince?: number): void {
    this.keepForRejoin(listed);
    const at = this.clock.now();
    setLatest(
      this.droppedLately,
      idToHex(listed.id),
      { id: listed.id, at, silentSince: silentSince ?? at },
      MAX_DROPPED_PER_CHECK,
    );
    if (this.table.size > 0 || this.lostRounds !== undefined) return;
    const others = this.rejoinAddresses().filter((a) => !this.leftAt.has(a));
    if (left && others.length === 0) {
      this.lostRounds = ALONE_AFTER_REJOIN_ROUNDS;
      return;
    }
    this.lostRounds = 0;
    void this.rejoin();
  }

  private schedule(name: Timer, intervalMs: number, task: () => unknown): void {
    // ±10% jitter keeps thousands of nodes from doing their upkeep in lockstep.
    const delay = intervalMs * (0.9 + 0.2 * this.random.next());
    const handle = this.clock.setTimeout(() => {
      if (!this.running) return;
      Promise.resolve()
        .then(task)
        .catch(() => undefined)
        .finally(() => {
          if (this.running) this.schedule(name, intervalMs, task);
        });
    }, delay);
    this.timers.set(name, handle);
  }
}

/**
 * A contact's ID at its address: round-trip estimates and silences are kept per path, so that
 * a timeout at an address someone else gave for a node says nothing about the node itself.
 */
function pathKey(c: Contact): string {
  return `${idToHex(c.id)}@${c.address}`;
}

/** Runs task over items with at most `limit` at once; failures are the task's own business. */
async function inParallel<T>(
  items: readonly T[],
  limit: number,
  task: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await task(item).catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Sets `key` as the newest entry of an insertion-ordered map of at most `max`, the oldest going. */
function setLatest<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) {
    const oldest = map.keys().next().value;
    if (oldest !== undefined) map.delete(oldest);
  }
}
