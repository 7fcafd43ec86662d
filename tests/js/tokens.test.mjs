// The token store: the access token in memory only, the refresh token in a cookie the script never
// sees (the fake site below plays the server and the browser's cookie jar), one refresh at a time
// across tabs, rotation races that do not sign a tab out, sign-out that ends every tab.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  MAGIC_CLAIM_URL,
  MAGIC_LINK_URL,
  REFRESH_URL,
  REVOKE_URL,
  SIGNED_OUT_ELSEWHERE,
  SIGN_IN_URL,
  SignedOutError,
  TokenStore,
  tokenExpiry,
} from "../../static/sessions/tokens.js";
import { MemoryStorage, flush, jwt } from "./helpers.mjs";

const FAR = 4102444800; // 2100-01-01, seconds

/** An access token of `userId` (a distinct one per `n`). */
function access(userId, n, exp = FAR) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  return `${b64({ alg: "HS256" })}.${b64({ exp, token_type: "access", user_id: userId, jti: `a${n}` })}.sig`;
}

/**
 * The server's token API and the browser's cookie jar, shared by every tab (store) of one browser.
 * The cookie is attached when a request is sent and replaced when its response arrives, as a
 * browser does; a rotated refresh token is blacklisted (SimpleJWT's BLACKLIST_AFTER_ROTATION).
 */
class FakeSite {
  constructor() {
    this.jar = null; // the refresh cookie, or null
    this.valid = new Set(); // refresh tokens neither rotated nor revoked
    this.users = { alice: 1, bob: 2 };
    this.owner = new Map(); // refresh token -> user id
    this.n = 0;
    this.calls = [];
    this.down = false;
    this.fetch = async (url, init) => {
      const cookie = this.jar;
      const body = JSON.parse(init.body);
      this.calls.push({ url, cookie, body, credentials: init.credentials });
      await new Promise((resolve) => setImmediate(resolve)); // in flight
      if (this.down) throw new TypeError("Failed to fetch");
      const [status, data] = this.handle(url, cookie, body);
      return { status, ok: status >= 200 && status < 300, json: async () => data };
    };
  }

  issue(userId) {
    this.n += 1;
    const refresh = `R${this.n}`;
    this.valid.add(refresh);
    this.owner.set(refresh, userId);
    this.jar = refresh;
    return [200, { access: access(userId, this.n) }];
  }

  handle(url, cookie, body) {
    if (url === SIGN_IN_URL) {
      if (!(body.username in this.users) || body.password !== "pw") return [401, { detail: "No active account" }];
      return this.issue(this.users[body.username]);
    }
    if (url === REFRESH_URL) {
      if (!this.valid.has(cookie)) return [401, { code: "token_not_valid" }];
      this.valid.delete(cookie);
      return this.issue(this.owner.get(cookie));
    }
    if (url === MAGIC_LINK_URL) return [202, { detail: "If this username or email belongs to an account, a link is on its way." }];
    if (url === MAGIC_CLAIM_URL) {
      if (body.token !== "good") return [403, { detail: "This sign-in link was asked for in another browser.", code: "other_browser" }];
      return [200, { ...this.issue(this.users.bob)[1], username: "bob" }];
    }
    if (url === REVOKE_URL) {
      this.jar = null;
      if (!this.valid.has(cookie)) return [401, { code: "token_not_valid" }];
      this.valid.delete(cookie);
      return [200, {}];
    }
    return [404, null];
  }

  get refreshes() {
    return this.calls.filter((c) => c.url === REFRESH_URL);
  }
}

/** Web Locks shared by the tabs of one browser: one holder at a time, in order. */
function sharedLocks() {
  let tail = Promise.resolve();
  return {
    request(name, fn) {
      assert.equal(name, "sessions.tokens.refresh");
      const run = tail.then(() => fn());
      tail = run.catch(() => {});
      return run;
    },
  };
}

/** A BroadcastChannel between tabs: what one posts, every other receives (a copy, as a browser). */
function channelHub() {
  const members = [];
  return () => {
    const me = {
      listeners: [],
      addEventListener(_, fn) {
        this.listeners.push(fn);
      },
      postMessage(data) {
        for (const other of members) if (other !== me) for (const fn of other.listeners) fn({ data: structuredClone(data) });
      },
    };
    members.push(me);
    return me;
  };
}

