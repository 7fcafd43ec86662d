// The signed-in user's tokens in the pages: the access token in this tab's memory only, the
// refresh token in an HttpOnly cookie that no script can read (sessions_app/cookies.py), shared by
// every tab of the site; and the three HTTP calls that manage them (docs/client.md, "Tokens").
// Who is signed in (user id and username, not a secret) is kept in localStorage so that a new
// tab, or a reload while the server is down, knows it at once.

import { Emitter } from "./emitter.js";

export const SIGN_IN_URL = "/api/v1/token/cookie/";
export const REFRESH_URL = "/api/v1/token/cookie/refresh/";
export const REVOKE_URL = "/api/v1/token/cookie/revoke/";
export const OTP_URL = "/api/v1/token/cookie/otp/"; // the second step for a user with two-factor on
// Sign-in by email link (sessions_app/magic_views.py): ask for a link, then claim it in this browser.
export const MAGIC_LINK_URL = "/api/v1/login/magic/";
export const MAGIC_CLAIM_URL = "/api/v1/login/magic/claim/";

const KEY_USER = "sessions.user"; // {"id", "username"}
const KEY_REVOKE = "sessions.revoke-pending"; // a sign-out the server could not be told of yet
// Where the tokens were kept before the cookie (sessionStorage): removed wherever found.
const LEGACY_KEYS = ["sessions.access", "sessions.refresh", "sessions.username"];

export const SIGNED_OUT_ELSEWHERE = "You signed out in another tab: you are signed out here too.";

/** The refresh token was refused: the user must sign in again. */
export class SignedOutError extends Error {
  constructor(message = "Your sign-in has expired. Please sign in again.", { reason = null } = {}) {
    super(message);
    this.name = "SignedOutError";
    this.reason = reason; // the server's data.reason when it ended the socket first, else null
  }
}

/** The claims of a JWT (not verified: only the server can), or null if they cannot be read. */
export function tokenClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const payload = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    return payload && typeof payload === "object" ? payload : null;
  } catch {
    return null;
  }
}

/** The exp claim of a JWT, in milliseconds since the epoch, or null if it cannot be read. */
export function tokenExpiry(token) {
  const exp = tokenClaims(token)?.exp;
  return typeof exp === "number" ? exp * 1000 : null;
}

async function postJson(fetchFn, url, body = {}) {
  const response = await fetchFn(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin", // the refresh cookie; the browser adds Origin, which the server checks
    cache: "no-store",
  });
  return readJson(response);
}

/** A fetch response as `{status, ok, data}`: `data` its JSON body, or null when it has none. */
export async function readJson(response) {
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { status: response.status, ok: response.ok, data };
}

const refused = (status) => status === 400 || status === 401 || status === 403;
const sameId = (a, b) => a !== null && a !== undefined && b !== null && b !== undefined && String(a) === String(b);

const CHANNEL = "sessions.tokens";
const LOCK = "sessions.tokens.refresh";

function openChannel() {
  return typeof BroadcastChannel === "function" ? new BroadcastChannel(CHANNEL) : null;
}

// Web Storage can be missing or throw on access (disabled storage, some private modes).
function webStorage(name) {
  try {
    return globalThis[name] ?? null;
  } catch {
    return null;
  }
}

function tryStorage(fn) {
  try {
    return fn();
  } catch {
    return null;
  }
}

export class TokenStore extends Emitter {
  /**
   * Every tab of the site shares the cookie, so with rotation one tab's refresh blacklists the
   * token another tab would send. Refreshes (and sign-out) are serialised across tabs with a Web
   * Lock: the browser stores a rotated cookie before the response reaches the script, so the next
   * tab to take the lock sends the new one. Each refresh's access token is announced on a
   * BroadcastChannel, and a tab waiting for the lock takes it instead of rotating again. Without
   * Web Locks, a refresh refused because it raced another tab's waits for that announcement and
   * then asks once more (the browser holds the new cookie by then) before it signs out.
   *
   * Events: "signedout" (a SignedOutError) when another tab signed out, or signed in as another
   * user; the SessionClient given this store signs out with it.
   */
  constructor({
    storage = webStorage("localStorage"),
    legacy = webStorage("sessionStorage"),
    fetch: fetchFn,
    now = () => Date.now(),
    channel = openChannel(),
    locks = globalThis.navigator?.locks,
    settle = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  } = {}) {
    super();
    this.storage = storage;
    this.fetch = fetchFn || ((...args) => globalThis.fetch(...args));
    this.now = now;
    this.channel = channel;
    this.locks = locks;
    this.settle = settle;
    this.accessToken = null; // memory only
    this.memoryUser = null; // who is signed in, when there is no storage to keep it in
    this.generation = 0; // +1 each time this tab forgets its sign-in: a refresh under way is then void
    this.ended = null; // the SignedOutError of the last such ending
    this.refreshing = null;
    for (const key of LEGACY_KEYS) tryStorage(() => legacy?.removeItem(key));
    this.channel?.addEventListener("message", (event) => this.receive(event.data));
  }

