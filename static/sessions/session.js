// The joined session on top of SessionClient: its document kept in step with the server
// (pushes applied in version order, gaps closed by re-joining with `since`), re-joined after
// every reconnect, and local changes sent as JSON Patches that are rebased and retried on
// `conflict` without the user noticing.
//
//   const live = new LiveSession(client, { openOutbox: (id) => new Outbox({...}), revive });
//   live.on("document", () => render(live.view()));
//   await live.join(sessionId);
//   await live.change((data) => [{ op: "add", path: "/items/-", value: item }]);
//
// A change is an *intent*: a function from the current data to the ops (or null when there is
// nothing left to do). It is called again on the rebased data after a conflict, so it must look
// items up by id, never trust an index computed earlier. An intent with a `change` description
// (checklist.js) is also kept in the outbox (outbox.js) until the server acknowledges or refuses
// it, across reconnects, reloads and closed tabs; no outage, however long, drops it.
//
// Exactly once: before a patch leaves, the version it is made on (`base`) and its ops are written
// down, and every send carries the change's key. If the reply never comes (the socket dropped,
// the tab was reloaded), the server's change log says what happened: a change after base by this
// user with these ops is ours (applied: done); otherwise the intent is computed again and sent
// with the same key, which the server answers `duplicate` if the first copy landed after all
// (rebased, maybe with its pointers moved). docs/client.md, "Unsent changes", has the argument.

import { Emitter } from "./emitter.js";
import { APPLIED, BUFFERED, GAP, SyncedDocument } from "./document.js";
import { PatchError, applyPatch, deepClone, deepEqual } from "./jsonpatch.js";
import { RebaseConflict, rebase } from "./rebase.js";
import { CLOSED, CONNECTION_LOST, ProtocolError, QUEUE_FULL, TIMEOUT } from "./requests.js";

const HISTORY = 500; // changes remembered by version, to recognise our own after a lost reply
const FOREVER = Infinity;
const PUSH_WAIT = 2000; // ms a rebased reply waits for the others' pushes before re-joining
// ms a push ahead of our copy waits for the ones before it before a re-join: with stale patches
// rebased on the server, two members' changes commit moments apart, and their pushes may cross.
export const GAP_WAIT = 300;

// A failure that says nothing about the change itself: wait for the connection and go on.
const transient = (err) => err?.code === CONNECTION_LOST || err?.code === TIMEOUT;

let keys = 0;
function entryKey() {
  keys += 1;
  const random = globalThis.crypto?.getRandomValues ? globalThis.crypto.getRandomValues(new Uint32Array(1))[0].toString(36) : "";
  return `${Date.now().toString(36)}-${random}-${keys}`;
}

export class LiveSession extends Emitter {
  /**
   * `openOutbox(sessionId)` returns the Outbox to keep unsent changes in (or null: memory only);
   * `revive(description)` rebuilds an intent from its stored description. `intentLimit` bounds
   * the changes waiting at once (the next one is refused with `offline_queue_full`).
   */
  constructor(client, { maxRetries = 5, intentLimit = 500, openOutbox = null, revive = null, now = () => Date.now() } = {}) {
    super();
    Object.assign(this, { client, maxRetries, intentLimit, openOutbox, revive, now });
    this.doc = null;
    this.sessionId = null;
    this.outbox = null;
    this.entries = []; // changes not yet acknowledged, oldest first, shown optimistically by view()
    this.history = new Map(); // version -> {by, ops} of changes seen lately
    this.lastRemote = null; // the latest change by someone else (or another tab): {version, by}
    this.tail = Promise.resolve(); // patches and re-joins run one at a time, in order
    this.resyncQueued = false;
    this.gapTimer = null; // awaitGap's timer
    this.needsSnapshot = false;
    this.frozen = false; // the client closed for good: the outbox is left as it is for next time
    this.ended = false; // end(): the session can no longer be joined; nothing is kept for it
    this.dropped = 0;
    client.beforeReady(() => this.rejoin());
    client.on("patched", (data) => this.patched(data));
    client.on("presence", (data) => this.presence(data));
    client.on("saved", (data) => this.isMine(data) && this.emit("saved", data));
  }

  // --- public API -------------------------------------------------------------------------

  /** Create a session (the caller becomes its owner and is joined) and return its snapshot. */
  async create(title, data = {}) {
    const snapshot = await this.client.request("create", { title, data });
    this.sessionId = snapshot.id;
    this.outbox = this.openOutbox?.(snapshot.id) ?? null;
    return this.take(snapshot);
  }

