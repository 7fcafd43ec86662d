// LiveSession: pushes applied in order, gaps closed with join+since, re-join after reconnect,
// conflicts rebased and retried.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { addItem, setDone } from "../../static/sessions/checklist.js";
import { SessionClient } from "../../static/sessions/client.js";
import { GAP_WAIT, LiveSession } from "../../static/sessions/session.js";
import { FakeSocket, FakeTokens, ManualTimers, flush } from "./helpers.mjs";

const SID = "6f1c2e9a-0000-4000-8000-000000000001";
const item = (id, done = false) => ({ id, text: id, done });
const change = (version, ops, username = "bob") => ({ version, ops, by: { id: username === "alice" ? 1 : 2, username }, at: "2025-01-01T00:00:00Z" });

async function joined({ version = 1, items = [], role = "editor" } = {}) {
  FakeSocket.reset();
  const timers = new ManualTimers();
  const client = new SessionClient({
    tokens: new FakeTokens(),
    url: "ws://test/api/v1/socket",
    WebSocket: FakeSocket,
    timers,
    random: () => 1,
    isOnline: () => true,
    network: null,
    heartbeatInterval: 0,
  });
  const live = new LiveSession(client);
  const ready = client.connect();
  await flush();
  FakeSocket.last.handshake();
  await ready;
  const join = live.join(SID);
  await flush();
  const ws = FakeSocket.last;
  ws.reply(ws.take("join"), { id: SID, title: "Groceries", version, data: { items }, role, members: [], present: [{ id: 1, username: "alice" }] });
  await join;
  return { client, live, timers };
}

// Reconnect after a drop: back off, handshake, and return the new socket.
async function reconnect(timers) {
  FakeSocket.last.serverClose(1006);
  timers.advance(timers.nextDelay());
  await flush();
  FakeSocket.last.handshake();
  await flush();
  return FakeSocket.last;
}

