// SessionClient against a scripted socket: handshake, id matching, the close-code table,
// token renewal, the offline queue and the heartbeat.
import assert from "node:assert/strict";
import { beforeEach, describe, it } from "node:test";

import { END_REASONS, SessionClient } from "../../static/sessions/client.js";
import { FakeSocket, FakeTokens, ManualTimers, flush } from "./helpers.mjs";

function setup(options = {}) {
  FakeSocket.reset();
  const timers = new ManualTimers();
  const tokens = new FakeTokens();
  const client = new SessionClient({
    tokens,
    url: "ws://test/api/v1/socket",
    WebSocket: FakeSocket,
    timers,
    random: () => 1, // top of the jitter range: deterministic delays
    isOnline: () => true,
    network: null,
    heartbeatInterval: 0,
    ...options,
  });
  const statuses = [];
  client.on("status", (s) => statuses.push(s));
  return { client, timers, tokens, statuses };
}

async function connected(options) {
  const ctx = setup(options);
  const ready = ctx.client.connect();
  await flush();
  FakeSocket.last.handshake();
  await ready;
  return ctx;
}

describe("SessionClient: connecting and requests", () => {
  beforeEach(() => FakeSocket.reset());

  it("sends the access token as the first frame, then is connected", async () => {
    const { client, tokens, statuses } = setup();
    const ready = client.connect();
    await flush();
    const ws = FakeSocket.last;
    assert.equal(ws.url, "ws://test/api/v1/socket");
    assert.ok(!ws.url.includes("token"), "the token never travels in the URL");
    ws.open();
    assert.deepEqual(ws.sent, [{ token: tokens.access }]);
    ws.sent = [];
    ws.deliver({ state: "initialised", data: { user: { id: 1, username: "alice" }, protocol: 1 } });
    await ready;
    assert.deepEqual(statuses, ["connecting", "connected"]);
    assert.deepEqual(client.user, { id: 1, username: "alice" });
  });

  it("matches replies to requests on id, whatever their order", async () => {
    const { client } = await connected();
    const ws = FakeSocket.last;
    const list = client.request("list");
    const ping = client.request("ping");
    const [l, p] = [ws.take("list"), ws.take("ping")];
    assert.notEqual(l.id, p.id);
    ws.reply(p, { server_time: "now" });
    ws.reply(l, { sessions: [{ id: "s" }] });
    assert.deepEqual(await list, { sessions: [{ id: "s" }] });
    assert.deepEqual(await ping, { server_time: "now" });
  });

  it("rejects with the server's error code and text", async () => {
    const { client } = await connected();
    const p = client.request("join", { session: "nope" });
    FakeSocket.last.error(FakeSocket.last.take("join"), "not_found", "No such session.");
    await assert.rejects(p, { code: "not_found", message: "No such session." });
  });

  it("times out a request that gets no reply", async () => {
    const { client, timers } = await connected({ requestTimeout: 1000 });
    const p = client.request("ping");
    timers.advance(1000);
    await assert.rejects(p, { code: "timeout" });
  });

  it("hands pushes to on(state) handlers and id-less errors to on('error')", async () => {
    const { client } = await connected();
    const got = [];
    client.on("patched", (d) => got.push(d));
    client.on("error", (e) => got.push(e.code));
    FakeSocket.last.deliver({ state: "patched", data: { version: 2 } });
    FakeSocket.last.deliver({ state: "error", code: "rate_limited", error: "slow down" });
    assert.deepEqual(got, [{ version: 2 }, "rate_limited"]);
  });

  it("keeps quiet about errors that announce a close it recovers from", async () => {
    const { client } = await connected();
    const got = [];
    client.on("error", (e) => got.push(e.code));
    for (const code of ["token_expired", "not_authenticated", "auth_timeout", "unavailable"]) {
      FakeSocket.last.deliver({ state: "error", code, error: "closing" });
    }
    FakeSocket.last.deliver({ state: "error", code: "too_many_connections", error: "Too many." });
    assert.deepEqual(got, ["too_many_connections"]);
  });

  it("refuses locally a frame bigger than the server accepts (4413 would close for good)", async () => {
    const { client } = await connected({ maxMessageBytes: 100 });
    await assert.rejects(client.request("create", { title: "x".repeat(200) }), { code: "message_too_large" });
    assert.equal(FakeSocket.last.sent.length, 0);
  });

  it("renews an expired access token before connecting", async () => {
    const { client, tokens } = setup();
    tokens.expired = true;
    client.connect();
    await flush();
    assert.equal(tokens.refreshCalls, 1);
    assert.equal(FakeSocket.last.handshake(), tokens.access);
  });
});