  /**
   * Join a session by id and return its snapshot. Changes this user left unsent in it (an
   * earlier tab, a reload during an outage) are restored first and shown with the copy of the
   * document kept with them; they go out once the server has answered. Waits for the connection
   * as long as it takes; rejects only when the server refuses (`not_found`...) or the client is
   * closed for good.
   */
  async join(sessionId) {
    this.sessionId = sessionId;
    this.outbox = this.openOutbox?.(sessionId) ?? null;
    if (this.outbox) await this.restore();
    try {
      for (;;) {
        await this.client.whenReady(FOREVER);
        if (this.doc && !this.doc.cached) return this.snapshot();
        try {
          return this.take(await this.client.requestNow("join", { session: sessionId }));
        } catch (err) {
          if (!transient(err)) throw err;
        }
      }
    } catch (err) {
      this.joinFailed = err; // restored changes cannot go anywhere: they are refused with it
      this.emit("joinfailed", err);
      throw err;
    }
  }

  /**
   * The session can no longer be joined (this user was removed from it, or it was deleted): the
   * changes still waiting are dropped, from memory and from the outbox, and each one's promise
   * rejects with `error` (a ProtocolError, e.g. `not_found`). Returns how many were dropped, the
   * same on every call (the page tells the user once).
   */
  end(error) {
    if (this.ended) return this.dropped;
    this.ended = true;
    this.dropped = this.entries.length;
    this.joinFailed = error;
    this.outbox?.save({ doc: null, entries: [] });
    this.emit("joinfailed", error);
    return this.dropped;
  }

  /**
   * The data with the pending local changes applied on top (what the page shows). A change on
   * its way is shown as the server will apply it: its operations rebased on the changes pushed
   * since the version it was made on (rebase.js, the server's rules), so the view does not move
   * when the reply comes; a change not sent yet, or one that collides (the server will refuse
   * it, and the intent is computed again), is its intent on the data shown.
   */
  view() {
    if (!this.doc) return null;
    let data = this.doc.data;
    for (const entry of this.entries) {
      try {
        const ops = this.inFlightOps(entry, data) ?? entry.intent(data);
        if (ops && ops.length) data = applyPatch(data, ops);
      } catch {
        // This change no longer applies (or meets someone else's edit); the send will say so.
      }
    }
    return data;
  }

  // The operations of a change on its way rebased on the changes since it left, or null.
  inFlightOps(entry, data) {
    const sent = entry.sent;
    if (!sent || entry !== this.entries[0] || data !== this.doc.data) return null;
    const since = this.changesBetween(sent.base, this.doc.version);
    if (!since) return null;
    try {
      return rebase(sent.ops, since, () => data);
    } catch (err) {
      if (err instanceof RebaseConflict) return null;
      throw err;
    }
  }

  // The operations of the changes after `from` up to `to`, oldest first, or null if one is not known.
  changesBetween(from, to) {
    const ops = [];
    for (let v = from + 1; v <= to; v += 1) {
      const change = this.history.get(v);
      if (!change) return null;
      ops.push(change.ops);
    }
    return ops;
  }

  /** Changes not yet acknowledged by the server. */
  get pendingCount() {
    return this.entries.length;
  }

  /** False when the last write to the outbox failed: unsent changes are only in this tab's memory. */
  get persisted() {
    return this.outbox !== null && !this.outbox.failed;
  }

  /**
   * Send the change an intent describes; resolve with the patch reply ({version}) or
   * {skipped: true} when the intent found nothing to do. Waits for the connection however long
   * it takes. Rejects with ProtocolError when the server refuses it (permission_denied,
   * invalid_data...), it kept conflicting after `maxRetries` rebases, or the client was closed
   * for good (`closed`: the change stays in the outbox for the next visit); with the intent's
   * own error (EditConflict) when it cannot be rebased without the user.
   */
  change(intent) {
    if (!this.sessionId) return Promise.reject(new ProtocolError("not_joined", "No session is open."));
    if (this.entries.length >= this.intentLimit) {
      return Promise.reject(new ProtocolError(QUEUE_FULL, `Too many changes are waiting to be sent (${this.intentLimit}).`));
    }
    const entry = { key: entryKey(), intent, change: intent.change ?? null, sent: null, at: this.now() };
    this.entries.push(entry);
    this.persist();
    this.emit("document");
    return this.schedule(entry);
  }

