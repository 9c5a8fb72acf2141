import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RttEstimator } from '../src/rpc/rtt.js';

describe('adaptive request timeout', () => {
  it('uses the ceiling before anything was measured and a few round trips for known contacts', () => {
    const rtt = new RttEstimator(2000, 100);
    assert.equal(rtt.timeout('a'), 2000);
    for (let i = 0; i < 20; i++) rtt.sample('a', 40);
    const t = rtt.timeout('a');
    assert.ok(t >= 100 && t < 200, `timeout ${t}`);
    assert.equal(new RttEstimator(2000, 500).timeout('x'), 2000);
  });

  it('gives a contact never measured twice what the measured ones typically need', () => {
    const rtt = new RttEstimator(4000, 100);
    for (let i = 0; i < 20; i++) {
      rtt.sample('a', 400);
      rtt.sample('b', 600);
    }
    const known = Math.max(rtt.timeout('a'), rtt.timeout('b'));
    const unknown = rtt.timeout('never-measured');
    assert.ok(unknown > known && unknown < 4000, `unknown ${unknown}, known up to ${known}`);
    assert.ok(unknown >= 2 * 500, `unknown ${unknown}: twice the typical round trip at least`);
  });

  it('gives a contact never measured at least half the ceiling, however fast the others are', () => {
    // On a loopback (1 ms round trips): 1 s, not the 2 s ceiling, and not the 500 ms floor
    // (a first contact over a slow link still has time to answer).
    const fast = new RttEstimator(2000, 500);
    fast.sample('a', 1);
    assert.equal(fast.timeout('a'), 500);
    assert.equal(fast.timeout('never-measured'), 1000);
  });

  it('calls an answer late after the typical round trip and four deviations, without the floor', () => {
    const rtt = new RttEstimator(2000, 500);
    assert.equal(rtt.lateAfter(), 2000);
    for (let i = 0; i < 50; i++) rtt.sample(`c${i % 5}`, 2);
    // Steady 2 ms round trips: the deviation decays, so late is a few ms, far below the floor.
    const late = rtt.lateAfter();
    assert.ok(late >= 2 && late <= 4, `late after ${late}`);
    for (let i = 0; i < 50; i++) rtt.sample('slow', 5000);
    assert.equal(rtt.lateAfter(), 2000);
  });

  it('doubles the timeout of a contact after each timeout, up to the ceiling, until it answers', () => {
    const rtt = new RttEstimator(2000, 100);
    for (let i = 0; i < 20; i++) rtt.sample('a', 40);
    const base = rtt.timeout('a');
    rtt.timedOut('a', 0, 0);
    assert.equal(rtt.timeout('a'), 2 * base);
    rtt.timedOut('a', 0, 0);
    assert.equal(rtt.timeout('a'), 4 * base);
    for (let i = 0; i < 6; i++) rtt.timedOut('a', 0, 0);
    assert.equal(rtt.timeout('a'), 2000);
    rtt.sample('a', 40);
    assert.ok(rtt.timeout('a') <= base + 1, 'an answer ends the back-off');
    // A contact never measured that timed out gets longer too: a slow first contact (a
    // satellite link) is given the time to answer on the next try.
    const fresh = new RttEstimator(2000, 500);
    fresh.sample('lan', 1);
    assert.equal(fresh.timeout('far'), 1000);
    fresh.timedOut('far', 0, 0);
    assert.equal(fresh.timeout('far'), 2000);
  });

  it('never goes below the floor or above the ceiling', () => {
    const rtt = new RttEstimator(1000, 300);
    rtt.sample('fast', 1);
    assert.equal(rtt.timeout('fast'), 300);
    rtt.sample('slow', 5000);
    assert.equal(rtt.timeout('slow'), 1000);
  });

  it('presumes a contact dead after two timeouts in a row, until it answers, sends or ages out', () => {
    const rtt = new RttEstimator(2000, 500);
    rtt.timedOut('a', 1000, 500);
    assert.equal(rtt.silentTwiceSince('a', 0), false, 'one timeout is not enough');
    rtt.timedOut('a', 2000, 1000);
    assert.equal(rtt.silentTwiceSince('a', 0), true);
    assert.equal(rtt.silentTwiceSince('a', 1000), true);
    assert.equal(rtt.silentTwiceSince('a', 1001), false, 'the first of the two is too old');
    rtt.sample('a', 1);
    assert.equal(rtt.silentTwiceSince('a', 0), false, 'it answered');
    rtt.sample('b', 1);
    rtt.timedOut('b', 0, 0);
    rtt.timedOut('b', 0, 0);
    assert.equal(rtt.timeout('b'), 2000);
    rtt.heard('b');
    assert.equal(rtt.silentTwiceSince('b', 0), false, 'it sent a request');
    assert.equal(rtt.timeout('b'), 500, 'and its back-off ended');
  });

  it('counts requests that were out together and timed out together as one silence', () => {
    const rtt = new RttEstimator(2000, 500);
    rtt.sample('a', 1);
    rtt.timedOut('a', 1500, 1000);
    rtt.timedOut('a', 1600, 1100); // sent before the first timed out
    assert.equal(rtt.silentTwiceSince('a', 0), false);
    assert.equal(rtt.timeout('a'), 1000, 'backed off once');
    rtt.timedOut('a', 2600, 1600); // sent after it
    assert.equal(rtt.silentTwiceSince('a', 0), true);
    rtt.forgetSilences();
    assert.equal(rtt.silentTwiceSince('a', 0), false, 'forgotten');
  });

  it('forgets the least recently measured contact when full', () => {
    const rtt = new RttEstimator(2000, 10, 2);
    rtt.sample('a', 50);
    rtt.sample('b', 50);
    rtt.sample('a', 50);
    rtt.sample('c', 50);
    rtt.sample('a', 5);
    assert.equal(rtt.timeout('b'), rtt.timeout('never-measured'), 'b was forgotten');
    assert.notEqual(rtt.timeout('b'), rtt.timeout('c'));
    assert.ok(rtt.timeout('a') < 2000);
    assert.ok(rtt.timeout('c') < 2000);
  });
});
