// The local copy of a joined session's document and its version, kept in step with the server.
//
// The guarantee (docs/client.md, "Gap detection"): the local data is always exactly the server's
// data at the local version. Every change is applied only on top of the version it follows
// (pushed version == local version + 1); anything else is either already included (ignored) or
// reveals a gap, which the client closes by re-joining with `since` = the local version. Pure
// logic: no socket, no timers.

import { applyPatch } from "./jsonpatch.js";

export const APPLIED = "applied"; // the change was applied; version moved on
export const STALE = "stale"; // the change is already included; nothing to do
export const BUFFERED = "buffered"; // kept until our own in-flight patch is answered
export const GAP = "gap"; // a change is missing: re-join with since

export class SyncedDocument {
  constructor(snapshot) {
    this.reset(snapshot);
  }

  /** Take a full snapshot (a `create` or `join` reply with `data`). */
  reset(snapshot) {
    this.id = snapshot.id;
    this.title = snapshot.title ?? this.title ?? "";
    this.version = snapshot.version;
    this.data = snapshot.data ?? {};
    if (snapshot.role !== undefined) this.role = snapshot.role;
    if (snapshot.members !== undefined) this.members = snapshot.members;
    if (snapshot.present !== undefined) this.present = snapshot.present;
    this.members ??= [];
    this.present ??= [];
    this.inFlight = false;
    this.buffer = new Map(); // version -> ops, pushes that arrived ahead of our own patch
  }

  get canEdit() {
    return this.role === "owner" || this.role === "editor";
  }

  // Apply buffered pushes that now follow on; drop the ones already included.
  drain() {
    for (const v of [...this.buffer.keys()]) if (v <= this.version) this.buffer.delete(v);
    while (this.buffer.has(this.version + 1)) {
      const ops = this.buffer.get(this.version + 1);
      this.buffer.delete(this.version + 1);
      this.data = applyPatch(this.data, ops);
      this.version += 1;
    }
  }

  /**
   * A `patched` push from someone else. While our own patch is in flight a push may run ahead of
   * its reply (our change may be the version in between), so it is buffered instead of treated
   * as a gap. Throws PatchError if the ops do not apply (the copies diverged: take a snapshot).
   */
  receive(version, ops) {
    if (version <= this.version) return STALE;
    if (version === this.version + 1) {
      this.data = applyPatch(this.data, ops);
      this.version = version;
      this.drain();
      return this.inFlight || this.buffer.size === 0 ? APPLIED : GAP;
    }
    if (this.inFlight) {
      this.buffer.set(version, ops);
      return BUFFERED;
    }
    this.buffer.set(version, ops);
    return GAP;
  }

  /** Mark our own patch as sent (based on the current version). */
  begin() {
    this.inFlight = true;
  }

  /**
   * Our patch was accepted at `version`, with `ops` as the server applied them (the reply's `ops`
   * when it was rebased, docs/protocol.md section 7, "Rebase"). A rebased patch can land more than
   * one version ahead: the others' changes in between come as pushes, maybe after the reply, so
   * our change is held until they do (BUFFERED; the caller re-joins if they never come).
   */
  accepted(version, ops) {
    this.inFlight = false;
    let result = STALE;
    if (version === this.version + 1) {
      this.data = applyPatch(this.data, ops);
      this.version = version;
      result = APPLIED;
    } else if (version > this.version + 1) {
      this.buffer.set(version, ops);
      this.drain();
      return this.version >= version ? APPLIED : BUFFERED;
    }
    this.drain();
    return this.buffer.size === 0 ? result : GAP;
  }

  /** Our patch was refused or lost; pushes held back for it may now reveal a gap. */
  failed() {
    this.inFlight = false;
    this.drain();
    return this.buffer.size === 0 ? STALE : GAP;
  }

  /**
   * Apply the `changes` of a `join` with `since` (each {version, ops, by, at}, in order).
   * Returns APPLIED (or STALE if none were new), GAP if the list skips a version.
   */
  catchUp(changes) {
    let result = STALE;
    for (const change of changes) {
      if (change.version <= this.version) continue;
      if (change.version !== this.version + 1) return GAP;
      this.data = applyPatch(this.data, change.ops);
      this.version = change.version;
      result = APPLIED;
    }
    this.drain();
    return result;
  }
}