  /**
   * Make the document what it was in revision `number` (the `restore` state): one new change,
   * made on the version shown once every change of ours still on its way has gone, that every
   * member sees. Resolves with the reply ({version, revision, ops}; no ops when the document was
   * that already), the copy updated. Needs the connection now: rejects with `offline` when it is
   * down (a restore is a decision on what the user sees, not queued for later). Rejects with the
   * server's ProtocolError: `conflict` when someone else's change came first (the copy catches
   * up; nothing was restored, the user decides again), `permission_denied`, `not_found`; with
   * `connection_lost` or `timeout` when the reply never came (the restore may have been applied:
   * the re-join shows the document either way).
   */
  restoreRevision(number) {
    if (!this.sessionId) return Promise.reject(new ProtocolError("not_joined", "No session is open."));
    if (!this.client.ready) return Promise.reject(new ProtocolError("offline", "Restoring needs the connection."));
    return this.serial(async () => {
      await this.ready();
      const doc = this.doc;
      doc.begin();
      let reply;
      try {
        reply = await this.client.requestNow("restore", { number, version: doc.version });
      } catch (err) {
        const followUp = doc.failed();
        if (err.code === "conflict" || followUp === GAP) await this.catchUp().catch(() => {});
        throw err;
      }
      if (reply.ops.length) this.remember({ version: reply.version, ops: reply.ops, by: this.client.user });
      if (doc.accepted(reply.version, reply.ops) === GAP) await this.catchUp().catch(() => {});
      this.persist();
      this.emit("document");
      return reply;
    });
  }

  // --- internals --------------------------------------------------------------------------

  serial(task) {
    const run = this.tail.then(task, task);
    this.tail = run.catch(() => {});
    return run;
  }

  schedule(entry) {
    return this.serial(() => this.send(entry)).then(
      (result) => {
        this.settled(entry);
        return result;
      },
      (err) => {
        if (err?.code === CLOSED) this.frozen = true; // keep it stored for the next visit
        this.settled(entry);
        throw err;
      },
    );
  }

  settled(entry) {
    const i = this.entries.indexOf(entry);
    if (i !== -1) this.entries.splice(i, 1);
    this.persist();
    this.emit("document");
  }

  // Write the unsent changes (and the copy of the document they apply to) to the outbox.
  persist() {
    if (!this.outbox || this.frozen || this.ended) return;
    const doc = this.doc && {
      id: this.doc.id,
      title: this.doc.title,
      version: this.doc.version,
      data: this.doc.data,
      role: this.doc.role,
      members: this.doc.members,
    };
    const entries = this.entries
      .filter((entry) => entry.change)
      .map(({ key, change, sent, at }) => ({ key, change, sent, at }));
    const wasFailing = this.outbox.failed;
    this.outbox.save({ doc, entries });
    if (this.outbox.failed !== wasFailing) this.emit("document");
  }

  // The outbox's entries back into the queue, and its copy of the document on screen.
  async restore() {
    const { doc, entries } = await this.outbox.load();
    if (doc && !this.doc) {
      this.doc = new SyncedDocument({ ...doc, present: [] });
      this.doc.cached = true; // not confirmed by the server yet
    }
    for (const stored of entries) {
      const intent = this.revive?.(stored.change);
      const entry = { ...stored, intent };
      if (!intent) {
        this.emit("refused", { entry, error: new ProtocolError("invalid_data", "A change kept on this device could not be read.") });
        continue;
      }
      this.entries.push(entry);
      this.schedule(entry).catch((error) => this.emit("refused", { entry, error }));
    }
    this.persist();
    if (this.doc) {
      this.emit("document");
      this.emit("presence", { present: [] });
    }
  }

  take(snapshot) {
    this.doc = new SyncedDocument(snapshot);
    this.history.clear();
    this.persist();
    this.emit("document");
    this.emit("presence", { present: this.doc.present });
    return snapshot;
  }

  snapshot() {
    const { id, title, version, data, role, members, present } = this.doc;
    return { id, title, version, data, role, members, present };
  }

  isMine(data) {
    return this.doc !== null && data.session === this.doc.id;
  }

