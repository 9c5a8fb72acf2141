// A swarm: many KademliaNodes on one Simulator, with the join, crash and lie operations that
// tests and the benchmark share.

import type { Contact } from '../contact.js';
import { KademliaNode, type KademliaOptions } from '../node.js';
import { compareDistance, type NodeId } from '../node-id.js';
import { randomInt } from '../random.js';
import type { Request, Response } from '../rpc/messages.js';
import type { SimTransport, Simulator } from './simulator.js';

export type SwarmNodeOptions = Omit<KademliaOptions, 'id' | 'transport' | 'clock' | 'random'>;

export class Swarm {
  private readonly liars: Contact[] = [];
  private readonly byAddress = new Map<string, KademliaNode>();

  constructor(
    readonly sim: Simulator,
    readonly nodeOptions: SwarmNodeOptions = {},
  ) {
    sim.liarResponder = (self, request, _honest, _from) => this.lie(self, request);
  }

  /** Live nodes (created and not crashed); joins pick seeds from here in O(1). */
  private readonly live: KademliaNode[] = [];
  private readonly liveIndex = new Map<KademliaNode, number>();

  get alive(): KademliaNode[] {
    return this.live.filter((n) => n.isRunning);
  }

  get size(): number {
    return this.live.length;
  }

  /** A uniformly random live node, or undefined when there is none. */
  randomAlive(): KademliaNode | undefined {
    return this.live[randomInt(this.sim.random, this.live.length)];
  }

  /** Creates a node (not yet joined). */
  create(overrides: SwarmNodeOptions = {}, id?: NodeId): KademliaNode {
    const node = new KademliaNode({
      ...this.nodeOptions,
      ...overrides,
      id: id ?? this.sim.random.bytes(32),
      transport: this.sim.createTransport(),
      clock: this.sim,
      random: this.sim.random,
    });
    this.byAddress.set(node.contact.address, node);
    this.liveIndex.set(node, this.live.length);
    this.live.push(node);
    return node;
  }

  /** Creates a node and joins it through a random live node (or founds the swarm). */
  async join(overrides: SwarmNodeOptions = {}, id?: NodeId): Promise<KademliaNode> {
    const seed = this.randomAlive();
    const node = this.create(overrides, id);
    if (!seed) node.start();
    else await this.sim.settle(node.bootstrap([seed.contact]));
    return node;
  }

  /** Grows the swarm to `count` live nodes, `parallel` joins at a time. */
  async grow(count: number, parallel = 1): Promise<void> {
    if (this.live.length === 0 && count > 0) await this.join();
    while (this.live.length < count) {
      const batch = Math.min(parallel, count - this.live.length);
      const seeds = Array.from({ length: batch }, () => this.randomAlive()!);
      const joins: Promise<unknown>[] = [];
      for (const seed of seeds) joins.push(this.create().bootstrap([seed.contact]));
      await this.sim.settle(Promise.all(joins));
    }
  }

  /** The node stops dead: no goodbye, its data is lost. */
  crash(node: KademliaNode): void {
    this.sim.crash(node.contact.address);
    void node.stop();
    // A crashed node is gone for good: nothing here keeps its memory alive.
    this.byAddress.delete(node.contact.address);
    this.sim.forget(node.contact.address);
    const i = this.liveIndex.get(node);
    if (i === undefined) return;
    // Swap-remove keeps crash O(1).
    const last = this.live.pop()!;
    this.liveIndex.delete(node);
    if (last !== node) {
      this.live[i] = last;
      this.liveIndex.set(last, i);
    }
  }

  /** The node stays up but answers nothing. */
  silence(node: KademliaNode): void {
    this.sim.setBehaviour(node.contact.address, 'silent');
  }

  /**
   * The node lies: it answers lookups with the colluding liars closest to the target (so a
   * lookup that trusts it walks into the coalition) and never returns a value; it accepts
   * STOREs and drops them.
   */
  corrupt(node: KademliaNode): void {
    this.sim.setBehaviour(node.contact.address, 'liar');
    this.liars.push(node.contact);
  }

  /** Live nodes sorted by distance to target: the ground truth a lookup should find. */
  closestAlive(target: NodeId, n: number): KademliaNode[] {
    return this.alive.sort((a, b) => compareDistance(target, a.id, b.id)).slice(0, n);
  }

  private lie(self: SimTransport, request: Request): Response | undefined {
    const node = this.byAddress.get(self.address);
    if (!node) return undefined;
    const body = request.body;
    if (body.type === 'STORE') return { sender: node.id, body: { type: 'STORED', ok: true } };
    if (body.type !== 'FIND_NODE' && body.type !== 'FIND_VALUE') return undefined;
    const target = body.type === 'FIND_NODE' ? body.target : body.key;
    const contacts = [...this.liars]
      .filter((c) => c.address !== self.address)
      .sort((a, b) => compareDistance(target, a.id, b.id))
      .slice(0, node.k);
    return { sender: node.id, body: { type: 'NODES', contacts } };
  }
}
