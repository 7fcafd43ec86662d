// The token store: sessionStorage only, rotation kept, one refresh at a time, sign-out revokes.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { REFRESH_URL, REVOKE_URL, SignedOutError, TOKEN_URL, TokenStore, tokenExpiry } from "../../static/sessions/tokens.js";
import { jwt } from "./helpers.mjs";

class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

function fakeFetch(routes) {
  const calls = [];
  const fn = async (url, init) => {
    calls.push({ url, body: JSON.parse(init.body) });
    const route = routes[url];
    if (route === "network") throw new TypeError("Failed to fetch");
    const [status, body] = typeof route === "function" ? route(JSON.parse(init.body)) : route;
    return { status, ok: status >= 200 && status < 300, json: async () => body };
  };
  fn.calls = calls;
  return fn;
}

// No real BroadcastChannel (it would link every store of this process), no real waiting.
const makeStore = (options) => new TokenStore({ channel: null, settle: async () => {}, ...options });

/** Two tabs' channels: what one posts, the other receives. */
function channelPair() {
  const make = () => ({ listeners: [], addEventListener(_, fn) { this.listeners.push(fn); }, postMessage(data) { this.peer.listeners.forEach((fn) => fn({ data })); } });
  const a = make();
  const b = make();
  a.peer = b;
  b.peer = a;
  return [a, b];
}