  // Until the client is ready and the document is the server's (not the copy kept offline).
  async ready() {
    for (;;) {
      await this.client.whenReady(FOREVER);
      if (this.joinFailed) throw this.joinFailed;
      if (this.doc && !this.doc.cached) return;
      // The re-join or join() is fetching the snapshot: wait for it (or its failure, or the end).
      await new Promise((resolve) => {
        const offs = [
          this.on("document", () => this.doc && !this.doc.cached && done()),
          this.on("joinfailed", () => done()),
          this.client.on("status", () => done()),
        ];
        const done = () => (offs.forEach((off) => off()), resolve());
      });
    }
  }

  async send(entry) {
    let invalidOnce = false;
    let conflicts = 0;
    for (;;) {
      let ops;
      let doc;
      try {
        await this.ready();
        if (entry.sent) {
          const outcome = await this.settle(entry);
          if (outcome.applied) return { version: outcome.version };
          entry.sent = null; // not applied (or not knowable: then the intent's own check decides)
          this.persist();
        }
        doc = this.doc;
        ops = entry.intent(doc.data);
        if (!ops || ops.length === 0) return { version: doc.version, skipped: true };
        entry.sent = { base: doc.version, ops: deepClone(ops) };
        this.persist(); // written down before the patch leaves
      } catch (err) {
        if (transient(err)) continue; // the reconnect re-joins; try again then
        throw err;
      }
      doc.begin();
      let reply;
      try {
        // The key makes a second copy harmless: the server does not apply one twice.
        reply = await this.client.requestNow("patch", { version: doc.version, ops, key: entry.key });
      } catch (err) {
        const followUp = doc.failed();
        // Lost or late reply: it may have been applied. Catch up; settle() decides next time.
        if (transient(err)) {
          if (err.code === TIMEOUT) await this.catchUp().catch(() => {});
          continue;
        }
        if (err.code === "conflict" && conflicts < this.maxRetries) {
          // Someone's change is at base + 1. Not this patch, but perhaps an earlier send of this
          // same change whose reply was lost: `sent` stays, and settle() looks after the catch-up.
          conflicts += 1;
          await this.catchUp().catch(() => {}); // rebase on what the others did, then compute again
          continue;
        }
        entry.sent = null; // refused: it was not applied
        this.persist();
        if (err.code === "invalid_data" && !invalidOnce) {
          invalidOnce = true; // our copy may be behind without our knowing: catch up once
          await this.catchUp().catch(() => {});
          continue;
        }
        if (followUp === GAP) this.queueResync();
        if (err.code === "conflict") {
          throw new ProtocolError("conflict", "Your change kept colliding with other people's; please try again.");
        }
        throw err;
      }
      // Rebased (or a copy already applied): the server's operations, not ours, are what it stored.
      const applied = Array.isArray(reply.ops) ? reply.ops : ops;
      this.remember({ version: reply.version, ops: applied, by: this.client.user });
      const outcome = doc.accepted(reply.version, applied);
      if (outcome === BUFFERED) await this.untilVersion(doc, reply.version);
      else if (outcome === GAP) await this.catchUp().catch(() => {});
      entry.sent = null;
      this.emit("document");
      return reply;
    }
  }

  // After a rebased reply: wait for the others' pushes between our base and `version` (the entry
  // stays pending meanwhile, so the view does not move); re-join if they do not come in time.
  async untilVersion(doc, version) {
    if (doc.version >= version) return;
    const arrived = await new Promise((resolve) => {
      const timer = this.client.timers.set(() => done(false), PUSH_WAIT);
      const off = this.on("document", () => doc.version >= version && done(true));
      const done = (ok) => {
        this.client.timers.clear(timer);
        off();
        resolve(ok);
      };
    });
    if (!arrived && this.doc === doc && doc.version < version) await this.catchUp().catch(() => {});
  }

  /**
   * A patch of ours went out on version `base` and its reply never came. Rebased, it may have
   * become any later version: a change after base by us with these ops means applied.
   * {applied, version} or {applied: false} (sent again with its key: never applied twice);
   * {unknown: true} when the server no longer keeps the change at base + 1 (the intent decides).
   */
  async settle(entry) {
    const { base, ops } = entry.sent;
    if (this.doc.version <= base) return { applied: false }; // nothing came after base, ours neither
    if (!this.history.has(base + 1)) {
      const reply = await this.client.requestNow("join", { session: this.doc.id, since: base });
      if (Array.isArray(reply.changes)) {
        for (const change of reply.changes) this.remember(change);
        if (this.doc.catchUp(reply.changes) === GAP) this.queueResync();
      } else {
        this.doc.reset(reply);
      }
      this.emit("document");
    }
    if (!this.history.has(base + 1)) return { unknown: true };
    // Rebased, it may be at any later version; its operations as sent when nothing moved them.
    // One moved by the rebase is not recognised here: it is sent again, with its key, and the
    // server answers that it has it (`duplicate`) instead of applying it twice.
    for (let v = base + 1; v <= this.doc.version; v += 1) {
      const change = this.history.get(v);
      if (change && change.by?.id === this.client.user?.id && deepEqual(change.ops, ops)) return { applied: true, version: v };
    }
    return { applied: false };
  }

