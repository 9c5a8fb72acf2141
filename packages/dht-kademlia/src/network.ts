// The DHT's only window on the world. The simulator and the UDP transport both implement it.

import type { Contact } from './contact.js';
import type { Request, Response } from './rpc/messages.js';

/** Handles one incoming request. `remoteAddress` is where it came from, as the transport saw it. */
export type RequestHandler = (
  request: Request,
  remoteAddress: string,
) => Promise<Response> | Response;

export interface Transport {
  /** This endpoint's own address, in the form other nodes use to reach it. */
  readonly address: string;
  /**
   * Sends a request and resolves with the reply. Rejects with a TimeoutError when no reply
   * arrives within timeoutMs (retransmissions, if any, happen inside).
   */
  request(to: Contact, request: Request, timeoutMs: number): Promise<Response>;
  /** Installs the handler for incoming requests; one per transport. */
  listen(handler: RequestHandler): void;
  close(): Promise<void>;
}
