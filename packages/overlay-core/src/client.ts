// A client node: attaches to one peer, stores and fetches through it, routes and stores
// nothing itself, and is never put in routing tables (it has no DHT socket at all). It keeps
// its own identity and signs its own records; everything it fetches it verifies itself.

import { type Clock, idToHex, type NodeId, systemClock } from '@peerbx/dht-kademlia';
import {
  CLIENT_APPLICATION,
  type ClientOp,
  type ClientResponse,
  decodeClientResponse,
  encodeClientRequest,
} from './client-protocol.js';
import {
  checkConfigSignature,
  configHash,
  type OverlayConfig,
  validateOverlayConfig,
} from './config/overlay-config.js';
import { OverlayError, type OverlayErrorCode } from './errors.js';
import { type DataDirPaths, ensureDataDir, loadNodeKey, lockDataDir } from './identity/data-dir.js';
import { type KeyPair, nodeIdOf } from './identity/keys.js';
import type { Channel } from './links/link.js';
import { LinkManager } from './links/link-manager.js';
import { type Logger, silentLogger } from './logger.js';
import { encodeRecord, type StoredRecord } from './storage/record.js';
import { type PublishParams, RecordSigner } from './storage/record-signer.js';
import { verifyFetched } from './storage/record-store.js';

export interface OverlayClientOptions {
  dataDir: string;
  config: OverlayConfig;
  /** Stream address ("host:port") of the peer to attach to. */
  peer: string;
  logger?: Logger;
  clock?: Clock;
  requestTimeoutMs?: number;
}

export class OverlayClient {
  readonly nodeId: NodeId;
  private readonly pending = new Map<number, (r: ClientResponse) => void>();
  private nextId = 1;
  private readonly signer: RecordSigner;

  private constructor(
    readonly config: OverlayConfig,
    readonly keys: KeyPair,
    readonly links: LinkManager,
    private readonly channel: Channel,
    private readonly releaseLock: () => void,
    private readonly clock: Clock,
    private readonly timeoutMs: number,
    paths: DataDirPaths,
    private readonly log: Logger,
  ) {
    this.nodeId = nodeIdOf(keys.publicKey);
    this.signer = new RecordSigner(paths, config, keys, clock);
    channel.on('message', (bytes: Uint8Array) => {
      try {
        const r = decodeClientResponse(bytes);
        this.pending.get(r.id)?.(r);
        this.pending.delete(r.id);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'malformed reply from the peer');
      }
    });
    channel.on('close', () => {
      for (const [id, done] of this.pending)
        done({ id, ok: false, code: 'ERR_UNREACHABLE', message: 'the link to the peer closed' });
      this.pending.clear();
    });
  }

  static async start(options: OverlayClientOptions): Promise<OverlayClient> {
    const config = validateOverlayConfig(options.config);
    checkConfigSignature(config);
    const clock = options.clock ?? systemClock;
    const paths = ensureDataDir(options.dataDir);
    const release = lockDataDir(paths);
    const keys = loadNodeKey(paths, config.puzzleBits);
    const links = new LinkManager({
      keys,
      configHash: configHash(config),
      puzzleBits: config.puzzleBits,
      role: 'client',
      clock,
    });
    try {
      const link = await links.dial(options.peer);
      const channel = await link.openChannel(CLIENT_APPLICATION);
      const log = (options.logger ?? silentLogger).child({
        component: 'overlay-client',
        node: idToHex(nodeIdOf(keys.publicKey)).slice(0, 16),
      });
      log.info({ peer: options.peer }, 'attached to peer');
      return new OverlayClient(
        config,
        keys,
        links,
        channel,
        release,
        clock,
        options.requestTimeoutMs ?? 10_000,
        paths,
        log,
      );
    } catch (err) {
      await links.close();
      release();
      throw err;
    }
  }

  /** Signs a record locally and has the peer store it. Returns the replicas the peer reports. */
  async publish(params: PublishParams): Promise<{ record: StoredRecord; replicas: number }> {
    const { claim, record } = await this.signer.sign(params);
    if (claim) {
      await this.call('store', encodeRecord(claim));
      this.signer.claimStored(claim);
    }
    const replicas = Number(await this.call('store', encodeRecord(record)));
    return { record, replicas };
  }

  /** Fetches through the peer and verifies every record here: the peer cannot forge one. */
  async fetch(resource: string, kind?: number): Promise<StoredRecord[]> {
    const values = await this.call('fetch', resource);
    if (!Array.isArray(values) || !values.every((v) => v instanceof Uint8Array)) {
      throw new OverlayError(
        'ERR_MALFORMED',
        'the peer answered a fetch with something other than values',
      );
    }
    return verifyFetched(values as Uint8Array[], resource, kind, this.config, {
      now: this.clock.now(),
    });
  }

  /** A channel to another node; its address is resolved by the peer, the link is direct. */
  connect(nodeId: NodeId, application: string): Promise<Channel> {
    return this.links.connect(nodeId, application, async (id) =>
      String(await this.call('resolve', id)),
    );
  }

  async close(): Promise<void> {
    await this.links.close();
    this.releaseLock();
  }

  private call(op: ClientOp, arg: Uint8Array | string): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.pending.delete(id);
        reject(
          new OverlayError(
            'ERR_UNREACHABLE',
            `the peer did not answer ${op} in ${this.timeoutMs} ms`,
          ),
        );
      }, this.timeoutMs);
      this.pending.set(id, (r) => {
        this.clock.clearTimeout(timer);
        if (r.ok) resolve(r.result);
        else reject(new OverlayError(asCode(r.code), r.message));
      });
      try {
        this.channel.send(encodeClientRequest({ id, op, arg }));
      } catch (err) {
        this.clock.clearTimeout(timer);
        this.pending.delete(id);
        reject(err);
      }
    });
  }
}

function asCode(code: string): OverlayErrorCode {
  return (code.startsWith('ERR_') ? code : 'ERR_UNREACHABLE') as OverlayErrorCode;
}
