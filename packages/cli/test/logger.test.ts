// The node's log cannot be flooded: at most so many lines a second reach stderr, and the
// number dropped is reported once the next second begins.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { rateLimited } from '../src/logger.js';

describe('log rate limit', () => {
  it('writes at most the limit a second and says how many lines it dropped', () => {
    let now = 1_000_000;
    const lines: string[] = [];
    const log = pino(
      { level: 'info' },
      rateLimited({ write: (l: string) => lines.push(l) }, 10, () => now),
    );
    for (let i = 0; i < 250; i++) log.warn({ i }, 'unframeable stream');
    assert.equal(lines.length, 10);
    log.error({}, 'an error in the flood');
    assert.equal(lines.length, 11, 'errors are always written');
    lines.pop();
    now += 1000;
    log.error({}, 'a later error');
    assert.equal(lines.length, 12);
    const report = JSON.parse(lines[10] as string) as { level: number; msg: string };
    assert.equal(report.level, 40);
    assert.equal(report.msg, '240 log lines dropped (over 10 a second)');
    assert.match(lines[11] as string, /a later error/);
  });
});
