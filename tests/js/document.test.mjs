// Gap detection: the local copy only ever moves from version v to v + 1.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { APPLIED, BUFFERED, GAP, STALE, SyncedDocument } from "../../static/sessions/document.js";
import { PatchError } from "../../static/sessions/jsonpatch.js";

const add = (n) => [{ op: "add", path: "/items/-", value: n }];
const snapshot = (version = 1, items = []) => ({ id: "s1", title: "T", version, data: { items }, role: "editor", members: [], present: [] });

describe("SyncedDocument", () => {
  it("applies the push that follows its version", () => {
    const doc = new SyncedDocument(snapshot());
    assert.equal(doc.receive(2, add("a")), APPLIED);
    assert.equal(doc.version, 2);
    assert.deepEqual(doc.data.items, ["a"]);
  });

  it("ignores a push it already has", () => {
    const doc = new SyncedDocument(snapshot(3, ["x"]));
    assert.equal(doc.receive(3, add("dup")), STALE);
    assert.equal(doc.receive(2, add("old")), STALE);
    assert.deepEqual(doc.data.items, ["x"]);
  });

  it("reports a gap when a version was skipped, without applying anything", () => {
    const doc = new SyncedDocument(snapshot(1));
    assert.equal(doc.receive(3, add("c")), GAP);
    assert.equal(doc.version, 1);
    assert.deepEqual(doc.data.items, []);
  });

  it("catches up from the changes of a join with since, then drains what was held back", () => {
    const doc = new SyncedDocument(snapshot(1));
    assert.equal(doc.receive(4, add("d")), GAP);
    const changes = [2, 3].map((version) => ({ version, ops: add(String(version)), by: { id: 2, username: "bob" }, at: "t" }));
    assert.equal(doc.catchUp(changes), APPLIED);
    assert.equal(doc.version, 4);
    assert.deepEqual(doc.data.items, ["2", "3", "d"]);
  });

  it("skips changes it already has and refuses a change list with a hole", () => {
    const doc = new SyncedDocument(snapshot(2, ["2"]));
    assert.equal(doc.catchUp([{ version: 2, ops: add("2") }]), STALE);
    assert.equal(doc.catchUp([{ version: 3, ops: add("3") }, { version: 5, ops: add("5") }]), GAP);
    assert.equal(doc.version, 3);
  });

  it("buffers a push that runs ahead of its own patch's reply", () => {
    const doc = new SyncedDocument(snapshot(1));
    doc.begin(); // our patch would make version 2
    assert.equal(doc.receive(3, add("theirs")), BUFFERED);
    assert.equal(doc.accepted(2, add("mine")), APPLIED);
    assert.equal(doc.version, 3);
    assert.deepEqual(doc.data.items, ["mine", "theirs"]);
  });

  it("reports the gap a buffered push reveals when its own patch fails", () => {
    const doc = new SyncedDocument(snapshot(1));
    doc.begin();
    doc.receive(3, add("theirs"));
    assert.equal(doc.failed(), GAP);
  });

  it("holds its own patch, rebased further on, until the pushes before it arrive", () => {
    const doc = new SyncedDocument(snapshot(1));
    doc.begin();
    assert.equal(doc.accepted(3, add("mine")), BUFFERED);
    assert.equal(doc.version, 1);
    assert.equal(doc.receive(2, add("theirs")), APPLIED);
    assert.equal(doc.version, 3);
    assert.deepEqual(doc.data.items, ["theirs", "mine"]);
  });

  it("reports the gap when a push after its own rebased patch skips the one before", () => {
    const doc = new SyncedDocument(snapshot(1));
    doc.begin();
    assert.equal(doc.accepted(3, add("mine")), BUFFERED);
    assert.equal(doc.receive(4, add("later")), GAP);
  });

  it("throws PatchError when a push does not apply (the copies diverged)", () => {
    const doc = new SyncedDocument(snapshot(1));
    assert.throws(() => doc.receive(2, [{ op: "remove", path: "/items/0" }]), PatchError);
    assert.equal(doc.version, 1);
  });

  it("knows who may edit", () => {
    assert.ok(new SyncedDocument({ ...snapshot(), role: "owner" }).canEdit);
    assert.ok(new SyncedDocument({ ...snapshot(), role: "editor" }).canEdit);
    assert.ok(!new SyncedDocument({ ...snapshot(), role: "viewer" }).canEdit);
  });

  it("keeps role and members over a snapshot that lacks them", () => {
    const doc = new SyncedDocument(snapshot());
    doc.reset({ id: "s1", version: 7, data: { items: [] } });
    assert.equal(doc.role, "editor");
    assert.equal(doc.version, 7);
  });
});
