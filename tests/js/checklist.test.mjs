// Checklist intents: each finds its item by id on the data it is given, so it survives a rebase.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  EditConflict,
  addEntry,
  addItem,
  addText,
  editItem,
  editText,
  entriesOf,
  itemsOf,
  listShape,
  moveAfter,
  moveItem,
  moveText,
  newItemId,
  otherFields,
  removeItem,
  removeText,
  revive,
  setDone,
  summarise,
} from "../../static/sessions/checklist.js";
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

  it("anchors a move made on the list the user sees: after a rebase it means the same, and is done once", () => {
    const ids = (d) => d.items.map((i) => i.id);
    const seen = doc("a", "b", "c");
    const down = moveItem("a", 1, seen); // "a after b"
    assert.deepEqual(down.change, { type: "moveAfter", id: "a", after: "b" });
    assert.deepEqual(ids(run(down, seen)), ["b", "a", "c"]);
    assert.equal(down(run(down, seen)), null, "already there: nothing to do (a retry)");
    assert.deepEqual(ids(run(down, doc("x", "a", "b", "c"))), ["x", "b", "a", "c"], "rebased on an insert above");
    assert.deepEqual(ids(run(moveItem("c", -1, seen), seen)), ["a", "c", "b"]);
    assert.deepEqual(ids(run(moveItem("b", -1, seen), seen)), ["b", "a", "c"], "to the top");
    assert.equal(moveAfter("a", "gone")(seen), null);
  });

  it("makes a conflict of an edit whose text someone else changed meanwhile", () => {
    const data = { items: [item("a", "Soy milk")] };
    assert.throws(() => editItem("a", "Oat milk", "Milk")(data), (err) => err instanceof EditConflict && err.theirs === "Soy milk");
    assert.equal(editItem("a", "Oat milk", "Soy milk")(data)[1].value, "Oat milk", "made on their text: applies");
    assert.equal(editItem("a", "Oat milk")(data)[1].value, "Oat milk", "without `from` the edit wins");
  });

  it("describes every intent so that it can be stored and revived", () => {
    const data = { items: [item("a"), item("b")] };
    for (const intent of [addItem("t", "n"), editItem("a", "x", "a"), setDone("a", true), removeItem("a"), moveItem("a", 1, data), moveItem("a", 1)]) {
      const copy = revive(JSON.parse(JSON.stringify(intent.change)));
      assert.deepEqual(copy(data), intent(data), intent.change.type);
    }
    const strings = { items: ["milk", "eggs"] };
    for (const intent of [addText("x"), editText(0, "milk", "oat milk"), removeText(1, "eggs"), moveText(1, "eggs", -1)]) {
      assert.deepEqual(revive(JSON.parse(JSON.stringify(intent.change)))(strings), intent(strings), intent.change.type);
    }
    assert.equal(revive({ type: "format_disk" }), null);
    assert.equal(revive({ type: "constructor" }), null);
  });
});

describe("documents the page did not make", () => {
  it("reads the README's list of strings, and adds in the same shape (never a mixed array)", () => {
    const readme = { items: ["milk"] };
    assert.equal(listShape(readme), "strings");
    assert.deepEqual(entriesOf(readme).map((e) => [e.kind, e.text]), [["text", "milk"]]);
    assert.deepEqual(run(addEntry(readme, "eggs"), readme), { items: ["milk", "eggs"] });
    assert.deepEqual(run(addEntry({ items: [] }, "eggs", "e"), { items: [] }).items, [item("e", "eggs")]);
    assert.deepEqual(run(addEntry({}, "eggs", "e"), {}), { items: [item("e", "eggs")] });
  });

  it("edits, moves and removes strings by value near their place, guarded by a test", () => {
    const data = { items: ["milk", "eggs", "milk"] };
    assert.deepEqual(editText(2, "milk", "oat milk")(data), [
      { op: "test", path: "/items/2", value: "milk" },
      { op: "replace", path: "/items/2", value: "oat milk" },
    ]);
    assert.deepEqual(run(editText(1, "eggs", "6 eggs"), { items: ["bread", "milk", "eggs"] }).items, ["bread", "milk", "6 eggs"], "found after a shift");
    assert.equal(editText(0, "milk", "oat milk")({ items: ["oat milk"] }), null, "already done");
    assert.throws(() => editText(0, "milk", "oat milk")({ items: ["soy milk"] }), EditConflict);
    assert.deepEqual(run(removeText(1, "eggs"), data).items, ["milk", "milk"]);
    assert.deepEqual(run(moveText(1, "eggs", -1), data).items, ["eggs", "milk", "milk"]);
  });

  it("shows numbers, nested objects and other members readably", () => {
    const data = { items: [3, { name: "tea", tags: ["a", "b"] }, null, item("i")], owner: { name: "x" }, n: 1 };
    assert.deepEqual(entriesOf(data).map((e) => [e.kind, e.text]), [
      ["other", "3"],
      ["other", "name: tea, tags: a, b"],
      ["other", "null"],
      ["item", "i"],
    ]);
    assert.deepEqual(otherFields(data).map(([k]) => k), ["owner", "n"]);
    assert.deepEqual(otherFields({ items: "not a list" }).map(([k]) => k), ["items"]);
    assert.equal(listShape({ items: "not a list" }), "foreign");
    assert.equal(listShape({ title: "x" }), "none");
    assert.equal(summarise({ a: { b: { c: 1 } } }), "a: b: {…}");
  });
});