  /** A message from another tab: an access token to share, a sign-out, a sign-in. */
  receive(message) {
    if (!message || typeof message !== "object") return;
    if (message.type === "access" && typeof message.access === "string") {
      // Only the same user's, and never an older one.
      const mine = this.accessToken ? tokenExpiry(this.accessToken) : null;
      if (sameId(tokenClaims(message.access)?.user_id, this.userId) && (mine === null || tokenExpiry(message.access) >= mine)) {
        this.accessToken = message.access;
      }
    } else if (message.type === "signedout") {
      if (this.signedIn) this.end(new SignedOutError(SIGNED_OUT_ELSEWHERE, { reason: "logged_out" }));
    } else if (message.type === "signedin") {
      // The cookie is now that user's: a tab signed in as someone else cannot refresh any more.
      const mine = this.accessToken ? tokenClaims(this.accessToken)?.user_id : null;
      if (mine !== null && mine !== undefined && !sameId(mine, message.user?.id)) {
        const name = typeof message.user?.username === "string" ? message.user.username : "another user";
        this.end(new SignedOutError(`You signed in as ${name} in another tab: sign in again here.`), { keepUser: true });
      }
    }
  }

  get access() {
    return this.accessToken;
  }

  /** {id, username} of who is signed in on this device (not a secret), or null. */
  get user() {
    if (!this.storage) return this.memoryUser;
    const text = tryStorage(() => this.storage.getItem(KEY_USER));
    if (!text) return null;
    const user = tryStorage(() => JSON.parse(text));
    return user && typeof user === "object" ? user : null;
  }

  get username() {
    return typeof this.user?.username === "string" ? this.user.username : null;
  }

  /** The user id: the access token's `user_id` claim, else the stored user's id. */
  get userId() {
    const id = this.accessToken ? tokenClaims(this.accessToken)?.user_id : undefined;
    return id !== undefined && id !== null ? id : (this.user?.id ?? null);
  }

  /**
   * A stable key for the signed-in user, known before any connection (and while the server is
   * down): the user id (`user_id` claim, SimpleJWT's USER_ID_CLAIM), else the username. Unsent
   * changes are kept under it (outbox.js).
   */
  get userKey() {
    const id = this.userId;
    return id !== null ? `id-${id}` : this.username ? `name-${this.username}` : null;
  }

  /** True while this tab has an access token, or this device a signed-in user (the cookie). */
  get signedIn() {
    return Boolean(this.accessToken || this.user);
  }

  setUser(user) {
    if (!this.storage) this.memoryUser = user;
    else if (user) tryStorage(() => this.storage.setItem(KEY_USER, JSON.stringify(user)));
    else tryStorage(() => this.storage.removeItem(KEY_USER));
  }

  /** Forget the sign-in in this tab (and, unless keepUser, on this device); tell the page why. */
  end(err, { keepUser = false } = {}) {
    this.generation += 1;
    this.ended = err;
    this.accessToken = null;
    if (!keepUser) this.setUser(null);
    this.emit("signedout", err);
    return err;
  }

  /** True when there is no access token, or it expires within `skewMs`: refresh before using it. */
  accessExpired(skewMs = 5000) {
    if (!this.accessToken) return true;
    const exp = tokenExpiry(this.accessToken);
    return exp !== null && exp - skewMs <= this.now();
  }

  /**
   * Sign in with a password. Resolves `{ otpRequired: false }` when signed in, or `{ otpRequired:
   * true, ticket, expiresIn }` when the user has two-factor sign-in on: nothing is signed in yet,
   * and `signInWithCode(ticket, code, username)` finishes (docs/client.md, "Two-factor sign-in").
   */
  async signIn(username, password) {
    let result;
    try {
      result = await postJson(this.fetch, SIGN_IN_URL, { username, password });
    } catch {
      throw new Error("The server cannot be reached. Check your connection and try again.");
    }
    if (result.status === 401 || result.status === 400) {
      throw new Error("Wrong username or password.");
    }
    if (result.status === 429) {
      // Too many failed sign-ins for this account or from this address (README, "Operations").
      throw new Error("Too many failed sign-ins for this account or from this address. Try again later.");
    }
    if (result.ok && result.data?.otp_required === true && typeof result.data.ticket === "string") {
      return { otpRequired: true, ticket: result.data.ticket, expiresIn: result.data.expires_in ?? null };
    }
    this.accept(result, username, "Sign-in");
    return { otpRequired: false };
  }