describe("TokenStore", () => {
  it("signs in and keeps the pair in storage", async () => {
    const storage = new MemoryStorage();
    const fetch = fakeFetch({ [TOKEN_URL]: [200, { access: "A1", refresh: "R1" }] });
    const t = makeStore({ storage, fetch });
    await t.signIn("alice", "pw");
    assert.deepEqual(fetch.calls[0].body, { username: "alice", password: "pw" });
    assert.equal(t.access, "A1");
    assert.equal(t.refreshToken, "R1");
    assert.equal(t.username, "alice");
    assert.ok(t.signedIn);
  });

  it("says so plainly when the credentials are wrong", async () => {
    const t = makeStore({ storage: new MemoryStorage(), fetch: fakeFetch({ [TOKEN_URL]: [401, { detail: "No active account" }] }) });
    await assert.rejects(t.signIn("alice", "bad"), /Wrong username or password/);
    assert.ok(!t.signedIn);
  });

  it("says when sign-ins are locked out (HTTP 429) instead of blaming the password", async () => {
    const t = makeStore({ storage: new MemoryStorage(), fetch: fakeFetch({ [TOKEN_URL]: [429, { detail: "Too many failed sign-ins" }] }) });
    await assert.rejects(t.signIn("alice", "pw"), /Too many failed sign-ins .* Try again later/);
    assert.ok(!t.signedIn);
  });

  it("stores the rotated refresh token", async () => {
    const storage = new MemoryStorage();
    const fetch = fakeFetch({ [REFRESH_URL]: [200, { access: "A2", refresh: "R2" }] });
    const t = makeStore({ storage, fetch });
    t.store({ access: "A1", refresh: "R1" });
    assert.equal(await t.refresh(), "A2");
    assert.deepEqual(fetch.calls[0].body, { refresh: "R1" });
    assert.equal(t.refreshToken, "R2");
  });

  it("runs one refresh at a time (a second would send a blacklisted token)", async () => {
    let n = 0;
    const fetch = fakeFetch({ [REFRESH_URL]: () => [200, { access: `A${++n}`, refresh: `R${n}` }] });
    const t = makeStore({ storage: new MemoryStorage(), fetch });
    t.store({ access: "A0", refresh: "R0" });
    const [a, b] = await Promise.all([t.refresh(), t.refresh()]);
    assert.equal(a, "A1");
    assert.equal(b, "A1");
    assert.equal(fetch.calls.length, 1);
  });

  it("signs out (forgets the tokens) when the refresh token is refused", async () => {
    const t = makeStore({ storage: new MemoryStorage(), fetch: fakeFetch({ [REFRESH_URL]: [401, { code: "token_not_valid" }] }) });
    t.store({ access: "A1", refresh: "R1" });
    await assert.rejects(t.refresh(), SignedOutError);
    assert.ok(!t.signedIn);
  });

  it("keeps the tokens when the server cannot be reached", async () => {
    const t = makeStore({ storage: new MemoryStorage(), fetch: fakeFetch({ [REFRESH_URL]: "network" }) });
    t.store({ access: "A1", refresh: "R1" });
    await assert.rejects(t.refresh(), (err) => !(err instanceof SignedOutError));
    assert.ok(t.signedIn);
  });

  it("revokes the refresh token on sign-out and forgets both", async () => {
    const fetch = fakeFetch({ [REVOKE_URL]: [200, {}] });
    const t = makeStore({ storage: new MemoryStorage(), fetch });
    t.store({ access: "A1", refresh: "R1" });
    assert.equal(await t.signOut(), true);
    assert.deepEqual(fetch.calls[0], { url: REVOKE_URL, body: { refresh: "R1" } });
    assert.ok(!t.signedIn);
  });

  it("reports a revoke that did not reach the server, tokens forgotten anyway", async () => {
    const t = makeStore({ storage: new MemoryStorage(), fetch: fakeFetch({ [REVOKE_URL]: "network" }) });
    t.store({ access: "A1", refresh: "R1" });
    assert.equal(await t.signOut(), false);
    assert.ok(!t.signedIn);
  });

  it("reads the expiry of an access token", () => {
    assert.equal(tokenExpiry(jwt(1000)), 1000000);
    assert.equal(tokenExpiry("not a jwt"), null);
    const t = makeStore({ storage: new MemoryStorage(), now: () => 995000 });
    t.store({ access: jwt(1000), refresh: "R" });
    assert.ok(t.accessExpired(5000));
    assert.ok(!t.accessExpired(4000));
  });

  it("hands a rotated pair to a duplicated tab holding the old refresh token", async () => {
    const [chanA, chanB] = channelPair();
    const fetch = fakeFetch({ [REFRESH_URL]: [200, { access: "A2", refresh: "R2" }] });
    const tabA = new TokenStore({ storage: new MemoryStorage(), fetch, channel: chanA });
    const tabB = new TokenStore({ storage: new MemoryStorage(), fetch, channel: chanB });
    tabA.store({ access: "A1", refresh: "R1" });
    tabB.store({ access: "A1", refresh: "R1" }); // sessionStorage copied by "Duplicate tab"
    await tabA.refresh();
    assert.equal(tabB.refreshToken, "R2");
    assert.equal(tabB.access, "A2");
  });

  it("ignores a rotation of tokens it does not hold", async () => {
    const [chanA, chanB] = channelPair();
    const fetch = fakeFetch({ [REFRESH_URL]: [200, { access: "A2", refresh: "R2" }] });
    const tabA = new TokenStore({ storage: new MemoryStorage(), fetch, channel: chanA });
    const tabB = new TokenStore({ storage: new MemoryStorage(), fetch, channel: chanB });
    tabA.store({ access: "A1", refresh: "R1" });
    tabB.store({ access: "X1", refresh: "other" });
    await tabA.refresh();
    assert.equal(tabB.refreshToken, "other");
  });

  it("does not sign out when its refresh lost the race to a sibling tab", async () => {
    const storage = new MemoryStorage();
    let t;
    const fetch = fakeFetch({ [REFRESH_URL]: [401, { code: "token_not_valid" }] });
    // The sibling's announcement arrives while this tab waits after the refusal.
    t = makeStore({ storage, fetch, settle: async () => t.adopt({ previous: "R1", access: "A9", refresh: "R9" }) });
    t.store({ access: "A1", refresh: "R1" });
    assert.equal(await t.refresh(), "A9");
    assert.ok(t.signedIn);
  });

  it("serialises refreshes through the lock and reuses a pair adopted meanwhile", async () => {
    const storage = new MemoryStorage();
    const fetch = fakeFetch({ [REFRESH_URL]: [200, { access: "A2", refresh: "R2" }] });
    let t;
    const locks = {
      request: async (name, fn) => {
        assert.equal(name, "sessions.tokens.refresh");
        t.adopt({ previous: "R1", access: jwt(4102444800), refresh: "R5" }); // a sibling held the lock
        return fn();
      },
    };
    t = makeStore({ storage, fetch, locks });
    t.store({ access: "A1", refresh: "R1" });
    await t.refresh();
    assert.equal(fetch.calls.length, 0, "no second rotation");
    assert.equal(t.refreshToken, "R5");
  });
});
