// PING: proves liveness. The sender is already in our routing table by the time we answer.

import type { ResponseBody } from '../messages.js';

export function handlePing(): ResponseBody {
  return { type: 'PONG' };
}