  /**
   * The second step: the ticket of `signIn` and a 6-digit code (or a recovery code). Rejects with
   * an Error whose `code` is `invalid_code` (try again), `invalid_ticket` (start over with the
   * password), `otp_throttled` or `locked_out` (wait), or null (no answer).
   */
  async signInWithCode(ticket, code, username) {
    let result;
    try {
      result = await postJson(this.fetch, OTP_URL, { ticket, code });
    } catch {
      throw Object.assign(new Error("The server cannot be reached. Check your connection and try again."), { code: null });
    }
    const reason = result.data?.code;
    if (result.status === 401 && reason === "invalid_ticket") {
      throw Object.assign(new Error("This sign-in has expired. Enter your password again."), { code: "invalid_ticket" });
    }
    if (result.status === 401 || result.status === 400) {
      throw Object.assign(new Error("Wrong code, or a code already used. Try the next one."), { code: "invalid_code" });
    }
    if (result.status === 429) {
      const throttled = reason === "otp_throttled";
      const message = throttled ? "Too many wrong codes: wait a moment, then try again." : "Too many failed sign-ins for this account or from this address. Try again later.";
      throw Object.assign(new Error(message), { code: throttled ? "otp_throttled" : "locked_out" });
    }
    this.accept(result, username, "Sign-in");
  }

  // A sign-in's answer `{access}` (the refresh token went to the cookie): this tab is signed in.
  accept(result, username, what) {
    if (!result.ok || !result.data || typeof result.data.access !== "string") {
      throw new Error(`${what} failed (HTTP ${result.status}). Try again in a moment.`);
    }
    this.signedInWith(result.data.access, username);
  }

  // A sign-in succeeded (password or link): the access token in memory, who in storage, other tabs told.
  signedInWith(access, username) {
    this.generation += 1;
    this.ended = null;
    this.accessToken = access;
    const user = { id: tokenClaims(access)?.user_id ?? null, username };
    this.setUser(user);
    tryStorage(() => this.storage?.removeItem(KEY_REVOKE)); // the cookie is a new sign-in's now
    this.channel?.postMessage({ type: "signedin", user });
  }

  /**
   * A fresh access token for a REST call: this tab's, or a new one from the cookie when it has
   * expired (or is about to). Rejects as `refresh`.
   */
  async freshAccess() {
    return this.accessExpired() ? this.refresh() : this.accessToken;
  }

  /**
   * Ask for a sign-in link by email, for a username or an email address. Resolves with the
   * server's message (the same whether or not the account exists); rejects with an Error to show
   * (throttled, unreachable, refused). The link works in this browser only (a cookie binds it).
   */
  async requestLink(login) {
    let result;
    try {
      result = await postJson(this.fetch, MAGIC_LINK_URL, { login });
    } catch {
      throw new Error("The server cannot be reached. Check your connection and try again.");
    }
    if (result.status === 429) throw new Error("Too many sign-in links were asked for. Try again later.");
    if (result.status !== 202) throw new Error(`The link could not be asked for (HTTP ${result.status}).`);
    return typeof result.data?.detail === "string" ? result.data.detail : "A sign-in link is on its way.";
  }

  /**
   * Claim a sign-in link (its fragment's `link` and `sesame`): signed in as signIn does. Resolves
   * `{ otpRequired: false }` when signed in, or `{ otpRequired: true, ticket, expiresIn, username }`
   * when the user has two-factor sign-in on: the link stood for the password, and
   * `signInWithCode(ticket, code, username)` finishes. Rejects with an Error whose `code` is the
   * server's (link_invalid, link_expired, link_used, other_browser) and whose message explains it.
   */
  async claimLink(link, token) {
    let result;
    try {
      result = await postJson(this.fetch, MAGIC_CLAIM_URL, { link, token });
    } catch {
      throw new Error("The server cannot be reached. Check your connection and reload this page.");
    }
    const data = result.data;
    const username = typeof data?.username === "string" ? data.username : null;
    if (result.ok && data?.otp_required === true && typeof data.ticket === "string") {
      return { otpRequired: true, ticket: data.ticket, expiresIn: data.expires_in ?? null, username };
    }
    if (!result.ok || !data || typeof data.access !== "string") {
      const err = new Error(typeof data?.detail === "string" ? data.detail : `Sign-in failed (HTTP ${result.status}).`);
      err.code = typeof data?.code === "string" ? data.code : null;
      throw err;
    }
    this.signedInWith(data.access, username);
    return { otpRequired: false };
  }

