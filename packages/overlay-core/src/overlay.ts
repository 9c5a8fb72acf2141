// The overlay node: the DHT made safe. It owns the node's identity and data directory, runs
// Kademlia over signed UDP datagrams, stores only records that prove their writer, keeps them
// in LevelDB, and opens authenticated stream links to other nodes. What the SIP adapter calls.

import { statSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { basename, dirname } from 'node:path';
import {
  type Clock,
  type Contact,
  endpointKey,
  type FoundValue,
  formatEndpoint,
  idEquals,
  idToHex,
  KademliaNode,
  type LookupResult,
  type NodeId,
  NoPeersError,
  parseEndpoint,
  systemClock,
  type TraceStep,
  UdpTransport,
  ValueStore,
} from '@peerbx/dht-kademlia';
import { addCount, setBounded } from './bounded-map.js';
import {
  CLIENT_APPLICATION,
  type ClientRequest,
  type ClientResponse,
  decodeClientRequest,
  encodeClientResponse,
} from './client-protocol.js';
import {
  checkConfigSignature,
  configHash,
  kindById,
  type OverlayConfig,
  validateOverlayConfig,
} from './config/overlay-config.js';
import {
  KIND_NAME_CLAIM,
  KIND_NODE_INFO,
  MAX_KEYS_PER_STORER,
  MIN_BUCKET_SIZE,
  NODE_INFO_LIFETIME_MS,
  REPUBLISH_PERIODS,
} from './constants.js';
import { OverlayError } from './errors.js';
import {
  type DataDirPaths,
  ensureDataDir,
  loadNodeKey,
  lockDataDir,
  readSavedConfig,
  writeSavedConfig,
} from './identity/data-dir.js';
import { type KeyPair, meetsPuzzle, nodeIdOf } from './identity/keys.js';
import type { Channel } from './links/link.js';
import { LinkManager } from './links/link-manager.js';
import { type Logger, silentLogger } from './logger.js';
import { bytesEqual } from './storage/access.js';
import { decodeNodeInfo, encodeNodeInfo, type NodeInfo } from './storage/node-info.js';
import { PersistentStore } from './storage/persistent-store.js';
import {
  decodeRecord,
  encodeRecord,
  isTombstone,
  recordExpiresAt,
  recordSlot,
  resourceId,
  type StoredRecord,
} from './storage/record.js';
import { type PublishParams, RecordSigner } from './storage/record-signer.js';
import {
  checkFetched,
  createOverlayStoreOptions,
  createRecordValidator,
  type FetchedValue,
  NAME_CLAIM_SLOT,
  userKeyOf,
  verifyFetched,
} from './storage/record-store.js';
import { StorerShares } from './storage/storer-shares.js';
import { SignedDatagramCodec } from './transport/signed-codec.js';

export type { PublishParams } from './storage/record-signer.js';

export const SOFTWARE_VERSION = '0.1.0';

/** Requests of one client (OverlayClient) served at once; more are refused with ERR_LIMIT. */
export const MAX_CLIENT_REQUESTS_IN_FLIGHT = 64;
/** A holder sent a record version by read repair is not sent it again for this long. */
const REPAIR_AGAIN_AFTER_MS = 5 * 60_000;
/** A name's claim held here is checked against its other holders at most this often. */
const CLAIM_CHECK_AGAIN_MS = 10 * 60_000;
/** Names whose last claim check is remembered (for CLAIM_CHECK_AGAIN_MS). */
const MAX_CLAIM_CHECKS_REMEMBERED = 4096;
/** Claim checks (a lookup each) under way at once; more wait in line. */
const MAX_CLAIM_CHECKS_RUNNING = 2;
/** Claim checks waiting at most; beyond, a refusal starts none. */
const MAX_CLAIM_CHECKS_WAITING = 64;
/** Claim checks one sender's refused STOREs may have waiting or under way. */
const MAX_CLAIM_CHECKS_PER_SENDER = 4;
/** A claim check that has not ended by then frees its place (its lookup is left to end). */
const CLAIM_CHECK_TIMEOUT_MS = 10_000;
/**
 * How long after a claim came in a node may still settle it (settleClaim): the time a newcomer
 * takes to be handed the records it now holds, and to see each republished once. A claim held
 * longer is the owner's, and is given up to no one (review: a liar among a name's holders, its
 * fellow holders away a moment, could turn holder after holder). Nor is one read back from the
 * node's store at a restart (QA: a restart put a long-running holder back in its first hour).
 */
const CLAIM_SETTLE_WINDOW_MS = 60 * 60_000;
/** Names whose claim came in lately remembered at most (claimsArrived): a full store's worth. */
const MAX_CLAIMS_ARRIVED = 100_000;
/**
 * A claim a STORE brought to a newcomer is checked against the name's other holders this long
 * after (the hand-over of the nodes closest before has come by then): no STORE may ever be
 * refused there to start a check, when a liar's ID is the one closest to the name and no
 * honest node hands the name over (QA).
 */
const CLAIM_FIRST_CHECK_MS = 10_000;
/**
 * First checks in the line of claim checks (waiting or under way) at once: the rest of the
 * line stays for the checks refused STOREs start. The others wait their turn (firstChecksDue).
 */
const MAX_FIRST_CHECKS_IN_LINE = 16;
/**
 * First checks started per second at most: each is a lookup of k holders a liar's STORE of a
 * made-up name can cause, so a newcomer sends no more than this many lookups' requests for
 * them (the MAX_FIRST_CHECKS_WAITING that may wait take about 11 minutes).
 */
const MAX_FIRST_CHECKS_PER_S = 30;
/**
 * Claims a newcomer holds that wait for their first check, at most: beyond, it refuses a new
 * claim, for now (too-many-keys, as a full store does), rather than take it unchecked (review:
 * one a liar sent after enough made-up names went past its hour unchecked). At 30 a second,
 * ten minutes' worth; each waits as long as it takes, open to settling until checked.
 */
const MAX_FIRST_CHECKS_WAITING = 20_000;
/** Read repairs remembered (repairStale), the oldest forgotten first. */
const MAX_REPAIRS_REMEMBERED = 4096;
/** Holders a fetch waits for: with two, one stale or withholding replica is outvoted. */
const FETCH_QUORUM = 2;
/** Holders a NODE-INFO lookup for dialling waits for (connect() retries with FETCH_QUORUM). */
const NODE_INFO_QUICK_QUORUM = 1;

export interface FetchOptions {
  /**
   * Only other nodes' answers make the quorum, not this node's own copy, and one more of them
   * is awaited: for a second look when the first answer did not hold (a location that
   * failed), as this node's copy may be the stale one (it was away when the record changed),
   * and so may the first holder's to answer (QA: two of three holders had been away with it).
   */
  othersOnly?: boolean;
}

export interface ListenAddress {
  host: string;
  /** 0 picks a free port. */
  port: number;
}

export interface OverlayNodeOptions {
  dataDir: string;
  config: OverlayConfig;
  /** DHT datagrams (default 127.0.0.1, a free port). */
  udp?: ListenAddress;
  /** Stream links (default: the UDP host, a free port). */
  stream?: ListenAddress;
  /** Nodes to join through ("host:port" of their UDP); none founds a new overlay. */
  bootstrap?: string[];
  /** Stream addresses other nodes should dial, when the bound host is not reachable as is. */
  advertise?: string[];
  logger?: Logger;
  clock?: Clock;
  /** The most keys one other node's STOREs may bring to this node's store (MAX_KEYS_PER_STORER). */
  maxKeysPerStorer?: number;
  /**
   * Claim settling (settleClaim): how long after its start the node counts as a newcomer
   * (default CLAIM_SETTLE_WINDOW_MS), how long after a claim reached a newcomer the name is
   * checked (CLAIM_FIRST_CHECK_MS), and how many claims may wait for that check
   * (MAX_FIRST_CHECKS_WAITING). Tests shorten them.
   */
  claimSettling?: {
    newcomerForMs?: number;
    firstCheckAfterMs?: number;
    maxFirstChecksWaiting?: number;
  };
}

export interface PublishResult {
  record: StoredRecord;
  /** Nodes (this one included) that accepted the record. */
  replicas: number;
}

export interface OverlayStats {
  nodeId: string;
  udp: string;
  stream: string;
  /** isolated: it lost every contact lately and is rejoining (KademliaNode.isolated). */
  routingTable: { contacts: number; buckets: number; isolated: boolean };
  records: { total: number; byKind: Record<string, number> };
  published: number;
  messages: {
    datagramsIn: number;
    datagramsOut: number;
    requestsIn: Record<string, number>;
    requestsOut: number;
    requestFailures: number;
    lookups: number;
    /** Responses to no request of ours (late, unsolicited or from the wrong address): dropped. */
    unmatched: number;
    /** Holders a fetch found holding an older record than another holder, and sent the newer. */
    staleRepaired: number;
    /** Hand-overs to nodes new among the closest or back after silence, and the keys sent. */
    handOvers: number;
    keysHandedOver: number;
    /** Held keys the replication check stored again on their closest nodes. */
    keysReplicated: number;
  };
  rejections: {
    malformed: number;
    byReason: Record<string, number>;
    stores: Record<string, number>;
    contactsRefused: number;
    /** Fetched records left out: forged, or of a name two keys claim. */
    fetchedDropped: number;
    /** Fetches refused (ERR_UNREACHABLE) as k holders did not agree on a name's owner. */
    contestedFetches: number;
    /**
     * Name claims held here that most of the name's other holders did not hold: replaced by
     * theirs (a node had stored a claim of its own here first, on a newcomer say).
     */
    claimsReplaced: number;
    /** Checks of a name's claim against its other holders that ended (settleClaim). */
    claimsChecked: number;
    /**
     * Checks not ended yet: under way, in line, and claims that came in waiting for their first
     * check (a node in its first hour checks every one).
     */
    claimChecksWaiting: number;
    /** Requests of attached clients (peerbx.client channels) that did not decode. */
    clientRequestsMalformed: number;
  };
  links: number;
}

export interface PingResult {
  nodeId: string;
  address: string;
  rttMs: number;
}

export class OverlayNode {
  readonly nodeId: NodeId;
  readonly config: OverlayConfig;
  readonly configHash: Uint8Array;
  readonly dht: KademliaNode;
  readonly links: LinkManager;
  readonly keys: KeyPair;
  private readonly log: Logger;
  private readonly clock: Clock;
  /** Requests of each client node (by node-ID) under way (serveClient). */
  private readonly clientRequests = new Map<string, number>();
  /** Own records by DHT key and slot, so a newer one replaces the older in republishing. */
  private readonly published = new Map<
    string,
    { key: NodeId; bytes: Uint8Array; expiresAt: number }
  >();
  private readonly signer: RecordSigner;
  private nodeInfoTimer: ReturnType<Clock['setTimeout']> | undefined;
  private contactsTimer: ReturnType<Clock['setTimeout']> | undefined;
  /** The close under way or done: a second close() waits for the first. */
  private closing: Promise<void> | undefined;
  /** The contacts saved last, as saved (hex ID and address each), to skip unchanged saves. */
  private savedContacts = '';
  /** Read of the records published before the last stop, done (see republishSaved). */
  private savedLoaded: Promise<void> = Promise.resolve();
  private closed = false;
  /** Stale holders sent a newer record by a fetch (repairStale). */
  private staleRepaired = 0;
  /** Fetched records left out as forged or of a name two keys claim (see fetch). */
  private fetchedDropped = 0;
  /** Fetches that found a name claimed by two keys, and no owner among k holders. */
  private contestedFetches = 0;
  /** Claims held here that the name's other holders outvoted (checkClaim). */
  private claimsReplaced = 0;
  private claimsChecked = 0;
  /** When each name's claim was last checked against its other holders (settleClaim). */
  private readonly claimChecks = new Map<string, number>();
  private claimChecksRunning = 0;
  /** Names waiting for a claim check, each with the sender whose refused STORE asked for it. */
  private readonly claimChecksWaiting = new Map<string, string>();
  /** Claim checks waiting or under way per sender (hex). */
  private readonly claimChecksBy = new Map<string, number>();
  /**
   * When the claim held for a name came in by STORE where none was held, over the last
   * CLAIM_SETTLE_WINDOW_MS, oldest first: the claims a node may still settle (settleClaim).
   */
  private readonly claimsArrived = new Map<string, number>();
  /** When this node first started (its key was made): a newcomer for newcomerForMs. */
  private readonly startedAt: number;
  private readonly newcomerForMs: number;
  private readonly firstCheckAfterMs: number;
  private readonly maxFirstChecksWaiting: number;
  /**
   * Names whose claim came in while this node was a newcomer and awaits its first check, oldest
   * first, when it came in claimsArrived (claimArrived, nextFirstChecks): every one, at most
   * maxFirstChecksWaiting (QA: beyond 256 waiting, a claim was taken unchecked, and a liar could
   * send 256 first).
   */
  private readonly firstChecksDue = new Set<string>();
  private firstCheckTimer: ReturnType<Clock['setTimeout']> | undefined;
  /** The second the last first checks started in, and how many started in it. */
  private firstCheckSecond = 0;
  private firstChecksThisSecond = 0;
  /** Client requests that did not decode (serveClient). */
  private clientRequestsMalformed = 0;
  /** When each holder was last sent each record version by read repair (repairStale). */
  private readonly repairsSent = new Map<string, number>();

  private constructor(
    readonly paths: DataDirPaths,
    private readonly releaseLock: () => void,
    keys: KeyPair,
    config: OverlayConfig,
    readonly udp: UdpTransport,
    readonly codec: SignedDatagramCodec,
    links: LinkManager,
    dht: KademliaNode,
    private readonly persistent: PersistentStore,
    readonly store: ValueStore,
    private readonly shares: StorerShares,
    private readonly advertise: string[],
    log: Logger,
    clock: Clock,
    claimSettling: OverlayNodeOptions['claimSettling'] & { keyAgeMs?: number } = {},
  ) {
    this.keys = keys;
    this.nodeId = nodeIdOf(keys.publicKey);
    this.config = config;
    this.configHash = configHash(config);
    this.links = links;
    this.dht = dht;
    this.log = log;
    this.clock = clock;
    this.signer = new RecordSigner(paths, config, keys, clock);
    this.startedAt = clock.now() - (claimSettling.keyAgeMs ?? 0);
    this.newcomerForMs = claimSettling.newcomerForMs ?? CLAIM_SETTLE_WINDOW_MS;
    this.firstCheckAfterMs = claimSettling.firstCheckAfterMs ?? CLAIM_FIRST_CHECK_MS;
    this.maxFirstChecksWaiting = claimSettling.maxFirstChecksWaiting ?? MAX_FIRST_CHECKS_WAITING;
  }

  /** Opens the data directory, binds the sockets, joins (or founds) the overlay. */
  static async start(options: OverlayNodeOptions): Promise<OverlayNode> {
    const config = validateOverlayConfig(options.config);
    checkConfigSignature(config);
    const clock = options.clock ?? systemClock;
    const paths = ensureDataDir(options.dataDir);
    const release = lockDataDir(paths);
    const opened: { close(): Promise<void> }[] = [];
    try {
      if (readSavedConfig(paths) === undefined) writeSavedConfig(paths, config);
      const keys = loadNodeKey(paths, config.puzzleBits);
      // The node's age: that of its key, made at its first start (a restart is no newcomer).
      const keyAgeMs = Math.max(0, Date.now() - statSync(paths.nodeKey).mtimeMs);
      const nodeId = nodeIdOf(keys.publicKey);
      const log = (options.logger ?? silentLogger).child({
        component: 'overlay',
        node: idToHex(nodeId).slice(0, 16),
      });
      const hash = configHash(config);

      const persistent = new PersistentStore(paths.store, {
        onError: (err) => log.error({ err: err.message }, 'store write failed'),
      });
      await persistent.open();
      opened.push(persistent);
      const shares = new StorerShares(
        options.maxKeysPerStorer ?? MAX_KEYS_PER_STORER,
        idToHex(nodeId),
      );
      const store: ValueStore = new ValueStore({
        ...createOverlayStoreOptions(config, clock),
        onChange: (change) => {
          persistent.onChange(change);
          shares.changed(change, store);
        },
      });
      const validate = createRecordValidator(config, store, clock, { signaturesChecked: true });
      const loaded = await persistent.loadInto(store, clock.now(), {
        accept: (key, value) => validate(key, value, nodeId) === undefined,
      });

      const codec = new SignedDatagramCodec({
        keys,
        configHash: hash,
        overlayName: config.name,
        puzzleBits: config.puzzleBits,
        clock,
      });
      const udpAt = options.udp ?? { host: '127.0.0.1', port: 0 };
      const udp = await UdpTransport.bind({
        host: udpAt.host,
        port: udpAt.port,
        id: nodeId,
        codec,
        clock,
      }).catch((err) => {
        throw new OverlayError(
          'ERR_CONFIG',
          `cannot listen on UDP ${udpAt.host}:${udpAt.port}: ${(err as Error).message}`,
        );
      });
      opened.push(udp);
      const links = new LinkManager({
        keys,
        configHash: hash,
        puzzleBits: config.puzzleBits,
        role: 'peer',
        clock,
      });
      opened.push(links);
      const streamAt = options.stream ?? { host: udpAt.host, port: 0 };
      await links.listen(streamAt).catch((err: unknown) => {
        throw new OverlayError(
          'ERR_CONFIG',
          `cannot listen on TCP ${streamAt.host}:${streamAt.port}: ${(err as Error).message}`,
        );
      });

      const maintenance = config.dht.maintenanceIntervalMs;
      // Set once the node exists; STOREs, which call it, come after.
      let node: OverlayNode | undefined;
      const dht: KademliaNode = new KademliaNode({
        id: nodeId,
        transport: udp,
        clock,
        k: config.dht.k,
        bucketSize: MIN_BUCKET_SIZE,
        alpha: config.dht.alpha,
        disjointPaths: config.dht.disjointPaths,
        store,
        // STOREs from other nodes: an open overlay's user records only where they belong. Its
        // own (a put that found this node among the closest) are not asked. The closure runs
        // only for STOREs, after the constructor: dht is assigned by then.
        validateValue: createRecordValidator(config, store, clock, {
          responsible: (key, sender) =>
            idEquals(sender, nodeId) || dht.isResponsibleFor(key, sender),
          onOwnedByAnother: (resource, sender) => node?.settleClaim(resource, sender),
          onNewClaim: (resource, byWriter) => node?.claimArrived(resource, byWriter),
          shares,
        }),
        acceptContact: (c) =>
          meetsPuzzle(c.id, config.puzzleBits) && parseEndpoint(c.address) !== undefined,
        // Checked every period (a replica lost with a node that stopped answering is restored,
        // a store that missed a target is retried); what is stored everywhere goes hourly.
        upkeepCheckIntervalMs: maintenance,
        replicateIntervalMs: REPUBLISH_PERIODS * maintenance,
        republishIntervalMs: REPUBLISH_PERIODS * maintenance,
        expireCheckIntervalMs: maintenance,
        refreshIntervalMs: 15 * maintenance,
        watchStalls: true,
        isOwnAddress: (address) => isOwnAddress(address, udp.address),
        onIdentityClash: (address) =>
          log.warn(
            { address },
            "another node runs with this node's key there (a copy of its data directory?): other nodes reach one or the other; stop one, and give each node its own data directory",
          ),
        onStall: (ms, contacts) =>
          log.warn(
            { stalledMs: ms, contacts },
            'this node did not run for a while (stopped or suspended); telling its contacts it is back',
          ),
        // A node back after an outage getting what changed meanwhile is worth a line at the
        // default level; a newcomer among the closest is routine.
        onHandOver: (to, keys, back) => {
          const fields = { peer: idToHex(to.id), address: to.address, keys };
          if (back)
            log.info(fields, 'sending a node that is back what changed while it was silent');
          else log.debug(fields, 'sending a new neighbour the keys it is now among the closest to');
        },
      });
      node = new OverlayNode(
        paths,
        release,
        keys,
        config,
        udp,
        codec,
        links,
        dht,
        persistent,
        store,
        shares,
        options.advertise ?? [],
        log,
        clock,
        { ...options.claimSettling, keyAgeMs },
      );
      links.handle(CLIENT_APPLICATION, (channel) => node.serveClient(channel));
      dht.start();
      // The nodes known when this one last ran: a node that founded the overlay, or whose
      // bootstrap node is down, comes back through them (its peers dropped it when it left).
      const known = (await persistent.loadContacts()).filter((c) => !idEquals(c.id, nodeId));
      const bootstrap = options.bootstrap ?? config.bootstrap;
      if (bootstrap.length > 0) {
        try {
          // Known nodes to fall back on: one try of the bootstrap node (2 s), not three.
          await dht.bootstrap(bootstrap, known.length > 0 ? 1 : undefined);
        } catch (err) {
          // Only a silent bootstrap node: one that refused (another overlay, another version)
          // says something the user must act on, not something to work around.
          const silent = err instanceof NoPeersError && err.silent;
          const rejoined = silent && (await dht.rejoinThrough(known)) > 0;
          // None of those answered either: the one try may have been lost, so the bootstrap
          // node gets the tries it would have had before this start gives up.
          const retried =
            !rejoined &&
            silent &&
            known.length > 0 &&
            (await dht.bootstrap(bootstrap).then(
              () => true,
              () => false,
            ));
          if (!rejoined && !retried) {
            throw new OverlayError(
              'ERR_UNREACHABLE',
              `cannot join the overlay through ${bootstrap.join(', ')}: ${(err as Error).message}`,
            );
          }
          if (rejoined) {
            log.warn(
              { bootstrap, err: (err as Error).message, contacts: dht.table.size },
              'bootstrap node did not answer; joined through nodes known from the last run',
            );
          }
        }
      } else if (known.length > 0 && (await dht.rejoinThrough(known)) === 0) {
        log.warn(
          { known: known.length },
          'none of the nodes known from the last run answered; trying them again at each upkeep check',
        );
      }
      // The replicas still hold what this node published before it stopped, until it expires:
      // storing it again need not keep the node from serving.
      void node.republishSaved();
      await node.publishNodeInfo();
      log.info(
        {
          udp: udp.address,
          stream: links.address,
          contacts: dht.table.size,
          loaded: loaded.loaded,
        },
        dht.table.size > 0
          ? 'joined overlay'
          : known.length > 0
            ? 'rejoining overlay'
            : 'founded overlay',
      );
      // Saved now too, not only a maintenance period on: a node killed in its first minute
      // would come back with none, and without --bootstrap alone.
      await node.saveContacts();
      node.scheduleContactsSave();
      return node;
    } catch (err) {
      for (const o of opened.reverse()) await o.close().catch(() => undefined);
      release();
      throw err;
    }
  }

  get udpAddress(): string {
    return this.udp.address;
  }

  get streamAddress(): string {
    return this.links.address ?? '';
  }

  get contact(): Contact {
    return this.dht.contact;
  }

  // --- Storage -------------------------------------------------------------------------------

  /**
   * Signs and stores a record on the responsible peers, and keeps republishing it until it
   * expires or is replaced. User kinds are signed by the local user's key; in open mode the
   * user's name claim is stored (or refreshed) with it: both share the resource key, so one
   * lookup finds the peers for both, and each peer gets the claim before the record. Throws
   * ERR_FORBIDDEN with the storing peers' reason when every one of them refused the record,
   * ERR_UNREACHABLE when none stored it otherwise (silent, or not among the closest).
   */
  async publish(params: PublishParams): Promise<PublishResult> {
    const { claim, record, keyFile } = await this.signer.sign(params);
    try {
      if (!claim) return await this.storeRecord(record);
      const [, stored] = await this.storeRecords([claim, record], () =>
        this.signer.claimStored(claim),
      );
      return stored as PublishResult;
    } catch (err) {
      // A key file copied in that is not the one owning the name (from the wrong node, say)
      // takes the place of the key this node derives: the refusal names it, so it can go.
      if (keyFile && err instanceof OverlayError && err.code === 'ERR_FORBIDDEN') {
        const file = `${basename(dirname(keyFile))}/${basename(keyFile)}`;
        throw new OverlayError('ERR_FORBIDDEN', `${err.message} (signed with ${file})`, {
          cause: err,
        });
      }
      throw err;
    }
  }

  /** Stores an already signed record (one of ours, or a client's) and republishes it. */
  async storeRecord(record: StoredRecord): Promise<PublishResult> {
    const [stored] = await this.storeRecords([record]);
    return stored as PublishResult;
  }

  /**
   * Stores records of one resource (so one DHT key) after a single lookup, each peer getting
   * them in order. A record no peer stored throws (ERR_FORBIDDEN with a peer's reason, else
   * ERR_UNREACHABLE); neither it nor the ones after it are republished then. `onFirstStored`
   * runs once the first record is known stored.
   */
  private async storeRecords(
    records: readonly StoredRecord[],
    onFirstStored?: () => void,
  ): Promise<PublishResult[]> {
    const first = records[0];
    if (!first) return [];
    const key = resourceId(first.resource);
    const now = this.clock.now();
    const items = records.map((record) => {
      if (!idEquals(resourceId(record.resource), key))
        throw new OverlayError('ERR_LIMIT', 'records stored together must share the resource');
      const expiresAt = recordExpiresAt(record);
      const ttlMs = expiresAt - now;
      if (ttlMs <= 0)
        throw new OverlayError('ERR_LIMIT', 'record lifetime is over before it was stored');
      return {
        record,
        id: `${idToHex(key)}/${recordSlot(record)}`,
        bytes: encodeRecord(record),
        expiresAt,
        ttlMs,
      };
    });
    // Slots where this node's record is live and signed by the same key: a refresh or a change
    // of its own, not a first claim (nor one by a key file copied in since, nor a claim made
    // again after its own lapsed and another key took the name).
    const ours = items.map((it) => {
      const previous = this.published.get(it.id);
      return previous !== undefined && previous.expiresAt > now && sameSigner(previous, it.record);
    });
    for (const it of items) {
      const previous = this.published.get(it.id);
      if (previous) this.dht.unpublish(previous.key, previous.bytes);
    }
    const puts = await this.dht.putMany(
      key,
      items.map((it) => ({ value: it.bytes, ttlMs: it.ttlMs })),
    );
    const out: PublishResult[] = [];
    for (const [i, it] of items.entries()) {
      const put = puts[i];
      // A first record for its slot refused as invalid by more of its holders than took it: a
      // name another key claimed, say, taken only by holders that had not heard of the claim
      // (one that came to hold it since another died). The holders' verdict stands, not the
      // copies that slipped through. A record of a slot this node published before is kept
      // wherever a holder takes it: a lying holder and another it fed a claim of its own
      // outvote the owner's fetches, but must not make the owner stop defending its name.
      const invalid = put?.rejected.filter((r) => r.reason === 'invalid').length ?? 0;
      const outvoted = !ours[i] && invalid > (put?.stored.length ?? 0);
      if (!put || put.stored.length === 0 || outvoted) {
        // Neither republished nor left in this node's own store, which may have taken it.
        for (const later of items.slice(i)) this.dht.withdraw(key, later.bytes);
        // Refused by nodes that are not among the closest (their tables know closer ones):
        // the record found no place, which is not a verdict on the record itself.
        const reason =
          put?.rejected.find((r) => r.reason === 'invalid') ??
          put?.rejected.find((r) => r.reason !== 'not-responsible' && r.reason !== 'too-many-keys');
        if (reason) {
          throw new OverlayError(
            'ERR_FORBIDDEN',
            reason.detail ?? `record refused: ${reason.reason}`,
          );
        }
        // Full stores are no verdict on the record either: it may find room later.
        const full = put?.rejected.find((r) => r.reason === 'too-many-keys');
        if (full) {
          throw new OverlayError(
            'ERR_FULL',
            `no room for the record on the nodes that hold it (${full.detail ?? 'store full'})`,
          );
        }
        throw new OverlayError(
          'ERR_UNREACHABLE',
          put?.rejected.length
            ? 'no peer stored the record: the peers asked know peers closer to it (try again)'
            : 'no peer stored the record (is the overlay reachable?)',
        );
      }
      this.published.set(it.id, { key, bytes: it.bytes, expiresAt: it.expiresAt });
      await this.persistent.savePublished(it.id, it.bytes, it.expiresAt);
      if (i === 0) onFirstStored?.();
      out.push({ record: it.record, replicas: put.stored.length });
    }
    return out;
  }

  /**
   * Fetches a resource's records from the overlay and verifies each one again (signatures,
   * policy, name claim): a storing peer is never trusted. `kind` filters the result.
   */
  fetch(resource: string, kind?: number, options: FetchOptions = {}): Promise<StoredRecord[]> {
    const othersOnly = options.othersOnly === true;
    return this.fetchRecords(resource, kind, FETCH_QUORUM + (othersOnly ? 1 : 0), othersOnly);
  }

  /** fetch() with the number of holders whose answers are awaited (see FETCH_QUORUM). */
  private async fetchRecords(
    resource: string,
    kind: number | undefined,
    quorum: number,
    othersOnly = false,
  ): Promise<StoredRecord[]> {
    // The first holders' answers are checked as they arrive, while the lookup waits for the
    // holder that completes its quorum: the signatures found good are remembered
    // (verifyRemembered), so verifyFetched below finds them done. A value that can never pass
    // (a forged signature, say) is logged and left out then, so it costs one check, not one
    // per holder and another at the end; a verdict that may depend on the time is left to
    // verifyFetched.
    const key = resourceId(resource);
    const refused = new Set<string>();
    const dropped = (detail: string): void => {
      this.fetchedDropped++;
      this.log.warn({ resource, detail }, 'dropped a fetched record');
    };
    const precheck = (values: readonly { value: Uint8Array }[]): void => {
      const context = { config: this.config, now: this.clock.now() };
      for (const { value } of values) {
        const id = contentKey(value);
        if (refused.has(id)) continue;
        const checked = checkFetched(value, resource, key, context);
        if (!('problem' in checked) || !checked.lasting) continue;
        refused.add(id);
        dropped(checked.problem);
      }
    };
    let contested = false;
    const verify = (result: LookupResult) =>
      verifyFetched(distinctValues(result.values, refused), resource, kind, this.config, {
        now: this.clock.now(),
        onDrop: dropped,
        onContested: () => {
          contested = true;
        },
        onStale: (newest, holders) => this.repairStale(resource, result, newest, holders),
      });
    let records = verify(await this.lookupValues(resource, quorum, precheck, othersOnly));
    if (contested && quorum < this.config.dht.k) {
      // Name claims of two keys, as many holders behind each: a holder lies. The lookup waits
      // for the answers of k holders instead, and the key most of them return is the owner.
      contested = false;
      records = verify(await this.lookupValues(resource, this.config.dht.k, precheck));
    }
    if (contested && records.length === 0) {
      // Still no owner: the user may well be registered, so "not found" would be a lie.
      this.contestedFetches++;
      throw new OverlayError(
        'ERR_UNREACHABLE',
        `the holders of ${resource} disagree on which key owns the name (one of them lies)`,
      );
    }
    return records;
  }

  /**
   * Read repair: holders that returned an older record than the newest the fetch found (they
   * were away while it was stored: a stalled node, a partition) are sent the newest, in the
   * background. Otherwise each fetch that reached them first would find the old record until
   * it expired: a device that had unregistered still rung, or flipping between found and not.
   * The holders check it as any STORE; nothing is sent where all holders agree.
   */
  private repairStale(
    resource: string,
    result: LookupResult,
    newest: { record: StoredRecord; value: Uint8Array },
    holders: ReadonlySet<string>,
  ): void {
    const now = this.clock.now();
    const version = `${resource}/${recordSlot(newest.record)}/${newest.record.storedAt}`;
    const targets = new Map<string, Contact>();
    for (const { holder } of result.values) {
      const hex = idToHex(holder.id);
      if (!holders.has(hex) || targets.has(hex)) continue;
      // One try per holder and version a while: a holder that refuses it (not responsible,
      // full) is not sent it again at every fetch.
      const sent = this.repairsSent.get(`${hex}/${version}`);
      if (sent !== undefined && now - sent < REPAIR_AGAIN_AFTER_MS) continue;
      setBounded(this.repairsSent, `${hex}/${version}`, now, MAX_REPAIRS_REMEMBERED);
      targets.set(hex, holder);
    }
    const ttlMs = recordExpiresAt(newest.record) - now;
    if (targets.size === 0 || ttlMs <= 0) return;
    this.staleRepaired += targets.size;
    this.log.debug(
      { resource, holders: [...targets.keys()] },
      'sending the newest record to stale holders',
    );
    this.dht
      .storeAt([...targets.values()], resourceId(resource), [{ value: newest.value, ttlMs }])
      .catch(() => undefined);
  }

  /**
   * A STORE for a name was refused here as the claim held here is another key's. In an open
   * overlay the first claim a node gets for a name is the one it keeps, and a node that joins
   * holds none yet: a node that lies can store a claim of its own there before the hand-over
   * brings the owner's, which would then be refused for as long as that claim lasts; so can it
   * on a node that has just become one of a name's holders. So, for CLAIM_SETTLE_WINDOW_MS after
   * a STORE brought it where no claim was held, the node puts the claim to the name's other holders
   * (a lookup of k of them, this node left out): when another key's claim is held by more of
   * them than hold its own claim, itself and the holders that did not answer counted too, by
   * more than any third key's, and by most of the holders asked, it takes that claim and that
   * key's records in their place. A tie keeps the claim held. Once per name every
   * CLAIM_CHECK_AGAIN_MS; a few at a time, the rest in line, a few per sender (a liar's
   * refused STOREs must not keep the place of a hand-over's), each for at most
   * CLAIM_CHECK_TIMEOUT_MS.
   */
  private settleClaim(resource: string, sender: NodeId | undefined): 'queued' | 'full' | 'no' {
    const now = this.clock.now();
    const arrived = this.claimsArrived.get(resource);
    // A claim waiting for its first check is open to settling until checked, its hour over or
    // not (review: a liar's claim behind enough made-up names would never be).
    const pending = sender === undefined && this.firstChecksDue.has(resource);
    if (this.closed) return 'no';
    if (!pending && (arrived === undefined || now - arrived > CLAIM_SETTLE_WINDOW_MS)) return 'no';
    // A first check runs even if a refused STORE had one run lately (a liar can have one run
    // at once, while the vote still favours it, re-check).
    const last = this.claimChecks.get(resource);
    if (sender !== undefined && last !== undefined && now - last < CLAIM_CHECK_AGAIN_MS)
      return 'no';
    if (this.claimChecksWaiting.has(resource)) return 'no';
    // A first check (no sender) counts against no sender: the liar it is for wrote the claim.
    const by = sender === undefined ? '' : idToHex(sender);
    if (by !== '' && (this.claimChecksBy.get(by) ?? 0) >= MAX_CLAIM_CHECKS_PER_SENDER) return 'no';
    if (this.claimChecksWaiting.size >= MAX_CLAIM_CHECKS_WAITING) return 'full';
    addCount(this.claimChecksBy, by, 1);
    this.claimChecksWaiting.set(resource, by);
    this.nextClaimCheck();
    return 'queued';
  }

  /**
   * A claim was taken by STORE for a name that had none here (claimsArrived). One its own
   * writer stored (`byWriter`: an owner's node publishing its user, or a liar storing its own
   * claim) counts only at a newcomer: at a node that first started longer ago it is an owner's
   * first publication, and were it open to settling, a few IDs chosen near the name could turn
   * the holders of every name registered in the last hour (review). At a newcomer every claim
   * that came in has its name checked a while later.
   */
  private claimArrived(resource: string, byWriter: boolean): string | undefined {
    const now = this.clock.now();
    const newcomer = now - this.startedAt <= this.newcomerForMs;
    if (byWriter && !newcomer) return undefined;
    const waiting = this.firstChecksDue.size;
    if (newcomer && !this.firstChecksDue.has(resource) && waiting >= this.maxFirstChecksWaiting) {
      return `${waiting} name claims wait for a check at this node (in its first hour): try again later`;
    }
    this.claimsArrived.delete(resource);
    this.claimsArrived.set(resource, now);
    for (const [name, at] of this.claimsArrived) {
      if (now - at <= CLAIM_SETTLE_WINDOW_MS && this.claimsArrived.size <= MAX_CLAIMS_ARRIVED) {
        break;
      }
      this.claimsArrived.delete(name);
    }
    // At a newcomer, every claim that came in is checked (a liar can sign its claim with a
    // node key of no node, or have a newcomer it fed pass it on: re-check).
    if (newcomer) {
      this.firstChecksDue.delete(resource);
      this.firstChecksDue.add(resource);
      this.nextFirstChecks();
    }
    return undefined;
  }

  /**
   * Puts the first checks that are due (firstCheckAfterMs after their claim came in) in the
   * line of claim checks, oldest first, while fewer than MAX_FIRST_CHECKS_IN_LINE are in it, it
   * has room, and fewer than MAX_FIRST_CHECKS_PER_S went in this second; called again when a
   * check ends, or when the next one is due or may go.
   */
  private nextFirstChecks(): void {
    const now = this.clock.now();
    const second = Math.floor(now / 1000);
    if (second !== this.firstCheckSecond) {
      this.firstCheckSecond = second;
      this.firstChecksThisSecond = 0;
    }
    for (const resource of this.firstChecksDue) {
      if (this.closed || (this.claimChecksBy.get('') ?? 0) >= MAX_FIRST_CHECKS_IN_LINE) return;
      // Gone from claimsArrived (over an hour, or 100,000 since): due long ago.
      const at = this.claimsArrived.get(resource) ?? 0;
      const full = this.firstChecksThisSecond >= MAX_FIRST_CHECKS_PER_S;
      const wait = Math.max(at + this.firstCheckAfterMs - now, full ? 1000 - (now % 1000) : 0);
      if (wait > 0) {
        this.firstCheckTimer ??= this.clock.setTimeout(() => {
          this.firstCheckTimer = undefined;
          this.nextFirstChecks();
        }, wait);
        return;
      }
      const queued = this.settleClaim(resource, undefined);
      if (queued === 'full') return;
      if (queued === 'queued') this.firstChecksThisSecond++;
      this.firstChecksDue.delete(resource);
    }
  }

  /** Starts the claim checks waiting, while fewer than MAX_CLAIM_CHECKS_RUNNING run. */
  private nextClaimCheck(): void {
    while (this.claimChecksRunning < MAX_CLAIM_CHECKS_RUNNING && !this.closed) {
      const next = this.claimChecksWaiting.entries().next();
      if (next.done) return;
      const [resource, by] = next.value;
      this.claimChecksWaiting.delete(resource);
      setBounded(this.claimChecks, resource, this.clock.now(), MAX_CLAIM_CHECKS_REMEMBERED);
      this.claimChecksRunning++;
      let timer: ReturnType<Clock['setTimeout']> | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = this.clock.setTimeout(resolve, CLAIM_CHECK_TIMEOUT_MS);
      });
      void Promise.race([this.checkClaim(resource), timeout])
        .catch((err: unknown) =>
          this.log.debug({ resource, err: (err as Error).message }, 'name claim not checked'),
        )
        .finally(() => {
          if (timer !== undefined) this.clock.clearTimeout(timer);
          this.claimsChecked++;
          this.claimChecksRunning--;
          addCount(this.claimChecksBy, by, -1);
          this.nextClaimCheck();
          this.nextFirstChecks();
        });
    }
  }

  private async checkClaim(resource: string): Promise<void> {
    const key = resourceId(resource);
    // A claim of this node's own user, which it published: never given up (a poisoned
    // majority would otherwise have the user refused at its own node, QA), so not looked up.
    if (this.published.has(`${idToHex(key)}/${NAME_CLAIM_SLOT}`)) return;
    const result = await this.lookupValues(resource, this.config.dht.k, undefined, true);
    if (this.closed) return;
    const now = this.clock.now();
    const held = this.store.entries(key, now);
    const heldClaim = held.find((e) => e.slot === NAME_CLAIM_SLOT);
    const heldOwner = heldClaim && userKeyOf(heldClaim.stored.value);
    if (!heldOwner) return;
    // The holders behind each key's live claim, as a fetch counts them. This node's own claim
    // counts as one more holder: a key must lead it and the others that hold it together. At a
    // newcomer's first check too: without it, an honest node in its first hour (every node of
    // a young overlay) gave the name up to a liar and a newcomer it had fed a moment before,
    // two against the owner's node (QA of 5663d3b), and the poison spread from there.
    // Only the k closest that answered vote (values from nodes further out count for nothing).
    const closest = new Set(result.closest.map((c) => idToHex(c.id)));
    const others = result.values.filter(
      (v) => !idEquals(v.holder.id, this.nodeId) && closest.has(idToHex(v.holder.id)),
    );
    const checked = distinctValues(others, new Set()).flatMap(({ value, holders }) => {
      const c = checkFetched(value, resource, key, { config: this.config, now });
      return 'record' in c ? [{ value, record: c.record, holders: holders ?? new Set() }] : [];
    });
    const behind = new Map<string, Set<string>>();
    for (const { record, holders } of checked) {
      if (record.kind !== KIND_NAME_CLAIM || isTombstone(record) || !record.user) continue;
      const id = Buffer.from(record.user.publicKey).toString('hex');
      const set = behind.get(id) ?? new Set<string>();
      for (const h of holders) set.add(h);
      behind.set(id, set);
    }
    const heldId = Buffer.from(heldOwner).toString('hex');
    const [first, second] = [...behind].sort((x, y) => y[1].size - x[1].size);
    if (!first || first[0] === heldId || (second && second[1].size >= first[1].size)) return;
    // Holders away a moment count for the claim held here: their votes are missing, and must
    // not let a liar among the others lead (review).
    const silent = result.closestSilent;
    if (first[1].size <= (behind.get(heldId)?.size ?? 0) + 1 + silent) return;
    // And a majority of the name's holders: the k closest, or as many as the overlay has (with
    // the default k of 20, an overlay of under 12 nodes never had a majority of k, and a
    // newcomer fed a false claim first kept it for good, QA).
    const holders = Math.min(this.config.dht.k, closest.size + silent);
    if (2 * first[1].size <= holders) return;
    const owner = Buffer.from(first[0], 'hex');
    // Out go the claim and every record its key signed; in come the owner's, as checked as a
    // STORE of them would be.
    for (const { stored } of held) {
      const signer = userKeyOf(stored.value);
      if (signer && bytesEqual(signer, heldOwner)) this.store.deleteValue(key, stored.value);
    }
    const validate = createRecordValidator(this.config, this.store, this.clock);
    const theirs = checked
      .filter(({ record }) => record.user && bytesEqual(record.user.publicKey, owner))
      .sort(
        (x, y) =>
          Number(y.record.kind === KIND_NAME_CLAIM) - Number(x.record.kind === KIND_NAME_CLAIM),
      );
    for (const { value, record } of theirs) {
      if (validate(key, value, this.nodeId) === undefined) {
        this.store.put(key, value, recordExpiresAt(record), now);
      }
    }
    this.claimsReplaced++;
    this.log.warn(
      {
        resource,
        held: Buffer.from(heldOwner).toString('hex'),
        owner: Buffer.from(owner).toString('hex'),
      },
      "replaced this node's claim of a name with the one most of its other holders hold (a node had stored a false claim here)",
    );
  }

  /**
   * The values found under a resource. Throws ERR_UNREACHABLE where "nothing found" would not
   * mean "no such record": nobody answered, or most of the nodes closest to it (this one
   * included) were silent, overloaded or dying together, and the record may well be there; or
   * this node lost every contact it had (KademliaNode.isolated) and asked nobody.
   */
  private async lookupValues(
    resource: string,
    quorum: number,
    onValues?: (values: readonly { value: Uint8Array }[]) => void,
    othersOnly = false,
  ): Promise<LookupResult> {
    const result = await this.dht.get(resourceId(resource), {
      quorum,
      othersOnly,
      ...(onValues ? { onValues } : {}),
    });
    if (result.values.length > 0) return result;
    this.inTouch(`${resource} not looked up`);
    if (result.requests > 0 && result.failures === result.requests) {
      throw new OverlayError(
        'ERR_UNREACHABLE',
        `no peer answered the lookup of ${resource} (${result.requests} asked)`,
      );
    }
    const silent = result.closestSilent;
    if (2 * silent > result.closestAsked) {
      throw new OverlayError(
        'ERR_UNREACHABLE',
        `${silent} of the ${result.closestAsked} nodes closest to ${resource} did not answer`,
      );
    }
    return result;
  }

  private async publishNodeInfo(): Promise<void> {
    if (this.closed) return;
    const info: NodeInfo = {
      streamPort: parseEndpoint(this.links.address ?? '')?.port ?? 0,
      streamAddresses: this.advertise,
      version: SOFTWARE_VERSION,
      role: 'peer',
    };
    try {
      await this.publish({
        kind: KIND_NODE_INFO,
        resource: idToHex(this.nodeId),
        value: encodeNodeInfo(info),
        lifetimeMs: NODE_INFO_LIFETIME_MS,
      });
    } catch (err) {
      this.log.warn(
        { err: (err as Error).message },
        'NODE-INFO not stored; retrying at the next period',
      );
    }
    this.nodeInfoTimer = this.clock.setTimeout(
      () => void this.publishNodeInfo(),
      NODE_INFO_LIFETIME_MS / 2,
    );
  }

  /**
   * Keeps contacts to rejoin through on disk, every maintenance period and at close, so that
   * a restart (a kill -9 too) finds its way back into the overlay without --bootstrap. A
   * table emptied by an outage keeps the contacts saved before it.
   */
  private async saveContacts(): Promise<void> {
    if (this.closed) return;
    const contacts = this.dht.rejoinContacts();
    const saved = contacts.map((c) => `${idToHex(c.id)}@${c.address}`).join(' ');
    if (contacts.length === 0 || saved === this.savedContacts) return;
    try {
      await this.persistent.saveContacts(contacts);
      this.savedContacts = saved;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'contacts not saved');
    }
  }

  /**
   * Forgets this node's own records that expired (a user who stopped registering, a device
   * removed), in memory and on disk: a node that runs for months with users coming and going
   * keeps only the live ones. Nothing else changes, as an expired record of its own counts for
   * nothing (not republished, not "ours", not in ownRecords).
   */
  private async forgetExpired(): Promise<void> {
    const now = this.clock.now();
    this.signer.forgetLapsedClaims(now);
    for (const [id, own] of this.published) {
      if (this.closed) return;
      if (own.expiresAt > now) continue;
      this.published.delete(id);
      try {
        await this.persistent.deletePublished(id);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'expired record not deleted from disk');
        return;
      }
    }
  }

  private scheduleContactsSave(): void {
    this.contactsTimer = this.clock.setTimeout(() => {
      void Promise.all([this.saveContacts(), this.forgetExpired()]).finally(() => {
        if (!this.closed) this.scheduleContactsSave();
      });
    }, this.config.dht.maintenanceIntervalMs);
  }

  /**
   * After a restart: the records this node published before are stored again, one lookup per
   * resource (its name claim first), a few resources at a time. Never rejects.
   */
  private async republishSaved(): Promise<void> {
    const loading = this.loadSaved();
    this.savedLoaded = loading.then(() => undefined);
    const saved = await loading;
    saved.sort((x, y) => claimRank(x.id) - claimRank(y.id));
    await this.dht.putAll(saved.map(({ key, value, expiresAt }) => ({ key, value, expiresAt })));
  }

  /** The saved records still live and not replaced since start, now counted as published. */
  private async loadSaved(): Promise<
    { id: string; key: NodeId; value: Uint8Array; expiresAt: number }[]
  > {
    const saved: { id: string; key: NodeId; value: Uint8Array; expiresAt: number }[] = [];
    try {
      for (const entry of await this.persistent.loadPublished(this.clock.now())) {
        const key = idFromPublishedId(entry.id);
        // Written since start (a new NODE-INFO, a registration): newer than what was saved.
        if (!key || this.published.has(entry.id)) continue;
        this.published.set(entry.id, { key, bytes: entry.record, expiresAt: entry.expiresAt });
        saved.push({ id: entry.id, key, value: entry.record, expiresAt: entry.expiresAt });
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot read the records published before');
    }
    return saved;
  }

  /**
   * This node's own live records of `kind` (in the slot of `dictionaryKey`, for dictionary
   * kinds), whatever the resource: those it published since start, and those from before its
   * last stop that it stores again after a restart (republishSaved). A writer back from a
   * restart can then tell what the overlay holds of it, instead of writing it all again.
   */
  async ownRecords(kind: number, dictionaryKey?: Uint8Array): Promise<StoredRecord[]> {
    await this.savedLoaded;
    const slot = `/${recordSlot({ kind, ...(dictionaryKey ? { dictionaryKey } : {}) })}`;
    const out: StoredRecord[] = [];
    for (const [id, own] of this.published) {
      const record = id.endsWith(slot) ? this.liveOwn(own) : undefined;
      if (record) out.push(record);
    }
    return out;
  }

  private liveOwn(own: { bytes: Uint8Array; expiresAt: number } | undefined) {
    if (!own || own.expiresAt <= this.clock.now()) return undefined;
    try {
      return decodeRecord(own.bytes);
    } catch {
      return undefined;
    }
  }

  // --- Links ---------------------------------------------------------------------------------

  /**
   * A reliable, ordered channel to the node that owns nodeId, for `application` (say "sip").
   * The link is found through the overlay, reused while open, re-dialled when it broke.
   */
  async connect(nodeId: NodeId, application: string): Promise<Channel> {
    // The first valid NODE-INFO found is dialled: the handshake proves the node-ID, so a wrong
    // address costs a failed dial, never a link to the wrong node. Only an old NODE-INFO (the
    // node has moved since) is worth a second try, with what the full quorum says.
    let quick: string | undefined;
    try {
      return await this.links.connect(nodeId, application, async (id) => {
        quick = await this.resolveStreamAddress(id, { quorum: NODE_INFO_QUICK_QUORUM });
        return quick;
      });
    } catch (err) {
      const dialFailed = err instanceof OverlayError && err.code === 'ERR_UNREACHABLE';
      if (quick === undefined || !dialFailed || this.closed) throw err;
      const full = await this.resolveStreamAddress(nodeId);
      if (full === quick) throw err;
      return this.links.connect(nodeId, application, async () => full);
    }
  }

  /**
   * Where a node's stream links listen: its NODE-INFO, at the host its DHT traffic uses.
   * `quorum` 1 takes the first holder's NODE-INFO that verifies (a quicker answer that may be
   * an older one); the default asks as many holders as fetch().
   */
  async resolveStreamAddress(nodeId: NodeId, options: { quorum?: number } = {}): Promise<string> {
    // Looked up alongside the NODE-INFO rather than after it: a node that advertises no
    // address is dialled at the host of its DHT contact.
    const contact = this.findContact(nodeId);
    contact.catch(() => undefined);
    const hex = idToHex(nodeId);
    const quorum = options.quorum ?? FETCH_QUORUM;
    let [info] = await this.fetchRecords(hex, KIND_NODE_INFO, quorum);
    // The quick answer did not verify (or was a tombstone): ask the full quorum before giving up.
    if (!info && quorum < FETCH_QUORUM)
      [info] = await this.fetchRecords(hex, KIND_NODE_INFO, FETCH_QUORUM);
    if (!info)
      throw new OverlayError(
        'ERR_NOT_FOUND',
        `node ${hex.slice(0, 16)}… has no NODE-INFO in the overlay`,
      );
    const ni = decodeNodeInfo(info.value);
    const ep = parseEndpoint((await contact).address);
    // A node's word for where to dial it counts on the host its overlay traffic comes from
    // only: taken anywhere, a member had callers' nodes connect to whatever host and port it
    // named (QA: a port probe, at one call each).
    const onHost = (a: string) => {
      const ip = parseEndpoint(a)?.ip;
      return ep !== undefined && ip !== undefined && bytesEqual(ip, ep.ip);
    };
    const own = ni.streamAddresses.find(onHost);
    if (own) return own;
    if (!ep)
      throw new OverlayError('ERR_UNREACHABLE', `no usable address for node ${hex.slice(0, 16)}…`);
    return formatEndpoint(ep.ip, ni.streamPort);
  }

  /** Answers an attached client's requests on its channel (see client-protocol.ts). */
  serveClient(channel: Channel): void {
    // Each request costs DHT lookups: a client gets so many under way at once, over all its
    // channels, not as many as it can send (a client is any node that completed a link
    // handshake).
    const client = idToHex(channel.remoteNodeId);
    channel.on('message', (bytes: Uint8Array) => {
      let req: ClientRequest;
      try {
        req = decodeClientRequest(bytes);
      } catch (err) {
        // The client's doing, as a datagram that does not decode is: counted, no warning.
        this.clientRequestsMalformed++;
        this.log.debug({ client, err: (err as Error).message }, 'malformed client request');
        return;
      }
      const underWay = this.clientRequests.get(client) ?? 0;
      if (underWay >= MAX_CLIENT_REQUESTS_IN_FLIGHT) {
        this.replyToClient(channel, {
          id: req.id,
          ok: false,
          code: 'ERR_LIMIT',
          message: `${MAX_CLIENT_REQUESTS_IN_FLIGHT} requests of this client are under way; wait for their answers`,
        });
        return;
      }
      addCount(this.clientRequests, client, 1);
      this.clientOp(req)
        .finally(() => addCount(this.clientRequests, client, -1))
        .then(
          (result) => this.replyToClient(channel, { id: req.id, ok: true, result }),
          (err: unknown) =>
            this.replyToClient(channel, {
              id: req.id,
              ok: false,
              code: err instanceof OverlayError ? err.code : 'ERR',
              message: (err as Error).message,
            }),
        );
    });
  }

  private async clientOp(req: ClientRequest): Promise<unknown> {
    switch (req.op) {
      case 'store': {
        if (!(req.arg instanceof Uint8Array))
          throw new OverlayError('ERR_MALFORMED', 'store takes record bytes');
        const record = decodeRecord(req.arg);
        // The storing peers check it; checking here too spares the overlay a useless STORE.
        // A client's records count against its own share (it wrote them), here as anywhere.
        const verdict = createRecordValidator(this.config, this.store, this.clock, {
          shares: this.shares,
        })(resourceId(record.resource), req.arg, this.nodeId);
        if (verdict) {
          const code = verdict.reason === 'too-many-keys' ? 'ERR_FULL' : 'ERR_FORBIDDEN';
          throw new OverlayError(code, verdict.detail ?? verdict.reason);
        }
        return (await this.storeRecord(record)).replicas;
      }
      case 'fetch': {
        if (typeof req.arg !== 'string')
          throw new OverlayError('ERR_MALFORMED', 'fetch takes a resource name');
        // The records this peer's own check kept (newest per slot, claims of two keys weighed
        // by their holders, which the client cannot see), for the client to check again.
        return (await this.fetchRecords(req.arg, undefined, FETCH_QUORUM)).map(encodeRecord);
      }
      case 'resolve': {
        if (!(req.arg instanceof Uint8Array) || req.arg.length !== 32)
          throw new OverlayError('ERR_MALFORMED', 'resolve takes a node-ID');
        return this.resolveStreamAddress(req.arg);
      }
    }
  }

  private replyToClient(channel: Channel, r: ClientResponse): void {
    if (channel.closed) return;
    try {
      channel.send(encodeClientResponse(r));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'reply to client failed');
    }
  }

  // --- Diagnostics ---------------------------------------------------------------------------

  /**
   * True when the node was heard from (a request, or an answer to ours) within the last `ms`
   * and is listed in the routing table: it runs, whatever a dial to it met before.
   */
  heardWithin(nodeId: NodeId, ms: number): boolean {
    const at = this.dht.table.seenAt(nodeId);
    return at !== undefined && this.clock.now() - at <= ms;
  }

  /** The contact of a node-ID: from the routing table, or found by a lookup. */
  async findContact(nodeId: NodeId): Promise<Contact> {
    const known = this.dht.table.get(nodeId);
    // Only at an address where it answered: a node heard of only in a request of its own may
    // be listed at a forged source address, and its NODE-INFO then names that host (QA). A
    // lookup finds it where it answers.
    if (known && this.dht.table.answeredAt(nodeId) !== undefined) return known;
    const found = await this.dht.findNode(nodeId);
    const hit = found.closest.find((c) => idEquals(c.id, nodeId));
    if (!hit)
      throw new OverlayError('ERR_NOT_FOUND', `node ${idToHex(nodeId)} is not in the overlay`);
    return hit;
  }

  /**
   * Throws ERR_UNREACHABLE, saying `what` was not done, while this node has lost touch with
   * every other one (KademliaNode.isolated): it asked nobody, and "not found" would be a guess.
   */
  private inTouch(what: string): void {
    if (this.dht.isolated) {
      throw new OverlayError(
        'ERR_UNREACHABLE',
        `this node has lost touch with every other node (rejoining); ${what}`,
      );
    }
  }

  async ping(nodeId: NodeId): Promise<PingResult> {
    this.inTouch(`${idToHex(nodeId)} not pinged`);
    const contact = await this.findContact(nodeId);
    const t0 = performance.now();
    if (!(await this.dht.ping(contact))) {
      throw new OverlayError(
        'ERR_UNREACHABLE',
        `node ${idToHex(nodeId).slice(0, 16)}… at ${contact.address} did not answer`,
      );
    }
    return { nodeId: idToHex(nodeId), address: contact.address, rttMs: performance.now() - t0 };
  }

  /** The path of a lookup for target, request by request. */
  async trace(target: NodeId): Promise<TraceStep[]> {
    this.inTouch('no lookup to trace');
    return (await this.dht.findNode(target, { trace: true })).trace;
  }

  stats(): OverlayStats {
    const now = this.clock.now();
    const byKind: Record<string, number> = {};
    let total = 0;
    for (const key of this.store.keys()) {
      for (const { slot } of this.store.entries(key, now)) {
        const kindId = Number(slot.split(':')[0]);
        const name = kindById(this.config, kindId)?.name ?? `kind-${kindId}`;
        byKind[name] = (byKind[name] ?? 0) + 1;
        total++;
      }
    }
    const d = this.dht.stats;
    return {
      nodeId: idToHex(this.nodeId),
      udp: this.udp.address,
      stream: this.links.address ?? '',
      routingTable: {
        contacts: this.dht.table.size,
        buckets: this.dht.table.bucketCount,
        isolated: this.dht.isolated,
      },
      records: { total, byKind },
      published: this.published.size,
      messages: {
        datagramsIn: this.udp.stats.datagramsIn,
        datagramsOut: this.udp.stats.datagramsOut,
        requestsIn: { ...d.requestsIn },
        requestsOut: d.requestsOut,
        requestFailures: d.requestFailures,
        lookups: d.lookups,
        unmatched: this.udp.stats.unmatched,
        staleRepaired: this.staleRepaired,
        handOvers: d.handOvers,
        keysHandedOver: d.keysHandedOver,
        keysReplicated: d.keysReplicated,
      },
      rejections: {
        malformed: this.udp.stats.malformed,
        byReason: { ...this.codec.rejected },
        stores: { ...d.storeRejections },
        contactsRefused: d.contactsRefused,
        fetchedDropped: this.fetchedDropped,
        contestedFetches: this.contestedFetches,
        claimsReplaced: this.claimsReplaced,
        claimsChecked: this.claimsChecked,
        claimChecksWaiting:
          this.claimChecksRunning + this.claimChecksWaiting.size + this.firstChecksDue.size,
        clientRequestsMalformed: this.clientRequestsMalformed,
      },
      links: this.links.links().length,
    };
  }

  // --- Lifecycle -----------------------------------------------------------------------------

  /** Graceful leave: hands held records to the next responsible peers, then closes. */
  leave(): Promise<void> {
    this.closing ??= (async () => {
      await this.dht.leave().catch(() => 0);
      await this.shutDown();
    })();
    return this.closing;
  }

  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    await this.saveContacts();
    this.closed = true;
    if (this.nodeInfoTimer) this.clock.clearTimeout(this.nodeInfoTimer);
    if (this.contactsTimer) this.clock.clearTimeout(this.contactsTimer);
    if (this.firstCheckTimer) this.clock.clearTimeout(this.firstCheckTimer);
    try {
      await this.dht.stop();
      await this.links.close();
      await this.udp.close();
      await this.persistent.flush().catch(() => undefined);
      await this.persistent.close();
    } finally {
      this.releaseLock();
    }
  }
}

