// @peerbx/cli: the `peerbx` command (start, init, status, peers, lookup, ping, trace, ca, demo)
// and the pieces it is made of, for tests and for embedding a node runner.

export { main } from './cli.js';
export { parseHostPort } from './config/address.js';
export {
  loadSettings,
  type NodeSettings,
  type RawSettings,
  resolveSettings,
} from './config/node-config.js';
export { controlRequest } from './control/client.js';
export type {
  ControlOp,
  LookupView,
  PeerView,
  PingView,
  StatusView,
  TraceView,
} from './control/protocol.js';
export { parseReadyLine, type ReadyInfo } from './demo/node-process.js';
export { CliError, type CliErrorCode } from './errors.js';
export { type RunningNode, startNode } from './node/runner.js';
