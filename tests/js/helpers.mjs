// Test doubles for the client: a manual clock, a scripted WebSocket and an in-memory token store.

import { Emitter } from "../../static/sessions/emitter.js";

/** Timers that fire only when the test advances the clock. */
export class ManualTimers {
  constructor() {
    this.now = 0;
    this.seq = 0;
    this.queue = new Map();
    this.set = (fn, ms) => {
      this.seq += 1;
      this.queue.set(this.seq, { fn, at: this.now + ms });
      return this.seq;
    };
    this.clear = (handle) => this.queue.delete(handle);
  }

  get pending() {
    return this.queue.size;
  }

  /** The delay of the only (or the earliest) timer due, from now. */
  nextDelay() {
    const ats = [...this.queue.values()].map((t) => t.at);
    return ats.length ? Math.min(...ats) - this.now : null;
  }

  advance(ms) {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.queue.entries()].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.queue.delete(due[0]);
      this.now = due[1].at;
      due[1].fn();
    }
    this.now = until;
  }
}

/** Let pending promise callbacks run. */
export async function flush(rounds = 20) {
  for (let i = 0; i < rounds; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

/** A WebSocket double: the test plays the server through open(), reply(), push(), serverClose(). */
export class FakeSocket {
  static instances = [];

  constructor(url) {
    this.url = url;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.instances.push(this);
  }

  static reset() {
    FakeSocket.instances = [];
  }

  static get last() {
    return FakeSocket.instances.at(-1);
  }

  send(frame) {
    this.sent.push(JSON.parse(frame));
  }

  close(code, reason) {
    this.closedWith = { code, reason };
  }

  // --- server side ---
  open() {
    this.onopen?.({});
  }

  deliver(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  serverClose(code) {
    this.onclose?.({ code });
  }

  /** An error event with no close event after it (Node's built-in WebSocket, refused connect). */
  errorOnly() {
    this.onerror?.({});
  }

  /** Open, check the token frame, and answer it with `initialised`. */
  handshake(user = { id: 1, username: "alice" }) {
    this.open();
    const first = this.sent.shift();
    if (!first || typeof first.token !== "string") throw new Error(`expected a token frame, got ${JSON.stringify(first)}`);
    this.deliver({ state: "initialised", data: { user, protocol: 1, token_expires_at: "2099-01-01T00:00:00Z" } });
    return first.token;
  }

  /** The last request sent with `state` (removed from `sent`). */
  take(state) {
    const index = this.sent.findLastIndex((frame) => frame.state === state);
    if (index === -1) throw new Error(`no "${state}" request in ${JSON.stringify(this.sent)}`);
    return this.sent.splice(index, 1)[0];
  }

  reply(request, data = {}) {
    this.deliver({ state: request.state, data, id: request.id });
  }

  error(request, code, error = code, extra = {}) {
    this.deliver({ state: "error", code, error, id: request.id, request_state: request.state, ...extra });
  }
}

function jwt(expSeconds) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  return `${b64({ alg: "HS256" })}.${b64({ exp: expSeconds, token_type: "access" })}.sig`;
}

/** A token store whose refresh succeeds (new tokens) or fails as scripted; emits "signedout" as
 * TokenStore does when another tab signs out (the test calls emit). */
export class FakeTokens extends Emitter {
  constructor() {
    super();
    this.access = jwt(4102444800);
    this.refreshCalls = 0;
    this.refreshResult = "ok"; // "ok" | "signed_out" | "network"
    this.expired = false;
  }

  accessExpired() {
    return this.expired;
  }

  async refresh() {
    this.refreshCalls += 1;
    const { SignedOutError } = await import("../../static/sessions/tokens.js");
    if (this.refreshResult === "signed_out") throw new SignedOutError();
    if (this.refreshResult === "network") throw new Error("server unreachable");
    this.expired = false;
    this.access = `${jwt(4102444800)}-${this.refreshCalls}`;
    return this.access;
  }
}

export { jwt };

/** Web Storage (localStorage) in memory; `quota` bytes of keys and values, as a browser limits it. */
export class MemoryStorage {
  constructor({ quota = Infinity } = {}) {
    this.map = new Map();
    this.quota = quota;
    this.broken = false; // every write throws (storage disabled)
  }

  get length() {
    return this.map.size;
  }

  key(i) {
    return [...this.map.keys()][i] ?? null;
  }

  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }

  setItem(key, value) {
    if (this.broken) throw new Error("SecurityError: storage is disabled");
    const used = [...this.map].reduce((n, [k, v]) => n + (k === key ? 0 : k.length + v.length), 0);
    if (used + key.length + String(value).length > this.quota) throw new Error("QuotaExceededError");
    this.map.set(key, String(value));
  }

  removeItem(key) {
    this.map.delete(key);
  }
}
