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
  /** Every node ever created, dead or alive, by creation order. */
  readonly nodes: KademliaNode[] = [];
  private readonly liars: Contact[] = [];
  private readonly byAddress = new Map<string, KademliaNode>();

  constructor(
    readonly sim: Simulator,
    readonly nodeOptions: SwarmNodeOptions = {},
  ) {
    sim.liarResponder = (self, request, _honest, _from) => this.lie(self, request);
  }

  get alive(): KademliaNode[] {
    return this.nodes.filter((n) => n.isRunning);
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
    this.nodes.push(node);
    this.byAddress.set(node.contact.address, node);
    return node;
  }

  /** Creates a node and joins it through a random live node (or founds the swarm). */
  async join(overrides: SwarmNodeOptions = {}, id?: NodeId): Promise<KademliaNode> {
    const live = this.alive;
    const node = this.create(overrides, id);
    if (live.length === 0) node.start();
    else {
      const seed = live[randomInt(this.sim.random, live.length)]!;
      await this.sim.settle(node.bootstrap([seed.contact]));
    }
    return node;
  }

  /** Grows the swarm to `count` live nodes, `parallel` joins at a time. */
  async grow(count: number, parallel = 1): Promise<void> {
    if (this.alive.length === 0 && count > 0) await this.join();
    while (this.alive.length < count) {
      const batch = Math.min(parallel, count - this.alive.length);
      const live = this.alive;
      const joins: Promise<unknown>[] = [];
      for (let i = 0; i < batch; i++) {
        const node = this.create();
        const seed = live[randomInt(this.sim.random, live.length)]!;
        joins.push(node.bootstrap([seed.contact]));
      }
      await this.sim.settle(Promise.all(joins));
    }
  }

  /** The node stops dead: no goodbye, its data is lost. */
  crash(node: KademliaNode): void {
    this.sim.crash(node.contact.address);
    void node.stop();
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
