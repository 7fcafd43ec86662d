// The outbox: a session's changes not yet acknowledged by the server, kept in Web Storage
// (localStorage) so that they survive a reload, a closed tab or a long outage. docs/client.md,
// "Unsent changes", states the guarantees; LiveSession (session.js) decides what is sent.
//
// One record per user, session and tab, under sessions.outbox.v1.<user>.<session>.<tab>:
//
//   {"v": 1, "savedAt": ms, "doc": {id, title, version, data, role, members},
//    "entries": [{"key", "change": {type, ...}, "sent": {"base", "ops"} | null, "at": ms}]}
//
// `doc` is the last copy of the document the tab had (shown at once after a reload, before the
// server answers); `change` is the intent's description (checklist.js revive() rebuilds it);
// `sent` is written *before* a patch leaves (write-ahead): the version it was made on and its
// operations, which is what tells, after a lost reply, whether the server applied it.
//
// A tab's id lives in its sessionStorage (so a reload keeps it) and is held as a Web Lock for
// the tab's life. A record whose tab holds no lock belongs to a closed tab: the next tab of the
// same user that opens the session adopts its entries. Pure logic over an injected storage.

export const PREFIX = "sessions.outbox.v1";
const TAB_KEY = "sessions.tab";
const TAB_LOCK = "sessions.tab.";

// The user's part of a key, with the dots escaped too: "a" must not be a prefix of "a.b".
const userPart = (user) => encodeURIComponent(user).replace(/\./g, "%2E");

function randomId(crypto = globalThis.crypto) {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * This tab's id: the one its sessionStorage holds (a reload keeps it), unless another live tab
 * holds it too (a duplicated tab starts with a copy of the original's sessionStorage): then a
 * new one. The id is held as a Web Lock until the tab closes. Without Web Locks: the stored id.
 */
export async function claimTab({ storage = globalThis.sessionStorage, locks = globalThis.navigator?.locks, wait = 1500 } = {}) {
  let id = storage?.getItem(TAB_KEY) || randomId();
  if (locks?.request) {
    // Held until the tab goes away. `wait` ms for an id still held: after a reload the page that
    // went away may not have released it yet; a duplicated tab's original never will.
    const hold = (name, ms) =>
      new Promise((resolve) => {
        const options = ms ? { signal: AbortSignal.timeout(ms) } : { ifAvailable: true };
        locks
          .request(name, options, (lock) => {
            resolve(lock !== null);
            return lock ? new Promise(() => {}) : undefined;
          })
          .catch(() => resolve(false));
      });
    if (!(await hold(TAB_LOCK + id, wait))) {
      id = randomId();
      await hold(TAB_LOCK + id, 0);
    }
  }
  storage?.setItem(TAB_KEY, id);
  return id;
}

/** The ids of tabs alive right now (their Web Locks), or null when that cannot be known. */
export async function liveTabs(locks = globalThis.navigator?.locks) {
  if (!locks?.query) return null;
  const { held = [] } = await locks.query();
  return new Set(held.filter((lock) => lock.name?.startsWith(TAB_LOCK)).map((lock) => lock.name.slice(TAB_LOCK.length)));
}

/** The outbox of one user in one session, for one tab. */
export class Outbox {
  /**
   * `user`: a stable key for the user (the token's user id); `tab`: claimTab()'s id;
   * `alive()`: resolves with the set of live tab ids, or null if unknown (then only this tab's
   * record is read: never one another open tab may still be sending).
   */
  constructor({ storage = globalThis.localStorage, user, session, tab, alive = () => liveTabs(), now = () => Date.now() }) {
    Object.assign(this, { storage, user, session, tab, alive, now });
    this.base = `${PREFIX}.${userPart(user)}.${session}.`;
    this.key = this.base + tab;
    this.failed = false; // the last write failed (quota, storage disabled): changes are in memory only
  }

  read(key) {
    try {
      const record = JSON.parse(this.storage.getItem(key));
      return record && record.v === 1 && Array.isArray(record.entries) ? record : null;
    } catch {
      return null;
    }
  }

  /**
   * This tab's record, with the entries of closed tabs' records adopted (and those records
   * removed): {doc, entries} (doc null if none was kept), entries oldest first.
   */
  async load() {
    const own = this.read(this.key);
    const records = own ? [own] : [];
    const alive = await this.alive();
    if (alive) {
      for (const key of this.keys()) {
        if (key === this.key || alive.has(key.slice(this.base.length))) continue;
        const record = this.read(key);
        if (record) records.push(record);
        this.storage.removeItem(key);
      }
    }
    const entries = records.flatMap((record) => record.entries).sort((a, b) => (a.at ?? 0) - (b.at ?? 0));
    const docs = records.map((record) => record.doc).filter(Boolean);
    const doc = docs.sort((a, b) => b.version - a.version)[0] ?? null;
    if (records.length > 1 || (own && !entries.length)) this.save({ doc, entries });
    return { doc, entries };
  }

  /** The storage keys of this user's records for this session, every tab. */
  keys() {
    const keys = [];
    for (let i = 0; i < this.storage.length; i += 1) {
      const key = this.storage.key(i);
      if (key?.startsWith(this.base)) keys.push(key);
    }
    return keys;
  }

  /** Write the record (or remove it when nothing is waiting). False when storage refused it. */
  save({ doc, entries }) {
    try {
      if (!entries.length) {
        this.storage.removeItem(this.key);
      } else {
        const record = { v: 1, savedAt: this.now(), doc, entries };
        try {
          this.storage.setItem(this.key, JSON.stringify(record));
        } catch {
          // Over quota with the document: the entries matter more than the copy shown offline.
          this.storage.setItem(this.key, JSON.stringify({ ...record, doc: null }));
        }
      }
      this.failed = false;
    } catch {
      this.failed = true;
    }
    return !this.failed;
  }
}

/** How many unsent changes this device keeps for `user`, by session id (for the list page). */
export function unsentBySession(storage, user) {
  const base = `${PREFIX}.${userPart(user)}.`;
  const counts = new Map();
  try {
    for (let i = 0; i < storage.length; i += 1) {
      const key = storage.key(i);
      if (!key?.startsWith(base)) continue;
      const session = key.slice(base.length).split(".")[0];
      const record = JSON.parse(storage.getItem(key));
      const n = Array.isArray(record?.entries) ? record.entries.length : 0;
      if (n) counts.set(session, (counts.get(session) ?? 0) + n);
    }
  } catch {
    // Storage unreadable: nothing to show.
  }
  return counts;
}

/**
 * Drop the records of sessions `user` can no longer open (not in `listed`, the ids `list`
 * returned) whose tab is closed: their changes can never be sent (the session was deleted, or
 * the user removed, while no page of it was open). A live tab's record is its own to handle.
 * Resolves with the number of changes dropped (the list page says so).
 */
export async function discardUnlisted(storage, user, listed, alive = () => liveTabs()) {
  const base = `${PREFIX}.${userPart(user)}.`;
  const tabs = await alive();
  let dropped = 0;
  try {
    const keys = [];
    for (let i = 0; i < storage.length; i += 1) {
      const key = storage.key(i);
      if (key?.startsWith(base)) keys.push(key);
    }
    for (const key of keys) {
      const [session, tab] = key.slice(base.length).split(".");
      if (listed.has(session) || !tabs || tabs.has(tab)) continue; // tabs unknown: keep everything
      const record = JSON.parse(storage.getItem(key));
      dropped += Array.isArray(record?.entries) ? record.entries.length : 0;
      storage.removeItem(key);
    }
  } catch {
    // Storage unreadable: nothing to drop.
  }
  return dropped;
}
