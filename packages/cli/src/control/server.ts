// Serves the control endpoint of a running node on a private Unix socket.

import { chmodSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import type { Logger } from '@peerbx/overlay-core';
import { describeError } from '../errors.js';
import { CONTROL_OPS, type ControlRequest, type ControlResponse } from './protocol.js';

export type ControlHandler = (req: ControlRequest) => Promise<unknown>;

export class ControlServer {
  private constructor(
    private readonly server: Server,
    readonly path: string,
  ) {}

  /**
   * Listens on `path`. The caller holds the data directory's lock, so a socket file left by
   * a killed node is removed first. The socket is created owner-only (umask), then chmod 0600.
   */
  static async listen(path: string, handle: ControlHandler, log: Logger): Promise<ControlServer> {
    rmSync(path, { force: true });
    const server = createServer((socket) => serve(socket, handle, log));
    const mask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(mask);
    }
    chmodSync(path, 0o600);
    return new ControlServer(server, path);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }
}

function serve(socket: Socket, handle: ControlHandler, log: Logger): void {
  socket.on('error', () => undefined);
  const lines = createInterface({ input: socket });
  lines.once('line', (line) => {
    lines.close();
    const reply = (r: ControlResponse) => socket.end(`${JSON.stringify(r)}\n`);
    let req: ControlRequest;
    try {
      req = JSON.parse(line) as ControlRequest;
      if (!CONTROL_OPS.includes(req.op)) throw new Error(`unknown operation "${String(req.op)}"`);
    } catch (err) {
      reply({ ok: false, code: 'ERR_CONTROL', message: (err as Error).message });
      return;
    }
    handle(req).then(
      (result) => reply({ ok: true, result }),
      (err: unknown) => {
        const { code, message } = describeError(err);
        log.debug({ op: req.op, code, err: message }, 'control request failed');
        reply({ ok: false, code, message });
      },
    );
  });
}
