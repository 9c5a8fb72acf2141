// The URIs a node puts in Record-Route: `sip:<node-id-hex>@<host>:<port>;transport=..;lr`.
// The phone reaches the host:port; another node reads the node-ID and uses the overlay.

import { createHmac, type KeyObject, timingSafeEqual } from 'node:crypto';
import { isSipUri, type SipUri, type Uri } from '../message/uri.js';
import { hostPort } from '../registrar/binding-store.js';

const NODE_HEX = /^[0-9a-f]{64}$/;

export interface RouteAddress {
  host: string;
  port: number;
  transport: 'udp' | 'tcp' | 'ws';
}

/** URI parameter of our Record-Route: a MAC binding the dialog's Call-ID to one phone target. */
export const ROUTE_TOKEN_PARAM = 'pbx-t';
/** URI parameter of our Record-Route: a MAC of the dialog's Call-ID alone (see dialogToken). */
export const DIALOG_TOKEN_PARAM = 'pbx-d';
/**
 * URI parameter of our Record-Route: where the phone of the route token is reached, when its
 * Contact does not say: a phone behind NAT (`address~port`, over UDP), or a browser over its
 * WebSocket connection (`ws~<connection-ID>`: that connection and no other, even one later
 * from the same address and port). Covered by the token's MAC.
 */
export const ROUTE_FLOW_PARAM = 'pbx-f';

/** A phone's flow as ROUTE_FLOW_PARAM carries it: a UDP address, or a WebSocket connection. */
export type RouteFlow =
  | { transport: 'udp'; address: string; port: number }
  | { transport: 'ws'; connectionId: string };

export function formatRouteFlow(flow: RouteFlow): string {
  if (flow.transport === 'ws') return `ws~${flow.connectionId}`;
  return `${flow.address.includes(':') ? `[${flow.address}]` : flow.address}~${flow.port}`;
}

/** A ROUTE_FLOW_PARAM value back; undefined for one that is neither form. */
export function parseRouteFlow(text: string): RouteFlow | undefined {
  const ws = /^ws~([A-Za-z0-9-]{1,64})$/.exec(text);
  if (ws?.[1]) return { transport: 'ws', connectionId: ws[1] };
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\])~(\d{1,5})$/.exec(text);
  const port = Number(m?.[2]);
  if (!m?.[1] || !(port > 0 && port < 65536)) return undefined;
  return { transport: 'udp', address: m[1].replace(/^\[|\]$/g, ''), port };
}

/**
 * The Record-Route value naming this node, reachable by the phone at `at`. `token` (see
 * routeToken) lets in-dialog requests that come back along this route reach the phone whose
 * Contact it was made for, and nothing else.
 */
export function formatNodeRoute(
  nodeHex: string,
  at: RouteAddress,
  token?: string,
  dialog?: string,
  flow?: string,
): string {
  const d = dialog === undefined ? '' : `;${DIALOG_TOKEN_PARAM}=${dialog}`;
  return `<sip:${nodeHex}@${at.host}:${at.port};transport=${at.transport};lr${routeTokenParams(token, flow)}${d}>`;
}

/** `;pbx-t=...` (and `;pbx-f=...`) for a route token, '' for none. */
export function routeTokenParams(token?: string, flow?: string): string {
  if (token === undefined) return '';
  return `;${ROUTE_TOKEN_PARAM}=${token}${flow === undefined ? '' : `;${ROUTE_FLOW_PARAM}=${flow}`}`;
}

/** `host:port` of a SIP URI as a destination (brackets and case dropped, port 5060 by default). */
export function uriHostPort(uri: SipUri): string {
  return hostPort(uri.host, uri.port);
}

/**
 * The MAC a node puts in its Record-Route for a dialog whose local phone has the Contact
 * `target`: only this node can make one, so another node (or a phone) cannot forge a Route
 * that makes this node deliver to an address of its choosing.
 */
export function routeToken(
  secret: Uint8Array | KeyObject,
  callId: string,
  target: SipUri,
  flow?: string,
): string {
  const via = flow === undefined ? '' : `\n${flow}`;
  return mac(secret, `route\n${uriHostPort(target)}\n${callId}${via}`);
}

/** True when `token` was made by routeToken with this secret for this Call-ID, target and flow. */
export function checkRouteToken(
  secret: Uint8Array | KeyObject,
  token: string,
  callId: string,
  target: SipUri,
  flow?: string,
): boolean {
  return sameToken(routeToken(secret, callId, target, flow), token);
}

/**
 * The MAC a node puts in every Record-Route it adds for a phone: an in-dialog request that a
 * phone sends back along it shows that this node routed the dialog, which is what lets it pass
 * without a digest challenge (only out-of-dialog requests are challenged). It is bound to the
 * dialog's far side (`side`): `node:<hex>`, the node the dialog continues to, or `phone` (a
 * device of this node, or an outside address), so that one seen by a party to a call cannot
 * take requests to another node's phones. A request with a To tag but without a token that
 * fits is challenged like a new one.
 */
export function dialogToken(secret: Uint8Array | KeyObject, callId: string, side: string): string {
  return mac(secret, `dialog\n${side}\n${callId}`);
}

/** True when `token` was made by dialogToken with this secret for this Call-ID and side. */
export function checkDialogToken(
  secret: Uint8Array | KeyObject,
  token: string,
  callId: string,
  side: string,
): boolean {
  return sameToken(dialogToken(secret, callId, side), token);
}

/** The far side a dialog token is bound to, for the next hop `next` (see dialogToken). */
export function dialogSide(next: Uri): string {
  const node = nodeOfUri(next);
  return node === undefined ? 'phone' : `node:${node}`;
}

/** The node-ID (hex) a Route/Request-URI names, when it is one of our Record-Route URIs. */
export function nodeOfUri(uri: Uri): string | undefined {
  if (!isSipUri(uri) || uri.user === undefined) return undefined;
  const user = uri.user.toLowerCase();
  return NODE_HEX.test(user) && 'lr' in uri.params ? user : undefined;
}

/** A token: the HMAC-SHA-256 of `text`, 22 base64url characters (132 bits). */
function mac(secret: Uint8Array | KeyObject, text: string): string {
  return createHmac('sha256', secret).update(text).digest('base64url').slice(0, 22);
}

/** `got` equals `want`, compared in constant time. */
function sameToken(want: string, got: string): boolean {
  const a = Buffer.from(want);
  const b = Buffer.from(got);
  return a.length === b.length && timingSafeEqual(a, b);
}
