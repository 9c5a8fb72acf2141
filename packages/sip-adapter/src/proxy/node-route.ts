// The URIs a node puts in Record-Route: `sip:<node-id-hex>@<host>:<port>;transport=..;lr`.
// The phone reaches the host:port; another node reads the node-ID and uses the overlay.

import { isSipUri, type Uri } from '../message/uri.js';

const NODE_HEX = /^[0-9a-f]{64}$/;

export interface RouteAddress {
  host: string;
  port: number;
  transport: 'udp' | 'tcp' | 'ws';
}

/** The Record-Route value naming this node, reachable by the phone at `at`. */
export function formatNodeRoute(nodeHex: string, at: RouteAddress): string {
  return `<sip:${nodeHex}@${at.host}:${at.port};transport=${at.transport};lr>`;
}

/** The node-ID (hex) a Route/Request-URI names, when it is one of our Record-Route URIs. */
export function nodeOfUri(uri: Uri): string | undefined {
  if (!isSipUri(uri) || uri.user === undefined) return undefined;
  const user = uri.user.toLowerCase();
  return NODE_HEX.test(user) && 'lr' in uri.params ? user : undefined;
}
