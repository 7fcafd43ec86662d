// The WebSocket client of the interactive session protocol (protocol.md). An ES module with no
// dependency and no build step; docs/client.md is its manual.
//
//   const client = new SessionClient({ tokens: new TokenStore() });
//   client.on("status", (s) => ...);            // connecting | connected | reconnecting | unreachable | offline | closed
//   client.on("patched", (data) => ...);        // pushes, by state
//   await client.connect();
//   const reply = await client.request("list"); // resolves with the reply's data, rejects with ProtocolError
//
// It reconnects by itself (exponential backoff, full jitter, at most 10 s apart) as the
// close-code table says, renews its token on `token_expiring` and on 4401, and holds requests
// made while the socket is down in a bounded queue. LiveSession (session.js) adds the joined
// document on top, and keeps unsent changes however long the outage. client.d.ts declares the
// types (requests, replies, pushes, errors, close codes) from docs/protocol.md.

import { Emitter } from "./emitter.js";
import {
  BACKOFF,
  CLOSE_ABNORMAL,
  CLOSE_CLIENT_TIMEOUT,
  CLOSE_NORMAL,
  REFRESH,
  STAY_CLOSED,
  backoffDelay,
  closeAction,
  closeReason,
  scheduleFor,
} from "./reconnect.js";
import { CLOSED, CONNECTION_LOST, OfflineQueue, PendingRequests, ProtocolError, TIMEOUT } from "./requests.js";
import { SignedOutError } from "./tokens.js";

export { ProtocolError } from "./requests.js";
export {
  CLOSE_ABNORMAL,
  CLOSE_AUTH_TIMEOUT,
  CLOSE_CLIENT_TIMEOUT,
  CLOSE_GOING_AWAY,
  CLOSE_MESSAGE_TOO_LARGE,
  CLOSE_NORMAL,
  CLOSE_RATE_LIMITED,
  CLOSE_SERVER_ERROR,
  CLOSE_SERVICE_RESTART,
  CLOSE_TOO_BIG,
  CLOSE_UNAUTHENTICATED,
  CLOSE_UNAVAILABLE,
} from "./reconnect.js";

export const SOCKET_PATH = "/api/v1/socket";

// How long after a socket's error event its close event may come before the client gives the
// socket up itself (ws.onerror in open()), in milliseconds.
const ERROR_GRACE_MS = 1000;

