// The outbox: unsent changes kept in (fake) localStorage across outages, reloads and closed tabs,
// and sent exactly once, also when a reply was lost with the connection.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { EditConflict, addItem, addText, editItem, revive } from "../../static/sessions/checklist.js";
import { SessionClient } from "../../static/sessions/client.js";
import { ProtocolError } from "../../static/sessions/requests.js";
import { Outbox, PREFIX, claimTab, discardUnlisted, unsentBySession } from "../../static/sessions/outbox.js";
import { LiveSession } from "../../static/sessions/session.js";
import { FakeSocket, FakeTokens, ManualTimers, MemoryStorage, flush } from "./helpers.mjs";

const SID = "6f1c2e9a-0000-4000-8000-000000000001";
const ALICE = { id: 1, username: "alice" };
const BOB = { id: 2, username: "bob" };
const snapshot = (version, items) => ({ id: SID, title: "Groceries", version, data: { items }, role: "editor", members: [], present: [ALICE] });
const change = (version, ops, by = BOB) => ({ version, ops, by, at: "2025-01-01T00:00:00Z" });
const patches = (ws) => ws.sent.filter((frame) => frame.state === "patch");

/** One page load: a client and a LiveSession keeping its outbox in `storage`, as tab `tab`. */
function load(storage, { tab = "t1", alive = () => Promise.resolve(new Set([tab])) } = {}) {
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
  const openOutbox = (session) => new Outbox({ storage, user: "1", session, tab, alive });
  const live = new LiveSession(client, { openOutbox, revive });
  client.connect().catch(() => {});
  return { client, live, timers };
}

/** Load, connect, join: the server answers the join with `snap`. */
async function joined(storage, snap, options) {
  const page = load(storage, options);
  await flush();
  FakeSocket.last.handshake(ALICE);
  const join = page.live.join(SID);
  await flush();
  const ws = FakeSocket.last;
  ws.reply(ws.take("join"), snap);
  await join;
  return { ...page, ws };
}

function stored(storage) {
  const keys = [...storage.map.keys()].filter((k) => k.startsWith(PREFIX));
  return keys.flatMap((k) => JSON.parse(storage.getItem(k)).entries);
}

// After a handshake on a reloaded page: the re-join takes the snapshot, then presence.
async function answerRejoin(ws, snap) {
  await flush();
  const join = ws.take("join");
  assert.deepEqual(join.data, { session: SID }, "a copy kept on the device is replaced by the server's snapshot");
  ws.reply(join, snap);
  await flush();
  ws.reply(ws.take("presence"), { present: [ALICE] });
  await flush();
}

