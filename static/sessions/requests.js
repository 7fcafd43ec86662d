// Request/reply matching on `id` (protocol.md §3) and the bounded queue of requests made while
// the socket is down. Pure logic with injectable timers, unit-tested from Node.

/** An error frame from the server, or a client-side failure given a protocol-like code. */
export class ProtocolError extends Error {
  constructor(code, message, { data, errors, requestState } = {}) {
    super(message || code);
    this.name = "ProtocolError";
    this.code = code;
    this.data = data;
    this.errors = errors;
    this.requestState = requestState;
  }
}

// Client-side codes (never sent by the server).
export const TIMEOUT = "timeout"; // no reply within the request's timeout
export const CONNECTION_LOST = "connection_lost"; // the socket closed before the reply came
export const OFFLINE = "offline"; // the connection did not come back within the queue wait
export const QUEUE_FULL = "offline_queue_full"; // too many requests waiting for the connection
export const CLOSED = "closed"; // the client is closed for good (signed out, saved, 1009/4413)

const defaultTimers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (handle) => clearTimeout(handle),
};

/** In-flight requests by id; each settles once, on its reply, its error, a timeout or a reset. */
export class PendingRequests {
  constructor({ prefix = "r", timers = defaultTimers } = {}) {
    this.prefix = prefix;
    this.timers = timers;
    this.counter = 0;
    this.pending = new Map();
  }

  get size() {
    return this.pending.size;
  }

  nextId() {
    this.counter += 1;
    return `${this.prefix}${this.counter}`;
  }

  /** Register a request; returns {id, promise}. The promise rejects with TIMEOUT after `timeout` ms. */
  add(state, timeout) {
    const id = this.nextId();
    const promise = new Promise((resolve, reject) => {
      const timer = this.timers.set(() => {
        this.pending.delete(id);
        reject(new ProtocolError(TIMEOUT, `No reply to "${state}" within ${timeout / 1000} s.`, { requestState: state }));
      }, timeout);
      this.pending.set(id, { state, resolve, reject, timer });
    });
    return { id, promise };
  }

  /**
   * Settle the request a frame answers. Returns true when the frame carried the id of a pending
   * request (a reply resolves with its `data`, an error frame rejects with ProtocolError), false
   * for pushes and for ids not (or no longer) pending, such as a reply arriving after a timeout.
   */
  settle(frame) {
    if (frame === null || typeof frame !== "object" || frame.id === undefined || frame.id === null) return false;
    const id = String(frame.id);
    const entry = this.pending.get(id);
    if (!entry) return false;
    this.pending.delete(id);
    this.timers.clear(entry.timer);
    if (frame.state === "error") {
      entry.reject(
        new ProtocolError(frame.code || "error", typeof frame.error === "string" ? frame.error : "Request failed.", {
          data: frame.data,
          errors: frame.errors,
          requestState: frame.request_state || entry.state,
        }),
      );
    } else {
      entry.resolve(frame.data === undefined ? {} : frame.data);
    }
    return true;
  }

  /** Reject every pending request (the socket closed: their replies will never come). */
  rejectAll(makeError) {
    const entries = [...this.pending.values()];
    this.pending.clear();
    for (const entry of entries) {
      this.timers.clear(entry.timer);
      entry.reject(makeError(entry.state));
    }
  }
}

/**
 * Requests made while the socket is not ready wait here, in order, until it is. Bounded twice:
 * at most `limit` entries (the next one is refused with QUEUE_FULL) and each waits at most
 * `timeout` ms (then rejects with OFFLINE), so nothing ever fails silently or waits forever.
 */
export class OfflineQueue {
  constructor({ limit = 100, timeout = 30000, timers = defaultTimers } = {}) {
    this.limit = limit;
    this.timeout = timeout;
    this.timers = timers;
    this.items = [];
  }

  get size() {
    return this.items.length;
  }

  /** Queue `payload`; the promise settles with whatever the consumer of drain() passes on. */
  push(payload, timeout = this.timeout) {
    if (this.items.length >= this.limit) {
      return Promise.reject(
        new ProtocolError(QUEUE_FULL, `Too many changes are waiting for the connection (${this.limit}).`),
      );
    }
    return new Promise((resolve, reject) => {
      const item = { payload, resolve, reject, timer: null };
      item.timer = this.timers.set(() => {
        this.items = this.items.filter((other) => other !== item);
        reject(new ProtocolError(OFFLINE, `Still offline after ${Math.round(timeout / 1000)} s; not sent.`));
      }, timeout);
      this.items.push(item);
    });
  }

  /** Take every waiting entry, oldest first: [{payload, resolve, reject}]. */
  drain() {
    const items = this.items;
    this.items = [];
    for (const item of items) this.timers.clear(item.timer);
    return items;
  }

  rejectAll(error) {
    for (const item of this.drain()) item.reject(error);
  }
}