/**
 * Each distinct value once (holders mostly return the same bytes, and a check costs
 * signatures) with the holders that returned it, leaving out those whose contentKey is in
 * `skip`.
 */
function distinctValues(values: readonly FoundValue[], skip: ReadonlySet<string>): FetchedValue[] {
  const byContent = new Map<string, { value: Uint8Array; holders: Set<string> }>();
  for (const { value, holder } of values) {
    const key = contentKey(value);
    if (skip.has(key)) continue;
    let found = byContent.get(key);
    if (!found) {
      found = { value, holders: new Set() };
      byContent.set(key, found);
    }
    found.holders.add(idToHex(holder.id));
  }
  return [...byContent.values()];
}

function contentKey(value: Uint8Array): string {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
}

/** 0 for a name claim (stored before the records that rely on it), 1 for anything else. */
function claimRank(publishedId: string): number {
  return publishedId.split('/')[1] === NAME_CLAIM_SLOT ? 0 : 1;
}

function idFromPublishedId(id: string): NodeId | undefined {
  const hex = id.split('/')[0] ?? '';
  return /^[0-9a-f]{64}$/.test(hex) ? new Uint8Array(Buffer.from(hex, 'hex')) : undefined;
}

/** Whether a record this node published (encoded) was signed by the user key `record` is. */
function sameSigner(published: { bytes: Uint8Array }, record: StoredRecord): boolean {
  try {
    const before = decodeRecord(published.bytes).user?.publicKey;
    const now = record.user?.publicKey;
    return before === undefined || now === undefined ? before === now : bytesEqual(before, now);
  } catch {
    return false;
  }
}

/**
 * Whether `address` is this node's own: its port, at its bound address or, bound to every
 * interface, at one of this machine's (a loopback address among them).
 */
function isOwnAddress(address: string, bound: string): boolean {
  if (address === bound) return true;
  const own = parseEndpoint(bound);
  if (!own) return false;
  const wildcard = own.ip.every((b) => b === 0);
  if (!wildcard) return false;
  const port = own.port;
  const mine = [endpointKey('127.0.0.1', port), endpointKey('::1', port)];
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) mine.push(endpointKey(i.address, port));
  }
  return mine.includes(address);
}