/** ws[s]://<this host>/api/v1/socket, from the page's own location. */
export function defaultSocketUrl(location = globalThis.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${SOCKET_PATH}`;
}

// Error codes the server sends right before closing with 4401, 4408 or 4503 (protocol.md §6):
// the close code decides what happens (refresh, reconnect), so no notice for them.
const SILENT_BEFORE_CLOSE = new Set(["token_expired", "not_authenticated", "auth_timeout", "unavailable"]);

// Why the server ended a live socket (`not_authenticated` with `data.reason`, protocol.md §7,
// "Sockets the server ends"): what the user is told when the refresh that follows is refused.
export const END_REASONS = {
  deactivated: "Your account has been deactivated: you are signed out.",
  password_changed: "Your password was changed: you are signed out. Sign in with the new password.",
  logged_out: "You signed out on another page or device: you are signed out here too.",
  disconnected: "An administrator ended your connection and sign-in: you are signed out.",
};

const defaultTimers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (handle) => clearTimeout(handle),
};

export class SessionClient extends Emitter {
  constructor({
    tokens,
    url = defaultSocketUrl(),
    WebSocket: WebSocketImpl = globalThis.WebSocket,
    timers = defaultTimers,
    random = Math.random,
    isOnline = () => globalThis.navigator?.onLine !== false,
    network = globalThis.window, // an EventTarget firing "online" / "offline", or null
    now = () => Date.now(),
    requestTimeout = 10000,
    queueLimit = 100,
    queueTimeout = 30000,
    heartbeatInterval = 25000,
    unreachableAfter = 2, // failed attempts in a row before the status says "unreachable"
    maxMessageBytes = 65536, // SESSIONS_MAX_MESSAGE_BYTES: a bigger frame would close 4413
  } = {}) {
    super();
    Object.assign(this, { tokens, url, WebSocketImpl, timers, random, isOnline, now });
    Object.assign(this, { requestTimeout, queueTimeout, heartbeatInterval, unreachableAfter, maxMessageBytes });
    this.retryAt = null; // when the next attempt is due (ms, this.now()), while one is scheduled
    this.pending = new PendingRequests({ timers });
    this.queue = new OfflineQueue({ limit: queueLimit, timeout: queueTimeout, timers });
    this.status = "idle";
    this.user = null;
    this.ws = null;
    this.wanted = false; // false once close() was called or a close code said "stay closed"
    this.ready = false; // authenticated and every beforeReady hook done
    this.attempt = 0; // failed connection attempts in a row
    this.unauthorisedInARow = 0;
    this.endedFor = null; // data.reason of the server's last `not_authenticated` on a live socket
    this.reconnectTimer = null;
    this.heartbeatTimer = null;
    this.readyWaiters = new Set();
    this.readyHooks = [];
    // Another tab signed out (tokens.js): this page signs out too, with that message.
    tokens.on?.("signedout", (err) => this.wanted && this.signOut(err));
    if (network?.addEventListener) {
      network.addEventListener("online", () => this.reconnectNow());
      // No network: say so (an open socket may still work, e.g. to localhost; then it says connected).
      network.addEventListener("offline", () => this.wanted && !this.ready && this.setStatus("offline", this.retryDetail()));
    }
  }

  // --- public API -------------------------------------------------------------------------

  /** Open the connection (and keep it open). Resolves once authenticated and ready. */
  connect({ timeout = this.queueTimeout } = {}) {
    if (!this.wanted) {
      this.wanted = true;
      this.attempt = 0;
      this.setStatus("connecting");
      this.open();
    }
    return this.whenReady(timeout);
  }

  /** Close for good (code 1000). Pending and queued requests reject with code `closed`. */
  close() {
    this.wanted = false;
    const ws = this.detach();
    if (ws) ws.close(CLOSE_NORMAL, "client closed");
    this.finish(CLOSE_NORMAL, "Closed.", true);
  }

  /**
   * Send {state, data, id} and resolve with the reply's `data` (reject with ProtocolError on an
   * error frame, `timeout` after `timeout` ms). While the socket is down the request waits in the
   * bounded queue (at most `queueTimeout` ms, code `offline`), then goes out in order.
   */
  request(state, data = {}, { timeout = this.requestTimeout, queueTimeout = this.queueTimeout } = {}) {
    if (!this.wanted) return Promise.reject(new ProtocolError(CLOSED, "Not connected."));
    if (this.ready) return this.requestNow(state, data, { timeout });
    return this.queue.push({ state, data, timeout }, queueTimeout);
  }

  /** Send at once on the authenticated socket, bypassing the queue (for beforeReady hooks). */
  requestNow(state, data = {}, { timeout = this.requestTimeout } = {}) {
    if (!this.ws || !this.authenticated) {
      return Promise.reject(new ProtocolError(CONNECTION_LOST, "The connection is down."));
    }
    const { id, promise } = this.pending.add(state, timeout);
    const frame = JSON.stringify({ state, data, id });
    if (new TextEncoder().encode(frame).length > this.maxMessageBytes) {
      this.pending.settle({ id, state: "error", code: "message_too_large", error: "This change is too large to send." });
    } else {
      this.ws.send(frame);
    }
    return promise;
  }

  /**
   * Resolve when ready; reject with `offline` after `timeout` ms (never with Infinity), `closed`
   * if closed for good.
   */
  whenReady(timeout = this.queueTimeout) {
    if (this.ready) return Promise.resolve();
    if (!this.wanted) return Promise.reject(new ProtocolError(CLOSED, "Not connected."));
    return new Promise((resolve, reject) => {
      const waiter = { resolve, reject, timer: null };
      if (Number.isFinite(timeout)) {
        waiter.timer = this.timers.set(() => {
          this.readyWaiters.delete(waiter);
          reject(new ProtocolError("offline", "The connection did not come back in time."));
        }, timeout);
      }
      this.readyWaiters.add(waiter);
    });
  }

  /** Run `hook()` after every (re)authentication, before queued requests go out. */
  beforeReady(hook) {
    this.readyHooks.push(hook);
  }

  /**
   * Skip the backoff wait and try now (the browser says the network is back, or the user pressed
   * "Retry now"). True if an attempt was started; false while one is already under way.
   */
  reconnectNow() {
    if (this.wanted && this.reconnectTimer !== null) {
      this.timers.clear(this.reconnectTimer);
      this.reconnectTimer = null;
      this.retryAt = null;
      this.setStatus("connecting");
      this.open();
      return true;
    }
    return false;
  }

  /** {retryAt, attempt} of the scheduled attempt (retryAt null when none is scheduled). */
  retryDetail() {
    return { retryAt: this.retryAt, attempt: this.attempt };
  }

  // --- connection lifecycle ---------------------------------------------------------------

  setStatus(status, detail) {
    if (this.status === status) return;
    this.status = status;
    this.emit("status", status);
    this.emit(status, detail);
  }

  async open() {
    this.reconnectTimer = null;
    this.retryAt = null;
    if (!this.wanted) return;
    if (this.tokens.accessExpired()) {
      // Renew first rather than be refused with 4401 (protocol.md §2).
      if (!(await this.renew()) || !this.wanted) return;
    }
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch (err) {
      // A URL the browser refuses outright (say, ws: from an https: page): it will not get better.
      return this.finish(CLOSE_NORMAL, `Cannot open the connection: ${err.message}`);
    }
    this.ws = ws;
    this.authenticated = false;
    ws.onopen = () => ws.send(JSON.stringify({ token: this.tokens.access }));
    ws.onmessage = (event) => this.receive(event.data);
    ws.onclose = (event) => {
      if (this.ws === ws) this.closed(event.code);
    };
    // Browsers always follow an error with a close event. Node's built-in WebSocket (undici, Node
    // 20 and 22) does not after a refused connection: the socket stays CONNECTING and no close
    // ever comes, so the client would never retry. A socket still ours a moment after its error
    // is closed here and handled as a lost connection (1006).
    ws.onerror = () => {
      this.timers.set(() => {
        if (this.ws !== ws) return;
        try {
          ws.close();
        } catch {
          // Already closing or never opened: either way it is given up.
        }
        this.closed(CLOSE_ABNORMAL);
      }, ERROR_GRACE_MS);
    };
  }

  // Detach the current socket's handlers so its late events are ignored; return it.
  detach() {
    const ws = this.ws;
    this.ws = null;
    this.authenticated = false;
    this.ready = false;
    this.stopHeartbeat();
    if (this.reconnectTimer !== null) this.timers.clear(this.reconnectTimer);
    this.reconnectTimer = null;
    this.retryAt = null;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    return ws;
  }

  closed(code) {
    this.detach();
    this.pending.rejectAll((state) => new ProtocolError(CONNECTION_LOST, `The connection was lost during "${state}".`));
    this.emit("disconnected", { code });
    if (!this.wanted) return this.finish(code, closeReason(code));
    const action = closeAction(code);
    if (action === STAY_CLOSED) return this.finish(code, closeReason(code));
    if (action === REFRESH) return this.reauthenticate();
    return this.retryLater(action);
  }

  async reauthenticate() {
    this.setStatus("reconnecting");
    // Renewed tokens refused again at once (a deactivated user): stop looping, sign out.
    this.unauthorisedInARow += 1;
    if (this.unauthorisedInARow > 2) return this.signOut(new SignedOutError("Your account can no longer connect."));
    if ((await this.renew()) && this.wanted) this.open();
  }

  // Refresh the token; false (and the right follow-up) when that failed.
  async renew() {
    try {
      await this.tokens.refresh();
      return true;
    } catch (err) {
      if (err instanceof SignedOutError) this.signOut(err);
      else this.retryLater(BACKOFF);
      return false;
    }
  }

  // Offline (the browser has no network) and unreachable (it has, but the server does not
  // answer) are told apart: the first is the user's to fix, the second is not.
  retryLater(action) {
    if (!this.wanted) return;
    const delay = backoffDelay(this.attempt, scheduleFor(action), this.random);
    this.attempt += 1;
    this.retryAt = this.now() + delay;
    this.reconnectTimer = this.timers.set(() => this.open(), delay);
    let status = this.attempt > this.unreachableAfter ? "unreachable" : "reconnecting";
    if (!this.isOnline()) status = "offline";
    this.setStatus(status, { delay, ...this.retryDetail() });
    this.emit("retry", { delay, ...this.retryDetail() });
  }

  signOut(err) {
    if (!this.wanted) return; // closed already (by the page, or signed out by another path)
    // The server said why it ended the socket: say that, not "your sign-in has expired" (unless
    // the token store already knows why: another tab signed out).
    if (this.endedFor && END_REASONS[this.endedFor] && !err.reason) err = new SignedOutError(END_REASONS[this.endedFor], { reason: this.endedFor });
    this.endedFor = null;
    const ws = this.detach();
    if (ws) ws.close(CLOSE_NORMAL, "signed out");
    this.finish(4401, err.message);
    this.emit("signedout", err);
  }

  // Closed for good: settle everything that waits, tell the page.
  finish(code, reason, byClient = false) {
    this.wanted = false;
    const error = new ProtocolError(CLOSED, reason);
    this.pending.rejectAll(() => error);
    this.queue.rejectAll(error);
    for (const waiter of this.readyWaiters) {
      this.timers.clear(waiter.timer);
      waiter.reject(error);
    }
    this.readyWaiters.clear();
    this.setStatus("closed", { code, reason, byClient });
  }

  async authenticatedAs(data) {
    const ws = this.ws;
    this.authenticated = true;
    this.user = data.user;
    this.unauthorisedInARow = 0;
    this.endedFor = null;
    this.emit("initialised", data);
    try {
      for (const hook of this.readyHooks) await hook();
    } catch (err) {
      if (this.ws !== ws) return; // the socket dropped during the hooks; closed() took over
      this.emit("error", err);
    }
    if (this.ws !== ws || !this.wanted) return;
    this.attempt = 0;
    this.ready = true;
    this.startHeartbeat();
    this.setStatus("connected");
    for (const waiter of this.readyWaiters) {
      this.timers.clear(waiter.timer);
      waiter.resolve();
    }
    this.readyWaiters.clear();
    for (const item of this.queue.drain()) {
      const { state, data, timeout } = item.payload;
      this.requestNow(state, data, { timeout }).then(item.resolve, item.reject);
    }
  }

  // --- frames -----------------------------------------------------------------------------

  receive(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return this.emit("error", new ProtocolError("invalid_json", "The server sent a frame that is not JSON."));
    }
    if (frame === null || typeof frame !== "object") return;
    if (!this.authenticated) {
      if (frame.state === "initialised") return void this.authenticatedAs(frame.data ?? {});
      // not_authenticated / auth_timeout: the close (4401 / 4408) that follows decides.
      return;
    }
    if (this.pending.settle(frame)) return;
    if (frame.state === "error") {
      if (frame.code === "not_authenticated" && frame.data?.reason) {
        this.endedFor = frame.data.reason;
        this.emit("ended", { reason: frame.data.reason });
      }
      // Errors announcing a close the client recovers from on its own are not the user's concern.
      if (SILENT_BEFORE_CLOSE.has(frame.code)) return;
      return this.emit("error", new ProtocolError(frame.code, frame.error, { data: frame.data }));
    }
    if (frame.state === "token_expiring") this.renewLive();
    this.emit(frame.state, frame.data ?? {});
  }

  // token_expiring: refresh and send `authenticate` on the live socket (protocol.md §2).
  async renewLive() {
    try {
      const access = await this.tokens.refresh();
      await this.requestNow("authenticate", { token: access });
    } catch (err) {
      if (err instanceof SignedOutError) return this.signOut(err);
      // Otherwise the server closes with 4401 at expiry and the reconnect path tries again.
      if (err.code !== CONNECTION_LOST) this.emit("error", err);
    }
  }

  startHeartbeat() {
    this.stopHeartbeat();
    if (!this.heartbeatInterval) return;
    this.heartbeatTimer = this.timers.set(async () => {
      const ws = this.ws;
      try {
        await this.requestNow("ping", {});
        if (this.ws === ws) this.startHeartbeat();
      } catch (err) {
        // A socket that no longer answers: a browser may take minutes to notice on its own.
        if (err.code === TIMEOUT && this.ws === ws) {
          this.detach();
          ws.close(CLOSE_CLIENT_TIMEOUT, "heartbeat lost");
          this.closed(CLOSE_CLIENT_TIMEOUT);
        }
      }
    }, this.heartbeatInterval);
  }

  stopHeartbeat() {
    if (this.heartbeatTimer !== null && this.heartbeatTimer !== undefined) this.timers.clear(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }
}
