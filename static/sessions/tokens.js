// The JWT pair of the signed-in user, kept in sessionStorage (per tab, gone when the tab
// closes; never in the URL, never in a cookie), and the three HTTP calls that manage it.

export const TOKEN_URL = "/api/v1/token/";
export const REFRESH_URL = "/api/v1/token/refresh/";
export const REVOKE_URL = "/api/v1/token/revoke/";

const KEY_ACCESS = "sessions.access";
const KEY_REFRESH = "sessions.refresh";
const KEY_USERNAME = "sessions.username";

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

async function postJson(fetchFn, url, body) {
  const response = await fetchFn(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
    credentials: "omit", // identity comes from the token only
    cache: "no-store",
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { status: response.status, ok: response.ok, data };
}

const CHANNEL = "sessions.tokens";
const LOCK = "sessions.tokens.refresh";

function openChannel() {
  return typeof BroadcastChannel === "function" ? new BroadcastChannel(CHANNEL) : null;
}

export class TokenStore {
  /**
   * A duplicated browser tab starts with a copy of this tab's sessionStorage, so two tabs can hold
   * the same refresh token; with rotation, the first to refresh blacklists it for the other. So
   * refreshes are serialised across tabs (Web Locks, where available) and each rotation is
   * announced on a BroadcastChannel: a tab still holding the old refresh token adopts the new pair.
   * A tab holding other tokens (another user, another sign-in) ignores the announcement.
   */
  constructor({
    storage = globalThis.sessionStorage,
    fetch: fetchFn,
    now = () => Date.now(),
    channel = openChannel(),
    locks = globalThis.navigator?.locks,
    settle = (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  } = {}) {
    this.storage = storage;
    this.fetch = fetchFn || ((...args) => globalThis.fetch(...args));
    this.now = now;
    this.channel = channel;
    this.locks = locks;
    this.settle = settle;
    this.refreshing = null;
    this.channel?.addEventListener("message", (event) => this.adopt(event.data));
  }

  /** A sibling tab rotated the refresh token we hold: take the new pair. */
  adopt(message) {
    if (message && message.previous && message.previous === this.refreshToken && message.access) {
      this.store({ access: message.access, refresh: message.refresh });
    }
  }

  get access() {
    return this.storage.getItem(KEY_ACCESS);
  }

  get refreshToken() {
    return this.storage.getItem(KEY_REFRESH);
  }

  get username() {
    return this.storage.getItem(KEY_USERNAME);
  }

  /**
   * A stable key for the signed-in user, known before any connection: the access token's
   * `user_id` claim (SimpleJWT's USER_ID_CLAIM), else the username. Unsent changes are kept
   * under it (outbox.js).
   */
  get userKey() {
    const id = this.access ? tokenClaims(this.access)?.user_id : undefined;
    return id !== undefined && id !== null ? `id-${id}` : this.username ? `name-${this.username}` : null;
  }

  get signedIn() {
    return Boolean(this.access && this.refreshToken);
  }

  store({ access, refresh }) {
    this.storage.setItem(KEY_ACCESS, access);
    // Rotation is on: the server blacklists the old refresh token, so always keep the new one.
    if (refresh) this.storage.setItem(KEY_REFRESH, refresh);
  }

  clear() {
    for (const key of [KEY_ACCESS, KEY_REFRESH, KEY_USERNAME]) this.storage.removeItem(key);
  }

  /** True when the access token is expired or expires within `skewMs`. */
  accessExpired(skewMs = 5000) {
    const exp = this.access ? tokenExpiry(this.access) : null;
    return exp !== null && exp - skewMs <= this.now();
  }

  async signIn(username, password) {
    let result;
    try {
      result = await postJson(this.fetch, TOKEN_URL, { username, password });
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
    if (!result.ok || !result.data || !result.data.access) {
      throw new Error(`Sign-in failed (HTTP ${result.status}). Try again in a moment.`);
    }
    this.store(result.data);
    this.storage.setItem(KEY_USERNAME, username);
  }

  /**
   * Trade the refresh token for a new pair. One refresh at a time: with rotation, a second
   * concurrent call would send a token the first one just blacklisted. Rejects with
   * SignedOutError (and forgets the tokens) when the server refuses the refresh token, with a
   * plain Error when the server cannot be reached (the caller retries later).
   */
  refresh() {
    if (!this.refreshing) {
      const seen = this.refreshToken;
      const run = () => this.doRefresh(seen);
      this.refreshing = (this.locks ? this.locks.request(LOCK, run) : run()).finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async doRefresh(seen) {
    // A sibling tab rotated while we waited for the lock, and we adopted its pair: use it.
    if (this.refreshToken && this.refreshToken !== seen && !this.accessExpired()) return this.access;
    const refresh = this.refreshToken;
    if (!refresh) throw new SignedOutError("You are not signed in.");
    let result;
    try {
      result = await postJson(this.fetch, REFRESH_URL, { refresh });
    } catch {
      throw new Error("The server cannot be reached to renew your sign-in.");
    }
    if (result.status === 400 || result.status === 401 || result.status === 403) {
      // Refused: perhaps a sibling tab just rotated it and its announcement is on its way.
      await this.settle(500);
      if (this.refreshToken !== refresh && this.refreshToken) return this.access;
      this.clear();
      throw new SignedOutError();
    }
    if (!result.ok || !result.data || !result.data.access) {
      throw new Error(`Renewing your sign-in failed (HTTP ${result.status}).`);
    }
    this.store(result.data);
    this.channel?.postMessage({ previous: refresh, access: result.data.access, refresh: result.data.refresh });
    return result.data.access;
  }

  /**
   * Forget both tokens and revoke the refresh token. Resolves true when the server confirmed
   * the revocation, false when it could not be told (the tokens are gone from this tab either
   * way, and the refresh token still expires on its own): the page says so.
   */
  async signOut() {
    const refresh = this.refreshToken;
    this.clear();
    if (!refresh) return true;
    try {
      const result = await postJson(this.fetch, REVOKE_URL, { refresh });
      // 401: already blacklisted or expired, which is what signing out wants anyway.
      return result.ok || result.status === 401;
    } catch {
      return false;
    }
  }
}
