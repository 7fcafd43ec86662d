// Matching replies to requests on `id`, and the bounded queue of requests made while offline.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { OFFLINE, OfflineQueue, PendingRequests, ProtocolError, QUEUE_FULL, TIMEOUT } from "../../static/sessions/requests.js";
import { ManualTimers } from "./helpers.mjs";

describe("PendingRequests", () => {
  it("gives every request a fresh id", () => {
    const p = new PendingRequests({ timers: new ManualTimers() });
    const ids = [p.add("ping", 1000).id, p.add("ping", 1000).id, p.add("list", 1000).id];
    assert.equal(new Set(ids).size, 3);
  });

  it("resolves each request with the reply carrying its id, in any order", async () => {
    const p = new PendingRequests({ timers: new ManualTimers() });
    const a = p.add("list", 1000);
    const b = p.add("ping", 1000);
    assert.ok(p.settle({ state: "ping", data: { server_time: "t" }, id: b.id }));
    assert.ok(p.settle({ state: "list", data: { sessions: [] }, id: a.id }));
    assert.deepEqual(await a.promise, { sessions: [] });
    assert.deepEqual(await b.promise, { server_time: "t" });
    assert.equal(p.size, 0);
  });

  it("rejects with a ProtocolError carrying code, text, data and field errors", async () => {
    const p = new PendingRequests({ timers: new ManualTimers() });
    const r = p.add("patch", 1000);
    p.settle({ state: "error", code: "conflict", error: "Version 3 is not current.", id: r.id, request_state: "patch", data: { version: 4 }, errors: { version: ["old"] } });
    await assert.rejects(r.promise, (err) => {
      assert.ok(err instanceof ProtocolError);
      assert.equal(err.code, "conflict");
      assert.equal(err.message, "Version 3 is not current.");
      assert.deepEqual(err.data, { version: 4 });
      assert.deepEqual(err.errors, { version: ["old"] });
      assert.equal(err.requestState, "patch");
      return true;
    });
  });

  it("does not take pushes, unknown ids or integer look-alikes of other ids", () => {
    const p = new PendingRequests({ timers: new ManualTimers() });
    p.add("ping", 1000);
    assert.equal(p.settle({ state: "patched", data: {} }), false);
    assert.equal(p.settle({ state: "ping", data: {}, id: "zzz" }), false);
    assert.equal(p.settle({ state: "ping", data: {}, id: 1 }), false);
    assert.equal(p.settle(null), false);
    assert.equal(p.size, 1);
  });

  it("times out, and then ignores the late reply", async () => {
    const timers = new ManualTimers();
    const p = new PendingRequests({ timers });
    const r = p.add("ping", 1000);
    timers.advance(999);
    assert.equal(p.size, 1);
    timers.advance(1);
    await assert.rejects(r.promise, (err) => err.code === TIMEOUT);
    assert.equal(p.settle({ state: "ping", data: {}, id: r.id }), false);
  });

  it("rejectAll settles every pending request and clears their timers", async () => {
    const timers = new ManualTimers();
    const p = new PendingRequests({ timers });
    const a = p.add("ping", 1000);
    const b = p.add("list", 1000);
    p.rejectAll((state) => new ProtocolError("connection_lost", state));
    await assert.rejects(a.promise, /ping/);
    await assert.rejects(b.promise, /list/);
    assert.equal(timers.pending, 0);
  });

  it("resolves a reply without data with {}", async () => {
    const p = new PendingRequests({ timers: new ManualTimers() });
    const r = p.add("leave", 1000);
    p.settle({ state: "leave", id: r.id });
    assert.deepEqual(await r.promise, {});
  });
});

describe("OfflineQueue", () => {
  it("keeps entries in order until drained", () => {
    const q = new OfflineQueue({ timers: new ManualTimers() });
    q.push("a");
    q.push("b");
    assert.deepEqual(q.drain().map((item) => item.payload), ["a", "b"]);
    assert.equal(q.size, 0);
  });

  it("refuses entries over the limit instead of growing", async () => {
    const q = new OfflineQueue({ limit: 2, timers: new ManualTimers() });
    q.push(1);
    q.push(2);
    await assert.rejects(q.push(3), (err) => err.code === QUEUE_FULL);
    assert.equal(q.size, 2);
  });

  it("rejects an entry that waited too long with `offline`, and forgets it", async () => {
    const timers = new ManualTimers();
    const q = new OfflineQueue({ timeout: 5000, timers });
    const first = q.push("a");
    timers.advance(2000);
    q.push("b");
    timers.advance(3000);
    await assert.rejects(first, (err) => err.code === OFFLINE);
    assert.deepEqual(q.drain().map((item) => item.payload), ["b"]);
  });

  it("drained entries no longer time out", async () => {
    const timers = new ManualTimers();
    const q = new OfflineQueue({ timeout: 10, timers });
    const p = q.push("a");
    const [item] = q.drain();
    timers.advance(100);
    item.resolve("sent");
    assert.equal(await p, "sent");
  });
});