  /**
   * On page load: a tab with no access token (a new tab, a reload) takes one with the cookie, so
   * it is signed in without asking. Resolves true when signed in (or believed to be: the server
   * could not be reached, the page works on what it kept), false when not (no one signed in on
   * this device, or the cookie was refused). Also tells the server of a sign-out it missed.
   */
  async restore() {
    if (this.accessToken) return true;
    if (!this.user && tryStorage(() => this.storage?.getItem(KEY_REVOKE))) await this.revoke();
    if (this.storage && !this.user) return false; // nobody signed in here: no request
    try {
      await this.refresh();
      return true;
    } catch (err) {
      return err instanceof SignedOutError ? false : this.signedIn;
    }
  }

  /**
   * A new access token from the cookie (which the server rotates). One refresh at a time, across
   * tabs too (class comment). Rejects with SignedOutError (and forgets the sign-in) when the
   * server refuses the cookie, with a plain Error when the server cannot be reached (the caller
   * retries later).
   */
  refresh() {
    if (!this.refreshing) {
      const seen = this.accessToken;
      const generation = this.generation;
      const run = () => this.doRefresh(seen, generation);
      this.refreshing = (this.locks ? this.locks.request(LOCK, run) : run()).finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  // Another tab's access token arrived while we waited (for the lock, or after a refusal).
  fresher(seen) {
    return Boolean(this.accessToken && this.accessToken !== seen && !this.accessExpired());
  }

  async doRefresh(seen, generation) {
    for (let attempt = 1; ; attempt += 1) {
      if (generation !== this.generation) throw this.ended ?? new SignedOutError();
      if (this.fresher(seen)) return this.accessToken;
      let result;
      try {
        result = await postJson(this.fetch, REFRESH_URL);
      } catch {
        throw new Error("The server cannot be reached to renew your sign-in.");
      }
      if (generation !== this.generation) throw this.ended ?? new SignedOutError();
      if (refused(result.status)) {
        if (attempt === 1) {
          // Perhaps it raced another tab's rotation (no Web Locks): the browser holds the new
          // cookie by now; wait for that tab's announcement, then ask once more.
          await this.settle(500);
          continue;
        }
        this.generation += 1;
        this.accessToken = null;
        this.setUser(null);
        throw new SignedOutError();
      }
      if (!result.ok || !result.data || typeof result.data.access !== "string") {
        throw new Error(`Renewing your sign-in failed (HTTP ${result.status}).`);
      }
      const access = result.data.access;
      const id = tokenClaims(access)?.user_id ?? null;
      const mine = this.userId;
      if (mine !== null && id !== null && !sameId(id, mine)) {
        // The cookie is another user's: someone signed in as them in another tab.
        throw this.end(new SignedOutError("Someone signed in as another user in another tab: sign in again here."), { keepUser: true });
      }
      this.accessToken = access;
      if (!this.user || !sameId(this.user.id, id)) this.setUser({ id, username: this.username });
      this.channel?.postMessage({ type: "access", access });
      return access;
    }
  }

  async revoke() {
    let ok = false;
    try {
      const result = await postJson(this.fetch, REVOKE_URL);
      // 401: no cookie, or its token already blacklisted or expired: what signing out wants.
      ok = result.ok || result.status === 401;
    } catch {
      ok = false;
    }
    if (ok) tryStorage(() => this.storage?.removeItem(KEY_REVOKE));
    else tryStorage(() => this.storage?.setItem(KEY_REVOKE, "1"));
    return ok;
  }

  /**
   * Sign out on this device: this tab forgets at once, every other tab is told (they sign out
   * too), and the server blacklists the cookie's token, deletes the cookie and ends the user's
   * sockets. Resolves true when the server confirmed, false when it could not be told: it is then
   * told at the next page load (restore), and the token expires on its own meanwhile.
   */
  async signOut() {
    this.generation += 1;
    this.ended = new SignedOutError("You are signed out.");
    this.accessToken = null;
    this.setUser(null);
    this.channel?.postMessage({ type: "signedout" });
    // Under the lock: after any rotation under way, so the cookie sent is the current one.
    return this.locks ? this.locks.request(LOCK, () => this.revoke()) : this.revoke();
  }
}
