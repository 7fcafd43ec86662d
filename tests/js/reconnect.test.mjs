// The close-code table of protocol.md section 6 and the backoff schedule.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  BACKOFF,
  BACKOFF_LONG,
  DEFAULT_BACKOFF,
  LONG_BACKOFF,
  REFRESH,
  RESTART,
  RESTART_BACKOFF,
  STAY_CLOSED,
  backoffDelay,
  closeAction,
  scheduleFor,
} from "../../static/sessions/reconnect.js";

describe("closeAction follows the protocol's close-code table", () => {
  const table = [
    [1000, STAY_CLOSED],
    [1009, STAY_CLOSED],
    [4413, STAY_CLOSED],
    [4401, REFRESH],
    [4408, BACKOFF],
    [4429, BACKOFF_LONG],
    [4503, BACKOFF],
    [1006, BACKOFF],
    [1011, BACKOFF],
    [1012, RESTART],
  ];
  for (const [code, action] of table) {
    it(`${code} -> ${action}`, () => assert.equal(closeAction(code), action));
  }
  it("treats codes the table does not name as a lost connection", () => {
    for (const code of [1001, 1005, 4000, 4999]) assert.equal(closeAction(code), BACKOFF);
  });
});

describe("backoffDelay: exponential with full jitter", () => {
  it("grows as base * 2^attempt at the top of the jitter range", () => {
    const top = (attempt) => backoffDelay(attempt, DEFAULT_BACKOFF, () => 1);
    assert.deepEqual([0, 1, 2, 3, 4].map(top), [500, 1000, 2000, 4000, 8000]);
  });

  it("is capped at 10 s", () => {
    assert.equal(backoffDelay(5, DEFAULT_BACKOFF, () => 1), 10000);
    assert.equal(backoffDelay(50, DEFAULT_BACKOFF, () => 1), 10000);
    assert.equal(backoffDelay(1e9, DEFAULT_BACKOFF, () => 0.999), 9990);
  });

  it("spreads uniformly from zero (full jitter)", () => {
    assert.equal(backoffDelay(3, DEFAULT_BACKOFF, () => 0), 0);
    assert.equal(backoffDelay(3, DEFAULT_BACKOFF, () => 0.5), 2000);
    for (let i = 0; i < 200; i += 1) {
      const d = backoffDelay(4, DEFAULT_BACKOFF);
      assert.ok(d >= 0 && d <= 8000, `delay ${d} out of range`);
    }
  });

  it("reconnects soon after 1012 (service restart), spread over [0.1 s, 1 s], then backs off as usual", () => {
    assert.equal(scheduleFor(RESTART), RESTART_BACKOFF);
    assert.equal(backoffDelay(0, RESTART_BACKOFF, () => 0), 100);
    assert.equal(backoffDelay(0, RESTART_BACKOFF, () => 1), 1000);
    assert.equal(backoffDelay(3, RESTART_BACKOFF, () => 1), 8000);
    for (let i = 0; i < 200; i += 1) {
      const d = backoffDelay(0, RESTART_BACKOFF);
      assert.ok(d >= 100 && d <= 1000, `delay ${d} out of range`);
    }
  });

  it("waits longer after 4429, never almost at once", () => {
    assert.equal(scheduleFor(BACKOFF_LONG), LONG_BACKOFF);
    assert.equal(scheduleFor(BACKOFF), DEFAULT_BACKOFF);
    assert.equal(backoffDelay(0, LONG_BACKOFF, () => 0), LONG_BACKOFF.min);
    assert.equal(backoffDelay(0, LONG_BACKOFF, () => 1), 5000);
    assert.equal(backoffDelay(3, LONG_BACKOFF, () => 1), 40000);
    assert.equal(backoffDelay(20, LONG_BACKOFF, () => 1), LONG_BACKOFF.cap);
    for (let attempt = 0; attempt < 10; attempt += 1) {
      assert.ok(backoffDelay(attempt, LONG_BACKOFF, () => 0.3) >= backoffDelay(attempt, DEFAULT_BACKOFF, () => 0.3));
    }
  });
});