describe("Outbox (the store)", () => {
  it("keeps a record per user, session and tab, and removes it when nothing is waiting", async () => {
    const storage = new MemoryStorage();
    const box = new Outbox({ storage, user: "1", session: SID, tab: "t1", alive: async () => new Set(["t1"]) });
    box.save({ doc: { id: SID, version: 3 }, entries: [{ key: "a", change: { type: "addText", text: "x" }, sent: null, at: 1 }] });
    assert.deepEqual([...storage.map.keys()], [`${PREFIX}.1.${SID}.t1`]);
    const again = new Outbox({ storage, user: "1", session: SID, tab: "t1", alive: async () => new Set(["t1"]) });
    const { doc, entries } = await again.load();
    assert.equal(doc.version, 3);
    assert.deepEqual(entries.map((e) => e.key), ["a"]);
    assert.deepEqual(unsentBySession(storage, "1"), new Map([[SID, 1]]));
    assert.equal((await new Outbox({ storage, user: "2", session: SID, tab: "t1", alive: async () => null }).load()).entries.length, 0, "other users' changes are not mine");
    again.save({ doc, entries: [] });
    assert.equal(storage.length, 0);
    // A user key that begins like another's ("name-a", "name-a.b") never reads the other's.
    new Outbox({ storage, user: "name-a.b", session: SID, tab: "t1" }).save({ doc: null, entries: [{ key: "z", change: {}, sent: null, at: 1 }] });
    assert.equal(unsentBySession(storage, "name-a").size, 0);
    assert.equal((await new Outbox({ storage, user: "name-a", session: SID, tab: "t2", alive: async () => new Set() }).load()).entries.length, 0);
  });

  it("adopts the changes of a closed tab, never those of a tab still open", async () => {
    const storage = new MemoryStorage();
    const entry = (key, at) => ({ key, change: { type: "addText", text: key }, sent: null, at });
    new Outbox({ storage, user: "1", session: SID, tab: "closed" }).save({ doc: { id: SID, version: 2 }, entries: [entry("c", 2)] });
    new Outbox({ storage, user: "1", session: SID, tab: "open" }).save({ doc: { id: SID, version: 1 }, entries: [entry("o", 1)] });
    new Outbox({ storage, user: "1", session: SID, tab: "me" }).save({ doc: { id: SID, version: 1 }, entries: [entry("m", 3)] });
    const mine = new Outbox({ storage, user: "1", session: SID, tab: "me", alive: async () => new Set(["me", "open"]) });
    const { doc, entries } = await mine.load();
    assert.deepEqual(entries.map((e) => e.key), ["c", "m"], "oldest first");
    assert.equal(doc.version, 2, "the newest copy of the document");
    assert.equal(storage.getItem(`${PREFIX}.1.${SID}.closed`), null, "the closed tab's record is taken over");
    assert.ok(storage.getItem(`${PREFIX}.1.${SID}.open`), "the open tab's record is left alone");
    // Without Web Locks nobody can tell which tabs are open: only this tab's own record is read.
    const unsure = new Outbox({ storage, user: "1", session: SID, tab: "other", alive: async () => null });
    assert.deepEqual((await unsure.load()).entries, []);
  });

  it("keeps the changes without the document when the quota is short, and says when it cannot keep them", () => {
    const storage = new MemoryStorage({ quota: 400 });
    const box = new Outbox({ storage, user: "1", session: SID, tab: "t1" });
    const entries = [{ key: "a", change: { type: "addText", text: "x" }, sent: null, at: 1 }];
    assert.equal(box.save({ doc: { id: SID, version: 1, data: { big: "y".repeat(500) } }, entries }), true);
    const record = JSON.parse(storage.getItem(box.key));
    assert.equal(record.doc, null);
    assert.equal(record.entries.length, 1);
    storage.broken = true;
    assert.equal(box.save({ doc: null, entries }), false);
    assert.equal(box.failed, true);
  });

  it("drops the closed tabs' changes to sessions no longer listed, never a live tab's or a listed session's", async () => {
    const storage = new MemoryStorage();
    const GONE = "6f1c2e9a-0000-4000-8000-0000000000ff";
    const entry = (key) => ({ key, change: { type: "addText", text: key }, sent: null, at: 1 });
    new Outbox({ storage, user: "1", session: GONE, tab: "closed" }).save({ doc: null, entries: [entry("a"), entry("b")] });
    new Outbox({ storage, user: "1", session: GONE, tab: "open" }).save({ doc: null, entries: [entry("c")] });
    new Outbox({ storage, user: "1", session: SID, tab: "closed" }).save({ doc: null, entries: [entry("d")] });
    new Outbox({ storage, user: "2", session: GONE, tab: "closed" }).save({ doc: null, entries: [entry("e")] });
    const alive = async () => new Set(["open"]);
    assert.equal(await discardUnlisted(storage, "1", new Set([SID]), alive), 2);
    assert.equal(storage.getItem(`${PREFIX}.1.${GONE}.closed`), null);
    assert.ok(storage.getItem(`${PREFIX}.1.${GONE}.open`), "a live tab's record is its own");
    assert.ok(storage.getItem(`${PREFIX}.1.${SID}.closed`), "a listed session's changes go out when it is opened");
    assert.ok(storage.getItem(`${PREFIX}.2.${GONE}.closed`), "another user's records are not mine");
    assert.equal(await discardUnlisted(storage, "1", new Set(), async () => null), 0, "without Web Locks nothing is dropped");
  });

  it("gives a duplicated tab its own id (the original holds the lock on the copied one)", async () => {
    const held = new Set();
    const locks = {
      request: async (name, options, callback) => {
        if (held.has(name) && options.signal) throw new Error("AbortError: timed out waiting");
        if (held.has(name)) return callback(null);
        held.add(name);
        return callback({ name });
      },
    };
    const original = new MemoryStorage();
    const first = await claimTab({ storage: original, locks });
    assert.equal(await claimTab({ storage: original, locks }).then((id) => id !== first), true);
    const reloaded = new MemoryStorage();
    reloaded.setItem("sessions.tab", "gone");
    assert.equal(await claimTab({ storage: reloaded, locks }), "gone", "a reload keeps its id");
  });
});

