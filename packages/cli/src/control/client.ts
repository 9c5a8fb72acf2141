// Asks the running node of a data directory one control question.

import { lstatSync } from 'node:fs';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { CONTROL_TIMEOUT_MS } from '../constants.js';
import { CliError } from '../errors.js';
import { type ControlRequest, type ControlResponse, controlSocketPath } from './protocol.js';

/**
 * `startWith`: the flags that start the node meant (its --config, say), for the advice when
 * none runs; --data-dir DIR by default.
 */
export async function controlRequest(
  dataDir: string,
  req: ControlRequest,
  timeoutMs = CONTROL_TIMEOUT_MS,
  startWith = `--data-dir ${dataDir}`,
): Promise<unknown> {
  const path = controlSocketPath(dataDir);
  const notRunning = () =>
    new CliError(
      'ERR_NOT_RUNNING',
      `no node is running with data directory ${dataDir}; start one with \`peerbx start ${startWith}\``,
    );
  const permissionDenied = () =>
    new CliError(
      'ERR_CONTROL',
      `permission denied on ${path}: run as the user who started the node`,
    );
  try {
    lstatSync(path);
  } catch (err) {
    // A directory this user may not enter hides the socket: say so, not "no node".
    if ((err as NodeJS.ErrnoException).code === 'EACCES') throw permissionDenied();
    throw notRunning();
  }
  const response = await new Promise<ControlResponse>((resolve, reject) => {
    const socket = connect(path);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new CliError('ERR_CONTROL', `the node did not answer "${req.op}" within ${timeoutMs} ms`),
      );
    }, timeoutMs);
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') reject(notRunning());
      else if (err.code === 'EACCES') reject(permissionDenied());
      else reject(new CliError('ERR_CONTROL', `control socket ${path}: ${err.message}`));
    });
    socket.once('connect', () => socket.write(`${JSON.stringify(req)}\n`));
    // A socket left by a killed node refuses the connection: the socket's own handler above
    // answers that; the reader passes the same error on, and must not throw it again.
    const lines = createInterface({ input: socket });
    lines.on('error', () => undefined);
    lines.once('line', (line) => {
      clearTimeout(timer);
      socket.destroy();
      try {
        resolve(JSON.parse(line) as ControlResponse);
      } catch {
        reject(new CliError('ERR_CONTROL', 'the node sent an unreadable answer'));
      }
    });
  });
  if (!response.ok) {
    const err = new CliError('ERR_CONTROL', response.message);
    (err as { code: string }).code = response.code;
    throw err;
  }
  return response.result;
}