/** A browser: one site, one localStorage, shared locks and channel; `tab()` opens a store. */
function browser({ locks = true, channels = true } = {}) {
  const site = new FakeSite();
  const storage = new MemoryStorage();
  const lockManager = locks ? sharedLocks() : undefined;
  const hub = channelHub();
  const tab = (options = {}) =>
    new TokenStore({
      storage,
      legacy: new MemoryStorage(),
      fetch: site.fetch,
      channel: channels ? hub() : null,
      locks: lockManager,
      settle: async () => flush(),
      ...options,
    });
  return { site, storage, tab };
}

const storedText = (storage) => [...storage.map.entries()].map(([k, v]) => `${k}=${v}`).join("\n");

describe("TokenStore", () => {
  it("signs in with the cookie endpoint: the access token in memory, no token in storage", async () => {
    const { site, storage, tab } = browser();
    const t = tab();
    await t.signIn("alice", "pw");
    assert.deepEqual(site.calls[0], { url: SIGN_IN_URL, cookie: null, body: { username: "alice", password: "pw" }, credentials: "same-origin" });
    assert.equal(t.access, access(1, 1));
    assert.equal(site.jar, "R1", "the refresh token is the browser's cookie, never the script's");
    assert.ok(t.signedIn);
    assert.equal(t.username, "alice");
    assert.equal(t.userKey, "id-1");
    assert.deepEqual(JSON.parse(storage.getItem("sessions.user")), { id: 1, username: "alice" });
    const text = storedText(storage);
    assert.ok(!text.includes(t.access) && !text.includes("R1"), `no token stored: ${text}`);
    assert.ok(!("refreshToken" in t));
  });

  it("asks for a sign-in link and shows the server's answer, the same for any account", async () => {
    const { site, tab } = browser();
    const t = tab();
    assert.match(await t.requestLink("bob@example.com"), /a link is on its way/);
    assert.deepEqual(site.calls[0].body, { login: "bob@example.com" });
    assert.ok(!t.signedIn);
    const throttled = browser().tab({ fetch: async () => ({ status: 429, ok: false, json: async () => ({}) }) });
    await assert.rejects(throttled.requestLink("bob"), /Too many sign-in links/);
  });

  it("claims a sign-in link as a password sign-in: the access token in memory, the user stored, other tabs told", async () => {
    const { site, storage, tab } = browser();
    const other = tab();
    await other.signIn("alice", "pw");
    const t = tab();
    await t.claimLink("id-1", "good");
    assert.deepEqual(site.calls.at(-1).body, { link: "id-1", token: "good" });
    assert.equal(t.userKey, "id-2");
    assert.deepEqual(JSON.parse(storage.getItem("sessions.user")), { id: 2, username: "bob" });
    assert.equal(site.jar, "R2");
    assert.equal(other.access, null, "the tab signed in as alice is told the cookie is bob's now");
  });

  it("says why a sign-in link was refused, with the server's code", async () => {
    const t = browser().tab();
    await assert.rejects(t.claimLink("id-1", "bad"), (err) => err.code === "other_browser" && /another browser/.test(err.message));
    assert.ok(!t.signedIn);
  });

  it("says so plainly when the credentials are wrong", async () => {
    const t = browser().tab();
    await assert.rejects(t.signIn("alice", "bad"), /Wrong username or password/);
    assert.ok(!t.signedIn);
  });

  it("says when sign-ins are locked out (HTTP 429) instead of blaming the password", async () => {
    const fetch = async () => ({ status: 429, ok: false, json: async () => ({ detail: "Too many failed sign-ins" }) });
    const t = browser().tab({ fetch });
    await assert.rejects(t.signIn("alice", "pw"), /Too many failed sign-ins .* Try again later/);
    assert.ok(!t.signedIn);
  });

  it("signs a new tab in with the cookie, without asking", async () => {
    const { site, tab } = browser();
    await tab().signIn("alice", "pw");
    const second = tab(); // a new tab: nothing in memory
    assert.equal(second.access, null);
    assert.ok(second.accessExpired(), "no access token: refresh before connecting");
    assert.equal(await second.restore(), true);
    assert.equal(second.access, access(1, 2));
    assert.equal(second.userKey, "id-1", "the same outbox key as the first tab");
    assert.deepEqual(
      site.refreshes.map((c) => c.cookie),
      ["R1"],
    );
    assert.equal(site.jar, "R2", "rotated");
  });

  it("sends nothing on load when nobody signed in on this device", async () => {
    const { site, tab } = browser();
    assert.equal(await tab().restore(), false);
    assert.equal(site.calls.length, 0);
  });

  it("forgets the user when the cookie is refused on load", async () => {
    const { site, storage, tab } = browser();
    await tab().signIn("alice", "pw");
    site.valid.clear(); // expired, password changed, signed out elsewhere...
    const t = tab();
    assert.equal(await t.restore(), false);
    assert.ok(!t.signedIn);
    assert.equal(storage.getItem("sessions.user"), null);
  });

  it("keeps the user (and the outbox key) when the server is down on load", async () => {
    const { site, tab } = browser();
    await tab().signIn("alice", "pw");
    site.down = true;
    const t = tab(); // a reload during an outage
    assert.equal(await t.restore(), true);
    assert.equal(t.access, null);
    assert.ok(t.signedIn);
    assert.equal(t.userKey, "id-1");
    await assert.rejects(t.refresh(), (err) => !(err instanceof SignedOutError));
    site.down = false;
    assert.equal(await t.refresh(), access(1, 2));
  });

  it("runs one refresh at a time in a tab", async () => {
    const { site, tab } = browser();
    const t = tab();
    await t.signIn("alice", "pw");
    const [a, b] = await Promise.all([t.refresh(), t.refresh()]);
    assert.equal(a, b);
    assert.equal(site.refreshes.length, 1);
  });

  it("two tabs refreshing at once: the second takes the first one's token, no second rotation", async () => {
    const { site, tab } = browser();
    const one = tab();
    await one.signIn("alice", "pw");
    const two = tab();
    two.accessToken = one.access; // both signed in, both about to renew
    const [a, b] = await Promise.all([one.refresh(), two.refresh()]);
    assert.equal(a, access(1, 2));
    assert.equal(b, a);
    assert.equal(site.refreshes.length, 1);
    assert.ok(one.signedIn && two.signedIn);
  });

  it("two tabs refreshing at once without a channel: the lock makes the second send the rotated cookie", async () => {
    const { site, tab } = browser({ channels: false });
    const one = tab();
    await one.signIn("alice", "pw");
    const two = tab();
    two.accessToken = one.access;
    const [a, b] = await Promise.all([one.refresh(), two.refresh()]);
    assert.deepEqual(
      site.refreshes.map((c) => c.cookie),
      ["R1", "R2"],
    );
    assert.equal(a, access(1, 2));
    assert.equal(b, access(1, 3));
    assert.ok(one.signedIn && two.signedIn);
  });

  it("without Web Locks, the tab whose refresh lost the race asks again with the new cookie", async () => {
    const { site, tab } = browser({ locks: false, channels: false });
    const one = tab();
    await one.signIn("alice", "pw");
    const two = tab();
    two.accessToken = one.access;
    const [a, b] = await Promise.all([one.refresh(), two.refresh()]);
    // Both sent R1 at once; the second was refused (blacklisted by the rotation), then sent R2.
    assert.deepEqual(
      site.refreshes.map((c) => c.cookie),
      ["R1", "R1", "R2"],
    );
    assert.equal(a, access(1, 2));
    assert.equal(b, access(1, 3));
    assert.ok(one.signedIn && two.signedIn);
  });

  it("without Web Locks, the losing tab takes the winner's announced token if it comes", async () => {
    const { site, tab } = browser({ locks: false });
    const one = tab();
    await one.signIn("alice", "pw");
    const two = tab();
    two.accessToken = one.access;
    const [a, b] = await Promise.all([one.refresh(), two.refresh()]);
    assert.equal(b, a);
    assert.deepEqual(
      site.refreshes.map((c) => c.cookie),
      ["R1", "R1"],
    );
  });

  it("signs out (forgets the user) when the cookie is refused twice", async () => {
    const { site, tab } = browser();
    const t = tab();
    await t.signIn("alice", "pw");
    site.valid.clear();
    await assert.rejects(t.refresh(), SignedOutError);
    assert.equal(site.refreshes.length, 2, "asked once more first");
    assert.ok(!t.signedIn);
    assert.equal(t.access, null);
  });

  it("keeps the sign-in when the server cannot be reached", async () => {
    const { site, tab } = browser();
    const t = tab();
    await t.signIn("alice", "pw");
    site.down = true;
    await assert.rejects(t.refresh(), (err) => !(err instanceof SignedOutError));
    assert.ok(t.signedIn);
  });

  it("signs out on the server and in every tab", async () => {
    const { site, storage, tab } = browser();
    const one = tab();
    await one.signIn("alice", "pw");
    const two = tab();
    await two.restore();
    const ended = [];
    one.on("signedout", (err) => ended.push(err));
    assert.equal(await two.signOut(), true);
    assert.deepEqual(site.calls.at(-1), { url: REVOKE_URL, cookie: "R2", body: {}, credentials: "same-origin" });
    assert.equal(site.jar, null, "the cookie is gone");
    assert.ok(!one.signedIn && !two.signedIn);
    assert.equal(one.access, null);
    assert.equal(ended.length, 1);
    assert.ok(ended[0] instanceof SignedOutError);
    assert.equal(ended[0].reason, "logged_out");
    assert.equal(ended[0].message, SIGNED_OUT_ELSEWHERE);
    assert.equal(storage.getItem("sessions.user"), null);
    // A new tab is not signed in, and asks the server nothing.
    const calls = site.calls.length;
    assert.equal(await tab().restore(), false);
    assert.equal(site.calls.length, calls);
  });

  it("a refresh under way in another tab when the user signs out does not sign that tab back in", async () => {
    const { site, tab } = browser();
    const one = tab();
    await one.signIn("alice", "pw");
    const two = tab();
    two.accessToken = one.access;
    const renewing = two.refresh(); // holds the lock, in flight
    const out = one.signOut(); // told at once; its revoke waits for the lock
    await assert.rejects(renewing, (err) => err instanceof SignedOutError && err.reason === "logged_out");
    assert.equal(await out, true);
    assert.equal(two.access, null);
    assert.ok(!two.signedIn);
    assert.equal(site.jar, null);
    assert.equal(site.valid.size, 0, "the rotated token was revoked, not the stale one");
  });

  it("a sign-out the server could not be told of is sent at the next load", async () => {
    const { site, storage, tab } = browser();
    const t = tab();
    await t.signIn("alice", "pw");
    site.down = true;
    assert.equal(await t.signOut(), false);
    assert.ok(!t.signedIn);
    assert.equal(site.jar, "R1", "the browser still holds the cookie");
    site.down = false;
    assert.equal(await tab().restore(), false);
    assert.equal(site.calls.at(-1).url, REVOKE_URL);
    assert.equal(site.jar, null);
    assert.equal(site.valid.size, 0);
    assert.equal(storage.getItem("sessions.revoke-pending"), null);
  });

  it("a new sign-in drops the pending sign-out (the cookie is the new sign-in's)", async () => {
    const { site, tab } = browser();
    const t = tab();
    await t.signIn("alice", "pw");
    site.down = true;
    await t.signOut();
    site.down = false;
    await t.signIn("alice", "pw");
    assert.equal(await tab().restore(), true);
    assert.ok(!site.calls.some((c) => c.url === REVOKE_URL && c.cookie === "R2"));
  });

  it("a tab of another user signs out when someone signs in as another user elsewhere", async () => {
    const { tab } = browser();
    const alice = tab();
    await alice.signIn("alice", "pw");
    const ended = [];
    alice.on("signedout", (err) => ended.push(err));
    await tab().signIn("bob", "pw");
    assert.equal(ended.length, 1);
    assert.match(ended[0].message, /signed in as bob in another tab/);
    assert.equal(alice.access, null);
    assert.equal(alice.userKey, "id-2", "the device's user is bob now");
  });

  it("without a channel, a refresh that returns another user's token signs the tab out", async () => {
    const { tab } = browser({ channels: false });
    const alice = tab();
    await alice.signIn("alice", "pw");
    await tab().signIn("bob", "pw");
    const ended = [];
    alice.on("signedout", (err) => ended.push(err));
    await assert.rejects(alice.refresh(), SignedOutError);
    assert.equal(alice.access, null);
    assert.equal(ended.length, 1);
  });

  it("ignores an announced token of another user", () => {
    const { tab } = browser();
    const t = tab();
    t.accessToken = access(1, 1, 1000);
    t.receive({ type: "access", access: access(2, 9) });
    assert.equal(t.access, access(1, 1, 1000));
    t.receive({ type: "access", access: access(1, 9) });
    assert.equal(t.access, access(1, 9));
  });

  it("reads the expiry of an access token", () => {
    assert.equal(tokenExpiry(jwt(1000)), 1000000);
    assert.equal(tokenExpiry("not a jwt"), null);
    const t = browser().tab({ now: () => 995000 });
    t.accessToken = jwt(1000);
    assert.ok(t.accessExpired(5000));
    assert.ok(!t.accessExpired(4000));
  });

  it("removes the tokens an older version kept in sessionStorage", () => {
    const legacy = new MemoryStorage();
    for (const key of ["sessions.access", "sessions.refresh", "sessions.username"]) legacy.setItem(key, "x");
    legacy.setItem("sessions.tab", "t1");
    browser().tab({ legacy });
    assert.deepEqual([...legacy.map.keys()], ["sessions.tab"]);
  });
});