describe("LiveSession", () => {
  it("applies pushed patches in version order", async () => {
    const { live } = await joined();
    let renders = 0;
    live.on("document", () => (renders += 1));
    FakeSocket.last.deliver({ state: "patched", data: { session: SID, version: 2, ops: [{ op: "add", path: "/items/-", value: item("a") }], by: { id: 2, username: "bob" } } });
    assert.equal(live.doc.version, 2);
    assert.deepEqual(live.view().items, [item("a")]);
    assert.equal(renders, 1);
  });

  it("ignores pushes for another session", async () => {
    const { live } = await joined();
    FakeSocket.last.deliver({ state: "patched", data: { session: "other", version: 2, ops: [{ op: "add", path: "/x", value: 1 }] } });
    assert.equal(live.doc.version, 1);
  });

  it("closes a version gap by re-joining with since and applying the changes", async () => {
    const { live, timers } = await joined();
    const ws = FakeSocket.last;
    ws.deliver({ state: "patched", data: { session: SID, version: 4, ops: [{ op: "add", path: "/items/-", value: item("d") }] } });
    assert.equal(live.doc.version, 1, "nothing applied across a gap");
    await flush();
    assert.equal(ws.sent.filter((f) => f.state === "join").length, 0, "the pushes before it may be on their way");
    timers.advance(GAP_WAIT);
    await flush();
    const join = ws.take("join");
    assert.deepEqual(join.data, { session: SID, since: 1 });
    ws.reply(join, {
      id: SID,
      version: 4,
      changes: [2, 3, 4].map((v) => change(v, [{ op: "add", path: "/items/-", value: item(String(v)) }])),
    });
    await flush();
    assert.equal(live.doc.version, 4);
    assert.deepEqual(live.view().items.map((i) => i.id), ["2", "3", "4"]);
  });

  it("applies pushes that crossed on the way in version order, without a re-join", async () => {
    const { live, timers } = await joined();
    const ws = FakeSocket.last;
    const push = (version, id) => ({ state: "patched", data: { session: SID, version, ops: [{ op: "add", path: "/items/-", value: item(id) }] } });
    ws.deliver(push(3, "c"));
    ws.deliver(push(2, "b"));
    assert.equal(live.doc.version, 3);
    assert.deepEqual(live.view().items.map((i) => i.id), ["b", "c"]);
    timers.advance(GAP_WAIT);
    await flush();
    assert.equal(ws.sent.filter((f) => f.state === "join").length, 0);
  });

  it("takes the snapshot when the server answers a join with since by full data", async () => {
    const { live, timers } = await joined();
    const ws = FakeSocket.last;
    ws.deliver({ state: "patched", data: { session: SID, version: 9, ops: [] } });
    timers.advance(GAP_WAIT);
    await flush();
    ws.reply(ws.take("join"), { id: SID, title: "Groceries", version: 9, data: { items: [item("z")] }, role: "editor", members: [], present: [] });
    await flush();
    assert.equal(live.doc.version, 9);
    assert.deepEqual(live.view().items, [item("z")]);
  });

  it("re-joins with since after a reconnect, before queued requests go out, and refreshes presence", async () => {
    const { client, live, timers } = await joined({ version: 3 });
    FakeSocket.last.serverClose(1006);
    const queued = client.request("ping");
    timers.advance(timers.nextDelay());
    await flush();
    const ws = FakeSocket.last;
    ws.handshake();
    await flush();
    assert.deepEqual(ws.sent.map((f) => f.state), ["join"], "only the re-join goes out first");
    const join = ws.take("join");
    assert.deepEqual(join.data, { session: SID, since: 3 });
    ws.reply(join, { id: SID, version: 5, changes: [change(4, [{ op: "add", path: "/items/-", value: item("x") }]), change(5, [{ op: "add", path: "/items/-", value: item("y") }])] });
    await flush();
    const presence = ws.take("presence");
    ws.reply(presence, { present: [{ id: 1, username: "alice" }, { id: 2, username: "bob" }] });
    await flush();
    assert.equal(live.doc.version, 5);
    assert.deepEqual(live.view().items.map((i) => i.id), ["x", "y"]);
    assert.equal(live.doc.present.length, 2);
    assert.equal(client.status, "connected");
    ws.reply(ws.take("ping"), { server_time: "t" });
    await queued;
  });

  it("re-joins with since after the server process restarts (close 1012)", async () => {
    const { client, live, timers } = await joined({ version: 3 });
    FakeSocket.last.serverClose(1012);
    assert.equal(client.status, "reconnecting");
    timers.advance(timers.nextDelay());
    await flush();
    const ws = FakeSocket.last;
    ws.handshake();
    await flush();
    const join = ws.take("join");
    assert.deepEqual(join.data, { session: SID, since: 3 });
    ws.reply(join, { id: SID, version: 4, changes: [change(4, [{ op: "add", path: "/items/-", value: item("r") }])] });
    await flush();
    assert.equal(live.doc.version, 4);
    assert.deepEqual(live.view().items.map((i) => i.id), ["r"]);
    ws.reply(ws.take("presence"), { present: [{ id: 1, username: "alice" }] });
    await flush();
    assert.equal(client.status, "connected");
  });

  it("sends a change as a patch on the local version and applies it when accepted", async () => {
    const { live } = await joined({ version: 2 });
    const ws = FakeSocket.last;
    const done = live.change(addItem("milk", "m"));
    await flush();
    const patch = ws.take("patch");
    assert.equal(patch.data.version, 2);
    assert.deepEqual(patch.data.ops, [{ op: "add", path: "/items/-", value: { id: "m", text: "milk", done: false } }]);
    assert.deepEqual(live.view().items.map((i) => i.id), ["m"], "shown before the server answers");
    ws.reply(patch, { version: 3 });
    assert.deepEqual(await done, { version: 3 });
    assert.equal(live.doc.version, 3);
    assert.deepEqual(live.doc.data.items.map((i) => i.id), ["m"]);
  });

  it("rebases on conflict and retries without failing", async () => {
    const { live } = await joined({ version: 1, items: [item("a"), item("b")] });
    const ws = FakeSocket.last;
    const done = live.change(setDone("b", true));
    await flush();
    const first = ws.take("patch");
    assert.deepEqual(first.data.ops[0], { op: "test", path: "/items/1/id", value: "b" });
    ws.error(first, "conflict", "Version 1 is not current.", { data: { version: 2 } });
    await flush();
    const join = ws.take("join");
    assert.deepEqual(join.data, { session: SID, since: 1 });
    // Meanwhile bob inserted an item at the top: b is now at index 2.
    ws.reply(join, { id: SID, version: 2, changes: [change(2, [{ op: "add", path: "/items/0", value: item("top") }])] });
    await flush();
    const second = ws.take("patch");
    assert.equal(second.data.version, 2);
    assert.deepEqual(second.data.ops, [{ op: "test", path: "/items/2/id", value: "b" }, { op: "replace", path: "/items/2/done", value: true }]);
    ws.reply(second, { version: 3 });
    await done;
    assert.deepEqual(live.doc.data.items.map((i) => [i.id, i.done]), [["top", false], ["a", false], ["b", true]]);
  });

  it("holds a change made while offline and sends it, rebased, after the re-join", async () => {
    const { client, live, timers } = await joined({ version: 1 });
    FakeSocket.last.serverClose(1006);
    const done = live.change(addItem("offline", "o"));
    await flush();
    assert.deepEqual(live.view().items.map((i) => i.id), ["o"], "shown while waiting");
    timers.advance(timers.nextDelay());
    await flush();
    const ws = FakeSocket.last;
    ws.handshake();
    await flush();
    ws.reply(ws.take("join"), { id: SID, version: 2, changes: [change(2, [{ op: "add", path: "/items/-", value: item("x") }])] });
    await flush();
    ws.reply(ws.take("presence"), { present: [] });
    await flush();
    const patch = ws.take("patch");
    assert.equal(patch.data.version, 2);
    ws.reply(patch, { version: 3 });
    await done;
    assert.equal(client.status, "connected");
    assert.deepEqual(live.doc.data.items.map((i) => i.id), ["x", "o"]);
  });

  it("does not apply a change twice when its reply was lost with the connection", async () => {
    const { live, timers } = await joined({ version: 1 });
    const done = live.change(addItem("once", "o"));
    await flush();
    const { ops } = FakeSocket.last.take("patch").data; // the server applied it, but the reply is lost
    const ws = await reconnect(timers);
    ws.reply(ws.take("join"), { id: SID, version: 2, changes: [change(2, ops, "alice")] });
    await flush();
    ws.reply(ws.take("presence"), { present: [] });
    const result = await done;
    assert.deepEqual(result, { version: 2 }, "recognised in the change log as ours: by us, with our ops, at base + 1");
    assert.equal(ws.sent.filter((f) => f.state === "patch").length, 0);
    assert.deepEqual(live.doc.data.items.map((i) => i.id), ["o"]);
  });

  it("reports a refused change (a viewer) as an error and drops it from the view", async () => {
    const { live } = await joined({ role: "viewer" });
    assert.equal(live.doc.canEdit, false);
    const done = live.change(addItem("nope", "n"));
    await flush();
    FakeSocket.last.error(FakeSocket.last.take("patch"), "permission_denied", "Viewers cannot edit.");
    await assert.rejects(done, { code: "permission_denied" });
    assert.deepEqual(live.view().items, []);
  });

  it("buffers a push that arrives between its own patch and the reply", async () => {
    const { live } = await joined({ version: 1 });
    const ws = FakeSocket.last;
    const done = live.change(addItem("mine", "m"));
    await flush();
    const patch = ws.take("patch");
    ws.deliver({ state: "patched", data: { session: SID, version: 3, ops: [{ op: "add", path: "/items/-", value: item("t") }] } });
    ws.reply(patch, { version: 2 });
    await done;
    await flush();
    assert.equal(ws.sent.filter((f) => f.state === "join").length, 0, "no re-join needed");
    assert.deepEqual(live.doc.data.items.map((i) => i.id), ["m", "t"]);
    assert.equal(live.doc.version, 3);
  });

  it("takes a fresh snapshot when a push does not apply to its copy", async () => {
    const { live } = await joined({ version: 1 });
    const ws = FakeSocket.last;
    ws.deliver({ state: "patched", data: { session: SID, version: 2, ops: [{ op: "remove", path: "/items/5" }] } });
    await flush();
    const join = ws.take("join");
    assert.deepEqual(join.data, { session: SID }, "no since: the copy cannot be trusted");
    ws.reply(join, { id: SID, title: "Groceries", version: 2, data: { items: [] }, role: "editor", members: [], present: [] });
    await flush();
    assert.equal(live.doc.version, 2);
  });

  it("restores a revision on the version shown, after the changes still on their way", async () => {
    const { live } = await joined({ version: 4, items: [item("a")] });
    const ws = FakeSocket.last;
    const pending = live.change(addItem("milk", "m"));
    const restored = live.restoreRevision(2);
    await flush();
    assert.equal(ws.sent.filter((f) => f.state === "restore").length, 0, "not before the pending change is answered");
    ws.reply(ws.take("patch"), { version: 5 });
    await pending;
    await flush();
    const request = ws.take("restore");
    assert.deepEqual(request.data, { number: 2, version: 5 });
    const ops = [{ op: "remove", path: "/items/1" }, { op: "replace", path: "/items/0/done", value: true }];
    ws.reply(request, { version: 6, revision: 2, ops });
    assert.deepEqual(await restored, { version: 6, revision: 2, ops });
    assert.equal(live.doc.version, 6);
    assert.deepEqual(live.doc.data.items, [item("a", true)]);
    // A push at the next version follows on without a gap.
    ws.deliver({ state: "patched", data: { session: SID, version: 7, ops: [{ op: "add", path: "/items/-", value: item("b") }] } });
    assert.equal(live.doc.version, 7);
  });

  it("a restore that conflicts catches up and rejects: nothing is restored without the user", async () => {
    const { live } = await joined({ version: 3, items: [item("a")] });
    const ws = FakeSocket.last;
    const restored = live.restoreRevision(1);
    await flush();
    ws.error(ws.take("restore"), "conflict", "The session has changed.", { data: { version: 4 } });
    await flush();
    const join = ws.take("join");
    assert.deepEqual(join.data, { session: SID, since: 3 });
    ws.reply(join, { id: SID, version: 4, changes: [change(4, [{ op: "add", path: "/items/-", value: item("x") }])] });
    await assert.rejects(restored, (err) => err.code === "conflict");
    assert.equal(ws.sent.filter((f) => f.state === "restore").length, 0, "not sent again");
    assert.deepEqual(live.doc.data.items.map((i) => i.id), ["a", "x"]);
  });

  it("a restore needs the connection now", async () => {
    const { live } = await joined({ version: 1 });
    FakeSocket.last.serverClose(1006);
    await assert.rejects(live.restoreRevision(1), (err) => err.code === "offline");
  });

  it("a restore to a revision equal to the document leaves the version as it is", async () => {
    const { live } = await joined({ version: 2, items: [item("a")] });
    const ws = FakeSocket.last;
    const restored = live.restoreRevision(1);
    await flush();
    ws.reply(ws.take("restore"), { version: 2, revision: 1, ops: [] });
    await restored;
    assert.equal(live.doc.version, 2);
    ws.deliver({ state: "patched", data: { session: SID, version: 3, ops: [{ op: "add", path: "/items/-", value: item("b") }] } });
    assert.equal(live.doc.version, 3, "not left in flight");
  });

  it("updates presence from pushes", async () => {
    const { live } = await joined();
    let seen = null;
    live.on("presence", (d) => (seen = d));
    FakeSocket.last.deliver({ state: "presence", data: { session: SID, present: [{ id: 2, username: "bob" }], joined: { id: 2, username: "bob" } } });
    assert.deepEqual(live.doc.present, [{ id: 2, username: "bob" }]);
    assert.equal(seen.joined.username, "bob");
  });

  it("adopts the operations of a rebased reply and holds its change on screen until the pushes before it arrive", async () => {
    const { live } = await joined({ version: 1, items: [item("a"), item("b")] });
    const ws = FakeSocket.last;
    const done = live.change(setDone("b", true));
    await flush();
    const patch = ws.take("patch");
    assert.equal(patch.data.version, 1);
    // Bob inserted at the top first; the server rebased ours on his change (b is now at 2) and
    // its reply comes before his push.
    const moved = [{ op: "test", path: "/items/2/id", value: "b" }, { op: "replace", path: "/items/2/done", value: true }];
    ws.reply(patch, { version: 3, rebased: true, ops: moved });
    await flush();
    assert.equal(live.doc.version, 1, "waits for version 2");
    assert.equal(live.pendingCount, 1, "still shown as pending");
    assert.deepEqual(live.view().items.map((i) => [i.id, i.done]), [["a", false], ["b", true]]);
    ws.deliver({ state: "patched", data: { session: SID, version: 2, ops: [{ op: "add", path: "/items/0", value: item("top") }], by: { id: 2, username: "bob" } } });
    assert.deepEqual(await done, { version: 3, rebased: true, ops: moved });
    assert.equal(live.doc.version, 3);
    assert.deepEqual(live.doc.data.items.map((i) => [i.id, i.done]), [["top", false], ["a", false], ["b", true]]);
    assert.equal(ws.sent.filter((f) => f.state === "join").length, 0, "no conflict, no re-join");
  });

  it("re-joins when the pushes before its rebased change do not come", async () => {
    const { live, timers } = await joined({ version: 1, items: [item("a")] });
    const ws = FakeSocket.last;
    const done = live.change(addItem("mine", "m"));
    await flush();
    const patch = ws.take("patch");
    ws.reply(patch, { version: 3, rebased: true, ops: patch.data.ops });
    await flush();
    timers.advance(2000);
    await flush();
    const join = ws.take("join");
    assert.deepEqual(join.data, { session: SID, since: 1 });
    const theirs = [{ op: "add", path: "/items/-", value: item("t") }];
    ws.reply(join, { id: SID, version: 3, changes: [change(2, theirs), change(3, patch.data.ops, "alice")] });
    await done;
    assert.deepEqual(live.doc.data.items.map((i) => i.id), ["a", "t", "m"]);
  });

  it("shows a change on its way as the server will apply it, rebased on the pushes that came meanwhile", async () => {
    const { live } = await joined({ version: 1, items: [item("a"), item("b")] });
    const ws = FakeSocket.last;
    // An intent that trusts an index (made for the data it saw): rebased, it still means b.
    const byIndex = () => [{ op: "replace", path: "/items/1/done", value: true }];
    const done = live.change(byIndex);
    await flush();
    const patch = ws.take("patch");
    ws.deliver({ state: "patched", data: { session: SID, version: 2, ops: [{ op: "add", path: "/items/0", value: item("top") }], by: { id: 2, username: "bob" } } });
    assert.deepEqual(live.view().items.map((i) => [i.id, i.done]), [["top", false], ["a", false], ["b", true]]);
    ws.reply(patch, { version: 3, rebased: true, ops: [{ op: "replace", path: "/items/2/done", value: true }] });
    await done;
    assert.deepEqual(live.doc.data.items.map((i) => [i.id, i.done]), [["top", false], ["a", false], ["b", true]], "the view did not move");
  });

  it("takes a copy the server already had (its key) as applied", async () => {
    const { live } = await joined({ version: 1, items: [] });
    const ws = FakeSocket.last;
    const done = live.change(addItem("once", "o"));
    await flush();
    const patch = ws.take("patch");
    assert.equal(typeof patch.data.key, "string");
    ws.reply(patch, { version: 2, duplicate: true, ops: patch.data.ops });
    await done;
    assert.equal(live.doc.version, 2);
    assert.deepEqual(live.doc.data.items.map((i) => i.id), ["o"]);
  });
});
