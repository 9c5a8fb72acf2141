// @peerbx/dht-kademlia: a Kademlia DHT with no I/O of its own, plus the two networks it runs
// over (an in-process simulator and UDP).

export { type Clock, systemClock, type TimerHandle } from './clock.js';
export * from './constants.js';
export { type Contact, sortByDistance } from './contact.js';
export {
  DhtError,
  type DhtErrorCode,
  MalformedMessageError,
  NoPeersError,
  TimeoutError,
} from './errors.js';
export {
  type FoundValue,
  type LookupParams,
  type LookupResult,
  lookup,
  type QueryAnswer,
  type TraceOutcome,
  type TraceStep,
} from './lookup/lookup.js';
export type { RequestHandler, Transport } from './network.js';
export {
  type GetOptions,
  KademliaNode,
  type KademliaOptions,
  type LookupOptions,
  type NodeStats,
  type PublishedValue,
  type PutItem,
  type PutResult,
} from './node.js';
export {
  assertNodeId,
  commonPrefixLength,
  compareDistance,
  hashToId,
  idEquals,
  idFromHex,
  idToHex,
  isNodeId,
  leadingZeroBits,
  type NodeId,
  randomIdAtPrefix,
  xorDistance,
} from './node-id.js';
export {
  cryptoRandom,
  pooledRandomBytes,
  type Random,
  randomInt,
  SeededRandom,
  shuffle,
} from './random.js';
export { KBucket } from './routing-table/k-bucket.js';
export {
  type AddResult,
  RoutingTable,
  type RoutingTableOptions,
} from './routing-table/routing-table.js';
export type { ValueValidator } from './rpc/handlers/store.js';
export type {
  Request,
  RequestBody,
  RequestType,
  Response,
  ResponseBody,
  StoreRejection,
  StoreResult,
  WireValue,
} from './rpc/messages.js';
export { MAX_STORE_MORE, refusal } from './rpc/messages.js';
export {
  type Behaviour,
  type LiarResponder,
  SimTransport,
  Simulator,
  type SimulatorOptions,
  type SimulatorStats,
} from './simulator/simulator.js';
export { Swarm, type SwarmNodeOptions } from './simulator/swarm.js';
export {
  type PutResult as StorePutResult,
  type StoreChange,
  type StoredValue,
  ValueStore,
  type ValueStoreOptions,
} from './storage/value-store.js';
export {
  endpointKey,
  formatEndpoint,
  type IpEndpoint,
  parseEndpoint,
} from './transport/address.js';
export {
  decodeMessage,
  ERROR_UNSUPPORTED_VERSION,
  encodeMessage,
  encodeRequest,
  encodeResponse,
  HEADER_BYTES,
  UnsupportedVersionError,
  WIRE_MAGIC,
  WIRE_VERSION,
  type WireMessage,
} from './transport/codec.js';
export { type DatagramCodec, RejectedMessageError } from './transport/datagram-codec.js';
export { type UdpBindOptions, UdpTransport, type UdpTransportStats } from './transport/udp.js';
