// Checklist intents: each finds its item by id on the data it is given, so it survives a rebase.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { addItem, editItem, itemsOf, moveItem, newItemId, removeItem, setDone } from "../../static/sessions/checklist.js";
import { applyPatch } from "../../static/sessions/jsonpatch.js";

const item = (id, text = id, done = false) => ({ id, text, done });
const doc = (...ids) => ({ items: ids.map((id) => item(id)) });
const run = (intent, data) => {
  const ops = intent(data);
  return ops ? applyPatch(data, ops) : data;
};

describe("checklist intents", () => {
  it("adds an item, creating the list in an empty document", () => {
    assert.deepEqual(run(addItem("milk", "m"), {}), { items: [item("m", "milk")] });
    assert.deepEqual(run(addItem("eggs", "e"), doc("m")).items.map((i) => i.id), ["m", "e"]);
  });

  it("does not add the same item twice (a retry after a lost reply)", () => {
    assert.equal(addItem("milk", "m")(doc("m")), null);
  });

  it("edits and ticks by id, wherever the item moved", () => {
    const rebased = doc("x", "a", "b"); // someone inserted x before a and b
    assert.equal(run(editItem("b", "bread"), rebased).items[2].text, "bread");
    assert.equal(run(setDone("a", true), rebased).items[1].done, true);
    const ops = setDone("b", true)(rebased);
    assert.deepEqual(ops[0], { op: "test", path: "/items/2/id", value: "b" });
  });

  it("has nothing to do for an item that is gone or already as wanted", () => {
    assert.equal(editItem("zz", "t")(doc("a")), null);
    assert.equal(setDone("a", false)(doc("a")), null);
    assert.equal(removeItem("zz")(doc("a")), null);
    assert.equal(editItem("a", "a")(doc("a")), null);
  });

  it("removes by id", () => {
    assert.deepEqual(run(removeItem("b"), doc("a", "b", "c")).items.map((i) => i.id), ["a", "c"]);
  });

  it("moves up and down by one, clamped at the ends", () => {
    const ids = (d) => d.items.map((i) => i.id);
    assert.deepEqual(ids(run(moveItem("c", -1), doc("a", "b", "c"))), ["a", "c", "b"]);
    assert.deepEqual(ids(run(moveItem("a", 1), doc("a", "b", "c"))), ["b", "a", "c"]);
    assert.equal(moveItem("a", -1)(doc("a", "b")), null);
    assert.equal(moveItem("b", 1)(doc("a", "b")), null);
  });

  it("adds `done` to an item that lacks it", () => {
    assert.deepEqual(setDone("a", true)({ items: [{ id: "a", text: "t" }] })[1].op, "add");
  });

  it("makes distinct random ids", () => {
    const ids = new Set(Array.from({ length: 100 }, () => newItemId()));
    assert.equal(ids.size, 100);
    assert.match([...ids][0], /^[0-9a-f]{16}$/);
  });

  it("reads only well-formed items", () => {
    assert.deepEqual(itemsOf({ items: [null, 3, { id: "a" }, { text: "no id" }] }), [{ id: "a" }]);
    assert.deepEqual(itemsOf({}), []);
    assert.deepEqual(itemsOf(null), []);
  });
});