describe("SessionClient: the close-code table", () => {
  for (const code of [1000, 1009, 4413]) {
    it(`stays closed on ${code}`, async () => {
      const { client, timers, statuses } = await connected();
      const pending = client.request("ping");
      FakeSocket.last.serverClose(code);
      await assert.rejects(pending, { code: "connection_lost" });
      timers.advance(600000);
      await flush();
      assert.equal(FakeSocket.instances.length, 1);
      assert.equal(statuses.at(-1), "closed");
      assert.equal(client.status, "closed");
      await assert.rejects(client.request("ping"), { code: "closed" });
    });
  }

  for (const code of [1006, 1011, 4408, 4503, 1001]) {
    it(`reconnects with backoff on ${code}`, async () => {
      const { timers, statuses } = await connected();
      FakeSocket.last.serverClose(code);
      assert.equal(statuses.at(-1), "reconnecting");
      assert.equal(timers.nextDelay(), 500);
      timers.advance(499);
      assert.equal(FakeSocket.instances.length, 1);
      timers.advance(1);
      await flush();
      assert.equal(FakeSocket.instances.length, 2);
    });
  }

  it("backs off exponentially (at most 10 s) while the server stays away, then says unreachable", async () => {
    const { client, timers, statuses } = await connected();
    const delays = [];
    for (let i = 0; i < 7; i += 1) {
      FakeSocket.last.serverClose(1006);
      delays.push(timers.nextDelay());
      if (i === 0) assert.equal(statuses.at(-1), "reconnecting");
      timers.advance(timers.nextDelay());
      await flush();
    }
    assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 10000, 10000]);
    assert.equal(statuses.at(-1), "unreachable", "the browser is online: it is the server that does not answer");
    assert.ok(!statuses.includes("offline"));
    assert.equal(client.retryAt, null, "an attempt is under way, none scheduled");
    FakeSocket.last.handshake();
    await flush();
    assert.equal(statuses.at(-1), "connected");
    FakeSocket.last.serverClose(1006);
    assert.equal(timers.nextDelay(), 500, "a successful handshake resets the schedule");
  });

  it("retries after an error that no close event follows (Node's WebSocket on a refused connect)", async () => {
    const { timers, statuses } = await connected();
    FakeSocket.last.serverClose(1006);
    timers.advance(timers.nextDelay());
    await flush();
    const refused = FakeSocket.last;
    refused.errorOnly();
    assert.equal(FakeSocket.instances.length, 2);
    timers.advance(timers.nextDelay()); // the grace for a close event passes: the socket is given up
    assert.deepEqual(refused.closedWith, { code: undefined, reason: undefined });
    assert.equal(statuses.at(-1), "reconnecting");
    timers.advance(timers.nextDelay()); // the backoff
    await flush();
    assert.equal(FakeSocket.instances.length, 3, "a new attempt");
    FakeSocket.last.handshake();
    await flush();
    assert.equal(statuses.at(-1), "connected");
  });

  it("says offline, not unreachable, when the browser has no network", async () => {
    let online = true;
    const { statuses } = await connected({ isOnline: () => online });
    online = false;
    FakeSocket.last.serverClose(1006);
    assert.equal(statuses.at(-1), "offline");
  });

  it("tells when the next attempt is due, and Retry now starts it at once", async () => {
    let now = 1000;
    const { client, timers, statuses } = await connected({ now: () => now });
    const retries = [];
    client.on("retry", (detail) => retries.push(detail));
    FakeSocket.last.serverClose(1006);
    assert.deepEqual(retries, [{ delay: 500, retryAt: 1500, attempt: 1 }]);
    assert.equal(client.retryAt, 1500);
    now = 1100;
    assert.equal(client.reconnectNow(), true);
    assert.equal(timers.pending, 0, "the backoff timer is gone");
    assert.equal(statuses.at(-1), "connecting");
    await flush();
    assert.equal(FakeSocket.instances.length, 2, "a new socket at once");
    assert.equal(client.reconnectNow(), false, "nothing to skip while an attempt is under way");
    FakeSocket.last.handshake();
    await flush();
    assert.equal(statuses.at(-1), "connected");
  });

  it("whenReady(Infinity) waits as long as the outage lasts", async () => {
    const { client, timers } = await connected();
    FakeSocket.last.serverClose(1006);
    let settled = false;
    client.whenReady(Infinity).then(() => (settled = true), () => (settled = "rejected"));
    for (let i = 0; i < 60; i += 1) {
      timers.advance(timers.nextDelay()); // an hour of failed attempts
      await flush();
      FakeSocket.last.serverClose(1006);
    }
    await flush();
    assert.equal(settled, false);
    timers.advance(timers.nextDelay());
    await flush();
    FakeSocket.last.handshake();
    await flush();
    assert.equal(settled, true);
  });

  it("reconnects within a second on 1012 (the server process restarts), without signing out", async () => {
    const { client, timers, tokens, statuses } = await connected({ random: () => 0 });
    const refreshes = tokens.refreshCalls;
    let signedOut = false;
    client.on("signedout", () => (signedOut = true));
    FakeSocket.last.serverClose(1012);
    assert.equal(statuses.at(-1), "reconnecting");
    assert.equal(timers.nextDelay(), 100, "not at once: the clients of a drained process spread out");
    timers.advance(99);
    assert.equal(FakeSocket.instances.length, 1);
    timers.advance(1);
    await flush();
    assert.equal(FakeSocket.instances.length, 2);
    FakeSocket.last.handshake();
    await flush();
    assert.equal(statuses.at(-1), "connected");
    assert.equal(tokens.refreshCalls, refreshes, "the token is still good: no refresh");
    assert.ok(!signedOut);
  });

  it("spreads the reconnect after 1012 over at most a second", async () => {
    const { timers } = await connected({ random: () => 1 });
    FakeSocket.last.serverClose(1012);
    assert.equal(timers.nextDelay(), 1000);
  });

  it("waits longer after 4429", async () => {
    const { timers } = await connected();
    FakeSocket.last.serverClose(4429);
    assert.equal(timers.nextDelay(), 5000);
  });

  it("refreshes the token on 4401 and reconnects at once with the new one", async () => {
    const { tokens } = await connected();
    FakeSocket.last.serverClose(4401);
    await flush();
    assert.equal(tokens.refreshCalls, 1);
    assert.equal(FakeSocket.instances.length, 2);
    assert.equal(FakeSocket.last.handshake(), tokens.access);
  });

  it("signs out and stays closed when the refresh on 4401 is refused", async () => {
    const { client, tokens, timers, statuses } = await connected();
    let signedOut = null;
    client.on("signedout", (err) => (signedOut = err));
    tokens.refreshResult = "signed_out";
    FakeSocket.last.serverClose(4401);
    await flush();
    assert.ok(signedOut);
    assert.equal(statuses.at(-1), "closed");
    timers.advance(600000);
    await flush();
    assert.equal(FakeSocket.instances.length, 1);
  });

  it("says why the server ended the socket when the refresh after it is refused", async () => {
    const { client, tokens } = await connected();
    let signedOut = null;
    const ended = [];
    client.on("signedout", (err) => (signedOut = err));
    client.on("ended", (detail) => ended.push(detail));
    tokens.refreshResult = "signed_out";
    FakeSocket.last.deliver({ state: "error", code: "not_authenticated", error: "Password changed.", data: { reason: "password_changed" } });
    FakeSocket.last.serverClose(4401);
    await flush();
    assert.deepEqual(ended, [{ reason: "password_changed" }]);
    assert.equal(signedOut.message, END_REASONS.password_changed);
    assert.equal(signedOut.reason, "password_changed");
  });

  it("forgets the reason once a renewed sign-in connects again", async () => {
    const { client, tokens } = await connected();
    let signedOut = null;
    client.on("signedout", (err) => (signedOut = err));
    FakeSocket.last.deliver({ state: "error", code: "not_authenticated", error: "Signed out.", data: { reason: "logged_out" } });
    FakeSocket.last.serverClose(4401);
    await flush();
    FakeSocket.last.handshake();
    await flush();
    tokens.refreshResult = "signed_out";
    FakeSocket.last.serverClose(4401);
    await flush();
    assert.equal(signedOut.reason, null);
    assert.notEqual(signedOut.message, END_REASONS.logged_out);
  });

  it("signs out at once when another tab signed out (the token store says so), with its message", async () => {
    const { client, tokens, statuses } = await connected();
    const ws = FakeSocket.last;
    const { SignedOutError } = await import("../../static/sessions/tokens.js");
    const signedOut = [];
    client.on("signedout", (err) => signedOut.push(err));
    tokens.emit("signedout", new SignedOutError("You signed out in another tab.", { reason: "logged_out" }));
    assert.equal(signedOut.length, 1);
    assert.equal(signedOut[0].message, "You signed out in another tab.");
    assert.equal(statuses.at(-1), "closed");
    assert.equal(ws.closedWith.code, 1000);
    // The server's own 4401 logged_out, arriving after, changes nothing.
    ws.deliver({ state: "error", code: "not_authenticated", error: "Signed out.", data: { reason: "logged_out" } });
    ws.serverClose(4401);
    tokens.emit("signedout", new SignedOutError("again", { reason: "logged_out" }));
    await flush();
    assert.equal(signedOut.length, 1);
    assert.equal(tokens.refreshCalls, 0);
    assert.equal(FakeSocket.instances.length, 1);
  });

  it("backs off when the refresh cannot reach the server, then tries again", async () => {
    const { tokens, timers } = await connected();
    tokens.refreshResult = "network";
    FakeSocket.last.serverClose(4401);
    await flush();
    assert.equal(FakeSocket.instances.length, 1);
    assert.equal(timers.nextDelay(), 500);
  });

  it("gives up after new tokens are refused again and again (a deactivated user)", async () => {
    const { client } = await connected();
    let signedOut = false;
    client.on("signedout", () => (signedOut = true));
    for (let i = 0; i < 3; i += 1) {
      FakeSocket.last.open();
      FakeSocket.last.serverClose(4401);
      await flush();
    }
    assert.ok(signedOut);
  });

  it("close() closes with 1000 and never comes back", async () => {
    const { client, timers } = await connected();
    const ws = FakeSocket.last;
    let detail = null;
    client.on("closed", (d) => (detail = d));
    client.close();
    assert.equal(ws.closedWith.code, 1000);
    assert.deepEqual(detail, { code: 1000, reason: "Closed.", byClient: true });
    timers.advance(600000);
    assert.equal(FakeSocket.instances.length, 1);
    assert.equal(client.status, "closed");
  });
});