  remember(change) {
    if (typeof change?.version !== "number") return;
    this.history.set(change.version, { by: change.by, ops: change.ops });
    if (this.history.size > HISTORY) this.history.delete(this.history.keys().next().value);
    const me = this.client.user?.id;
    if (change.by && change.by.id !== me && (!this.lastRemote || change.version > this.lastRemote.version)) {
      this.lastRemote = { version: change.version, by: change.by };
    }
  }

  // After a reconnect (before queued requests go out): catch up from our version, or take the
  // server's snapshot when what we show is the copy kept on this device.
  async rejoin() {
    if (!this.doc || !this.sessionId) return; // join() takes the first snapshot itself
    if (this.doc.cached) {
      try {
        this.take(await this.client.requestNow("join", { session: this.sessionId }));
      } catch (err) {
        if (!transient(err)) {
          this.joinFailed = err;
          this.emit("joinfailed", err);
        }
        throw err;
      }
    } else {
      await this.resync();
    }
    const { present } = await this.client.requestNow("presence", {});
    this.presence({ session: this.doc.id, present });
  }

  /** Re-join with `since` and apply the changes we missed (or take the snapshot offered). */
  async resync() {
    const doc = this.doc;
    try {
      if (this.needsSnapshot) throw new PatchError("the local copy diverged");
      const reply = await this.client.requestNow("join", { session: doc.id, since: doc.version });
      if (Array.isArray(reply.changes)) for (const change of reply.changes) this.remember(change);
      if (!Array.isArray(reply.changes) || doc.catchUp(reply.changes) === GAP) {
        const full = Array.isArray(reply.changes) ? await this.client.requestNow("join", { session: doc.id }) : reply;
        doc.reset(full);
      }
    } catch (err) {
      if (!(err instanceof PatchError)) throw err;
      doc.reset(await this.client.requestNow("join", { session: doc.id })); // copies diverged
      this.needsSnapshot = false;
    }
    this.persist();
    this.emit("document");
  }

  queueResync() {
    if (this.resyncQueued) return;
    this.resyncQueued = true;
    this.serial(async () => {
      this.resyncQueued = false;
      await this.client.whenReady(FOREVER);
      await this.catchUp();
    }).catch((err) => this.emit("error", err));
  }

  // resync(), except that a connection lost on the way is left to the re-join after reconnect.
  async catchUp() {
    try {
      await this.resync();
    } catch (err) {
      if (!transient(err)) throw err;
    }
  }

  patched(data) {
    if (!this.isMine(data) || this.doc.cached) return;
    this.remember(data);
    let result;
    try {
      result = this.doc.receive(data.version, data.ops);
    } catch {
      result = GAP; // the ops do not apply to our copy: it diverged, take a fresh snapshot
      this.needsSnapshot = true;
    }
    if (result === APPLIED) {
      this.endGapWait();
      this.emit("document");
    }
    if (result === GAP) this.awaitGap();
    this.emit("patched", data);
  }

  // A push ahead of our copy: the ones before it may be on their way (docs/protocol.md section 7,
  // "Gaps"); re-join with `since` only if the copy still lacks them after GAP_WAIT. A copy that
  // diverged re-joins at once.
  awaitGap() {
    if (this.needsSnapshot) return this.queueResync();
    if (this.gapTimer !== null) return;
    this.gapTimer = this.client.timers.set(() => {
      this.gapTimer = null;
      if (this.doc?.buffer.size > 0) this.queueResync();
    }, GAP_WAIT);
  }

  endGapWait() {
    if (this.gapTimer === null || this.doc?.buffer.size > 0) return;
    this.client.timers.clear(this.gapTimer);
    this.gapTimer = null;
  }

  presence(data) {
    if (!this.doc || (data.session !== undefined && data.session !== this.doc.id)) return;
    this.doc.present = data.present ?? [];
    this.emit("presence", data);
  }
}
