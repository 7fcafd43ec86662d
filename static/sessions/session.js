// The joined session on top of SessionClient: its document kept in step with the server
// (pushes applied in version order, gaps closed by re-joining with `since`), re-joined after
// every reconnect, and local changes sent as JSON Patches that are rebased and retried on
// `conflict` without the user noticing.
//
//   const live = new LiveSession(client);
//   live.on("document", () => render(live.view()));
//   await live.join(sessionId);
//   await live.change((data) => [{ op: "add", path: "/items/-", value: item }]);
//
// A change is an *intent*: a function from the current data to the ops (or null when there is
// nothing left to do). It is called again on the rebased data after a conflict, so it must look
// items up by id, never trust an index computed earlier.

import { Emitter } from "./emitter.js";
import { APPLIED, GAP, SyncedDocument } from "./document.js";
import { PatchError, applyPatch } from "./jsonpatch.js";
import { CONNECTION_LOST, ProtocolError, QUEUE_FULL, TIMEOUT } from "./requests.js";

export class LiveSession extends Emitter {
  constructor(client, { maxRetries = 5, intentLimit = 100 } = {}) {
    super();
    this.client = client;
    this.maxRetries = maxRetries;
    this.intentLimit = intentLimit;
    this.doc = null;
    this.intents = []; // changes not yet accepted, shown optimistically by view()
    this.tail = Promise.resolve(); // patches and re-joins run one at a time, in order
    this.resyncQueued = false;
    this.needsSnapshot = false;
    client.beforeReady(() => this.rejoin());
    client.on("patched", (data) => this.patched(data));
    client.on("presence", (data) => this.presence(data));
    client.on("saved", (data) => this.isMine(data) && this.emit("saved", data));
  }

  // --- public API -------------------------------------------------------------------------

  /** Create a session (the caller becomes its owner and is joined) and return its snapshot. */
  async create(title, data = {}) {
    return this.take(await this.client.request("create", { title, data }));
  }

  /** Join a session by id and return its snapshot. */
  async join(sessionId) {
    return this.take(await this.client.request("join", { session: sessionId }));
  }

  /** The data with the pending local changes applied on top (what the page shows). */
  view() {
    if (!this.doc) return null;
    let data = this.doc.data;
    for (const intent of this.intents) {
      try {
        const ops = intent(data);
        if (ops && ops.length) data = applyPatch(data, ops);
      } catch {
        // This change no longer applies; the server will say so when it is sent.
      }
    }
    return data;
  }

  /**
   * Send the change an intent describes; resolve with the patch reply ({version}) or
   * {skipped: true} when the intent found nothing to do. Rejects with ProtocolError when the
   * server refuses it (permission_denied, invalid_data...), the connection does not come back
   * in time (`offline`), or it kept conflicting after `maxRetries` rebases.
   */
  change(intent) {
    if (!this.doc) return Promise.reject(new ProtocolError("not_joined", "No session is open."));
    if (this.intents.length >= this.intentLimit) {
      return Promise.reject(new ProtocolError(QUEUE_FULL, "Too many changes are waiting to be sent."));
    }
    this.intents.push(intent);
    this.emit("document");
    return this.serial(() => this.send(intent)).finally(() => {
      this.intents.splice(this.intents.indexOf(intent), 1);
      this.emit("document");
    });
  }

  // --- internals --------------------------------------------------------------------------

  serial(task) {
    const run = this.tail.then(task, task);
    this.tail = run.catch(() => {});
    return run;
  }

  take(snapshot) {
    this.doc = new SyncedDocument(snapshot);
    this.emit("document");
    this.emit("presence", { present: this.doc.present });
    return snapshot;
  }

  isMine(data) {
    return this.doc !== null && data.session === this.doc.id;
  }

  async send(intent) {
    let invalidOnce = false;
    for (let attempt = 0; attempt <= this.maxRetries; attempt += 1) {
      await this.client.whenReady();
      const doc = this.doc;
      const ops = intent(doc.data);
      if (!ops || ops.length === 0) return { version: doc.version, skipped: true };
      doc.begin();
      let reply;
      try {
        reply = await this.client.requestNow("patch", { version: doc.version, ops });
      } catch (err) {
        const followUp = doc.failed();
        if (err.code === "conflict" || err.code === TIMEOUT) {
          await this.catchUp(); // rebase on what the others did, then compute the ops again
          continue;
        }
        if (err.code === CONNECTION_LOST) continue; // the reconnect re-joins; try again then
        if (err.code === "invalid_data" && !invalidOnce) {
          invalidOnce = true; // our copy may be behind without our knowing: catch up once
          await this.catchUp();
          continue;
        }
        if (followUp === GAP) this.queueResync();
        throw err;
      }
      if (doc.accepted(reply.version, ops) === GAP) await this.catchUp();
      this.emit("document");
      return reply;
    }
    throw new ProtocolError("conflict", "Your change kept colliding with other people's; please try again.");
  }

  // After a reconnect (before queued requests go out): catch up from our version.
  async rejoin() {
    if (!this.doc) return;
    await this.resync();
    const { present } = await this.client.requestNow("presence", {});
    this.presence({ session: this.doc.id, present });
  }

  /** Re-join with `since` and apply the changes we missed (or take the snapshot offered). */
  async resync() {
    const doc = this.doc;
    try {
      if (this.needsSnapshot) throw new PatchError("the local copy diverged");
      const reply = await this.client.requestNow("join", { session: doc.id, since: doc.version });
      if (!Array.isArray(reply.changes) || doc.catchUp(reply.changes) === GAP) {
        const full = Array.isArray(reply.changes)
          ? await this.client.requestNow("join", { session: doc.id })
          : reply;
        doc.reset(full);
      }
    } catch (err) {
      if (!(err instanceof PatchError)) throw err;
      doc.reset(await this.client.requestNow("join", { session: doc.id })); // copies diverged
      this.needsSnapshot = false;
    }
    this.emit("document");
  }

  queueResync() {
    if (this.resyncQueued) return;
    this.resyncQueued = true;
    this.serial(async () => {
      this.resyncQueued = false;
      await this.client.whenReady();
      await this.catchUp();
    }).catch((err) => this.emit("error", err));
  }

  // resync(), except that a connection lost on the way is left to the re-join after reconnect.
  async catchUp() {
    try {
      await this.resync();
    } catch (err) {
      if (err.code !== CONNECTION_LOST) throw err;
    }
  }

  patched(data) {
    if (!this.isMine(data)) return;
    let result;
    try {
      result = this.doc.receive(data.version, data.ops);
    } catch {
      result = GAP; // the ops do not apply to our copy: it diverged, take a fresh snapshot
      this.needsSnapshot = true;
    }
    if (result === APPLIED) this.emit("document");
    if (result === GAP) this.queueResync();
    this.emit("patched", data);
  }

  presence(data) {
    if (!this.doc || (data.session !== undefined && data.session !== this.doc.id)) return;
    this.doc.present = data.present ?? [];
    this.emit("presence", data);
  }
}