describe("LiveSession with an outbox: no change is ever dropped, none is applied twice", () => {
  it("keeps a change through a long outage and a reload, shows it at once, and sends it once the server is back", async () => {
    FakeSocket.reset();
    const storage = new MemoryStorage();
    const first = await joined(storage, snapshot(1, []));
    first.ws.serverClose(1006); // the server goes away
    let outcome = "pending";
    first.live.change(addItem("Milk", "m")).then(() => (outcome = "sent"), (err) => (outcome = err.code));
    for (let i = 0; i < 60; i += 1) {
      first.timers.advance(first.timers.nextDelay()); // ten minutes of failed attempts
      await flush();
      FakeSocket.last.serverClose(1006);
    }
    await flush();
    assert.equal(outcome, "pending", "no timeout drops it");
    assert.equal(first.client.status, "unreachable");
    assert.deepEqual(stored(storage).map((e) => e.change), [{ type: "addItem", text: "Milk", id: "m" }]);

    // The user reloads the page while the server is still away.
    const second = load(storage);
    const join = second.live.join(SID);
    await flush();
    assert.equal(second.live.doc.cached, true, "the copy kept on this device is on screen");
    assert.deepEqual(second.live.view().items.map((i) => i.text), ["Milk"]);
    assert.equal(second.live.pendingCount, 1);

    // The server is back; bob added bread meanwhile.
    const ws = FakeSocket.last;
    ws.handshake(ALICE);
    await answerRejoin(ws, snapshot(2, [{ id: "b", text: "Bread", done: false }]));
    await join;
    const [patch, ...more] = patches(ws);
    assert.equal(more.length, 0);
    assert.equal(patch.data.version, 2, "rebased on the server's version");
    ws.reply(patch, { version: 3 });
    await flush();
    assert.deepEqual(second.live.doc.data.items.map((i) => i.text), ["Bread", "Milk"]);
    assert.equal(second.live.pendingCount, 0);
    assert.equal(storage.length, 0, "acknowledged: the outbox is empty");
  });

  it("does not send again a patch the server applied when its reply was lost, even across a reload", async () => {
    FakeSocket.reset();
    const storage = new MemoryStorage();
    const first = await joined(storage, snapshot(1, ["milk"]));
    first.live.change(addText("eggs")).catch(() => {}); // two "eggs" would be a visible double
    await flush();
    const sent = first.ws.take("patch");
    assert.deepEqual(sent.data, { version: 1, ops: [{ op: "add", path: "/items/-", value: "eggs" }], key: sent.data.key });
    assert.match(sent.data.key, /^[A-Za-z0-9_.~-]{1,64}$/, "an idempotency key the server accepts");
    assert.deepEqual(stored(storage)[0].sent, { base: 1, ops: sent.data.ops }, "written down before it left");
    first.ws.serverClose(1006); // the server applied it as version 2; the reply is lost

    const second = load(storage);
    const join = second.live.join(SID);
    await flush();
    const ws = FakeSocket.last;
    ws.handshake(ALICE);
    await answerRejoin(ws, snapshot(2, ["milk", "eggs"]));
    await join;
    // Version 2 is the only version our patch (made on 1) could have become: is it ours?
    const since = ws.take("join");
    assert.deepEqual(since.data, { session: SID, since: 1 });
    ws.reply(since, { id: SID, version: 2, changes: [change(2, sent.data.ops, ALICE)] });
    await flush();
    assert.equal(patches(ws).length, 0, "not sent again");
    assert.deepEqual(second.live.doc.data.items, ["milk", "eggs"]);
    assert.equal(second.live.pendingCount, 0);
    assert.equal(storage.length, 0);
  });

  it("sends again, rebased, a patch the server never applied (someone else's change is at base + 1)", async () => {
    FakeSocket.reset();
    const storage = new MemoryStorage();
    const first = await joined(storage, snapshot(1, ["milk"]));
    first.live.change(addText("eggs")).catch(() => {});
    await flush();
    const sent = first.ws.take("patch");
    first.ws.serverClose(1006); // lost before it reached the server

    const second = load(storage);
    const join = second.live.join(SID);
    await flush();
    const ws = FakeSocket.last;
    ws.handshake(ALICE);
    await answerRejoin(ws, snapshot(2, ["milk", "bread"]));
    await join;
    const since = ws.take("join");
    ws.reply(since, { id: SID, version: 2, changes: [change(2, [{ op: "add", path: "/items/-", value: "bread" }])] });
    await flush();
    const [patch] = patches(ws);
    assert.deepEqual(patch.data, { version: 2, ops: sent.data.ops, key: sent.data.key }, "the same key: a second copy is harmless");
    ws.reply(patch, { version: 3 });
    await flush();
    assert.deepEqual(second.live.doc.data.items, ["milk", "bread", "eggs"]);
    assert.equal(storage.length, 0);
  });

  it("re-sends on the same version when nothing came after it: the version check makes that safe", async () => {
    FakeSocket.reset();
    const storage = new MemoryStorage();
    const page = await joined(storage, snapshot(1, ["milk"]));
    page.live.change(addText("eggs")).catch(() => {});
    await flush();
    const sent = page.ws.take("patch");
    page.ws.serverClose(1006);
    page.timers.advance(page.timers.nextDelay());
    await flush();
    const ws = FakeSocket.last;
    ws.handshake(ALICE);
    await flush();
    // The re-join reads version 1: the lost patch has not been applied (yet: another server
    // process may still be working on it)...
    ws.reply(ws.take("join"), { id: SID, version: 1, changes: [] });
    await flush();
    ws.reply(ws.take("presence"), { present: [ALICE] });
    await flush();
    const again = ws.take("patch");
    assert.deepEqual(again.data, sent.data, "the same patch on the same version");
    // ...and it lands now, so the re-sent one conflicts. The change at version 2 is ours.
    ws.error(again, "conflict", "Version 1 is not current.", { data: { version: 2 } });
    await flush();
    ws.reply(ws.take("join"), { id: SID, version: 2, changes: [change(2, sent.data.ops, ALICE)] });
    await flush();
    assert.equal(patches(ws).length, 0, "recognised as applied: not computed again on version 2");
    assert.deepEqual(page.live.doc.data.items, ["milk", "eggs"]);
    assert.equal(page.live.pendingCount, 0);
  });

  it("reports a change the server refuses and takes it out of the outbox", async () => {
    FakeSocket.reset();
    const storage = new MemoryStorage();
    const page = await joined(storage, { ...snapshot(1, []), role: "viewer" });
    const done = page.live.change(addItem("nope", "n"));
    await flush();
    page.ws.error(page.ws.take("patch"), "permission_denied", "Viewers cannot edit.");
    await assert.rejects(done, { code: "permission_denied" });
    assert.equal(storage.length, 0);
  });

  it("tells about a restored change the server refuses (nobody awaits its promise)", async () => {
    FakeSocket.reset();
    const storage = new MemoryStorage();
    const first = await joined(storage, snapshot(1, []));
    first.ws.serverClose(1006);
    first.live.change(addItem("Milk", "m")).catch(() => {});
    await flush();
    const second = load(storage);
    const refused = [];
    second.live.on("refused", (r) => refused.push(r.error.code));
    const join = second.live.join(SID);
    await flush();
    const ws = FakeSocket.last;
    ws.handshake(ALICE);
    await answerRejoin(ws, { ...snapshot(1, []), role: "viewer" }); // demoted during the outage
    await join;
    ws.error(ws.take("patch"), "permission_denied", "Viewers cannot edit.");
    await flush();
    assert.deepEqual(refused, ["permission_denied"]);
    assert.equal(storage.length, 0);
  });

  it("does not overwrite a text someone else changed while the edit waited", async () => {
    FakeSocket.reset();
    const storage = new MemoryStorage();
    const page = await joined(storage, snapshot(1, [{ id: "a", text: "Milk", done: false }]));
    page.ws.serverClose(1006);
    const done = page.live.change(editItem("a", "Oat milk", "Milk"));
    page.timers.advance(page.timers.nextDelay());
    await flush();
    const ws = FakeSocket.last;
    ws.handshake(ALICE);
    await flush();
    ws.reply(ws.take("join"), { id: SID, version: 2, changes: [change(2, [{ op: "replace", path: "/items/0/text", value: "Soy milk" }])] });
    await flush();
    ws.reply(ws.take("presence"), { present: [ALICE] });
    const err = await done.catch((e) => e);
    assert.ok(err instanceof EditConflict);
    assert.deepEqual([err.mine, err.theirs, err.from], ["Oat milk", "Soy milk", "Milk"]);
    assert.equal(page.live.lastRemote.by.username, "bob", "who changed it");
    assert.equal(patches(ws).length, 0);
    assert.equal(storage.length, 0);
  });

  it("drops what is waiting, here and in the outbox, once the session can no longer be joined (end)", async () => {
    FakeSocket.reset();
    const storage = new MemoryStorage();
    const page = await joined(storage, snapshot(1, []));
    page.ws.close(1006);
    await flush();
    const results = [addItem("Milk", "m"), addItem("Eggs", "e")].map((intent) => page.live.change(intent).catch((e) => e));
    await flush();
    assert.equal(stored(storage).length, 2, "kept while the server is away");
    const gone = new ProtocolError("not_found", "alice removed you.");
    assert.equal(page.live.end(gone), 2);
    assert.equal(page.live.end(gone), 2, "the same count on every call");
    page.client.close();
    for (const result of await Promise.all(results)) assert.ok(result instanceof ProtocolError);
    assert.equal(page.live.pendingCount, 0);
    assert.equal(storage.length, 0, "nothing is kept for a session that cannot be joined");
  });

  it("keeps the change in memory and says so when the storage refuses it", async () => {
    FakeSocket.reset();
    const storage = new MemoryStorage();
    const page = await joined(storage, snapshot(1, []));
    storage.broken = true;
    page.live.change(addItem("Milk", "m")).catch(() => {});
    assert.equal(page.live.persisted, false);
    assert.equal(page.live.pendingCount, 1);
    await flush();
    page.ws.reply(page.ws.take("patch"), { version: 2 });
    await flush();
    assert.equal(page.live.pendingCount, 0);
  });
});