describe("SessionClient: token renewal on a live socket", () => {
  it("answers token_expiring by refreshing and sending authenticate", async () => {
    const { client, tokens } = await connected();
    let pushed = null;
    client.on("token_expiring", (d) => (pushed = d));
    FakeSocket.last.deliver({ state: "token_expiring", data: { token_expires_at: "soon" } });
    await flush();
    assert.deepEqual(pushed, { token_expires_at: "soon" });
    const auth = FakeSocket.last.take("authenticate");
    assert.equal(auth.data.token, tokens.access);
    assert.equal(tokens.refreshCalls, 1);
    FakeSocket.last.reply(auth, { token_expires_at: "later" });
    await flush();
    assert.equal(client.status, "connected");
  });

  it("signs out when the refresh token was refused", async () => {
    const { client, tokens } = await connected();
    let signedOut = false;
    client.on("signedout", () => (signedOut = true));
    tokens.refreshResult = "signed_out";
    FakeSocket.last.deliver({ state: "token_expiring", data: {} });
    await flush();
    assert.ok(signedOut);
    assert.equal(FakeSocket.last.closedWith.code, 1000);
  });
});

describe("SessionClient: requests made while offline", () => {
  it("queues them and sends them in order once connected again", async () => {
    const { client, timers } = await connected();
    FakeSocket.last.serverClose(1006);
    const a = client.request("list");
    const b = client.request("ping");
    timers.advance(500);
    await flush();
    const ws = FakeSocket.last;
    ws.handshake();
    await flush();
    assert.deepEqual(ws.sent.map((f) => f.state), ["list", "ping"]);
    ws.reply(ws.sent[0], { sessions: [] });
    ws.reply(ws.sent[1], { server_time: "t" });
    assert.deepEqual(await a, { sessions: [] });
    assert.deepEqual(await b, { server_time: "t" });
  });

  it("bounds the queue's length", async () => {
    const { client } = await connected({ queueLimit: 2 });
    FakeSocket.last.serverClose(1006);
    client.request("ping");
    client.request("ping");
    await assert.rejects(client.request("ping"), { code: "offline_queue_full" });
  });

  it("bounds the wait: a request still queued after queueTimeout rejects with `offline`", async () => {
    const { client, timers } = await connected({ queueTimeout: 3000 });
    FakeSocket.last.serverClose(4429); // first retry only after 5 s
    const p = client.request("ping");
    timers.advance(3000);
    await assert.rejects(p, { code: "offline" });
  });

  it("rejects queued requests when the client closes for good", async () => {
    const { client, timers } = await connected();
    FakeSocket.last.serverClose(1006);
    const p = client.request("ping");
    timers.advance(500);
    await flush();
    FakeSocket.last.serverClose(1000);
    await assert.rejects(p, { code: "closed" });
  });
});

describe("SessionClient: heartbeat", () => {
  it("drops a socket that stops answering pings and reconnects", async () => {
    const { timers, statuses } = await connected({ heartbeatInterval: 1000, requestTimeout: 500 });
    const ws = FakeSocket.last;
    timers.advance(1000);
    assert.equal(ws.sent.at(-1).state, "ping");
    timers.advance(500);
    await flush();
    assert.equal(ws.closedWith.code, 4000);
    assert.equal(statuses.at(-1), "reconnecting");
    timers.advance(500);
    await flush();
    assert.equal(FakeSocket.instances.length, 2);
  });

  it("keeps pinging while the server answers", async () => {
    const { timers } = await connected({ heartbeatInterval: 1000 });
    const ws = FakeSocket.last;
    for (let i = 0; i < 3; i += 1) {
      timers.advance(1000);
      ws.reply(ws.take("ping"), { server_time: "t" });
      await flush();
    }
    assert.equal(ws.closedWith, null);
  });
});
