// The history panel's words for the changes the `revisions` state summarises (history-panel.js).
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { describeChange, describeOp, pathText, valueText } from "../../static/sessions/history-panel.js";

const change = (ops, extra = {}) => ({ version: 3, by: { id: 1, username: "alice" }, at: "2026-01-01T00:00:00Z", op_count: ops.length, ops, ...extra });

describe("history words", () => {
  it("names checklist paths as items, others as their keys", () => {
    assert.equal(pathText("/items/0"), "item 1");
    assert.equal(pathText("/items/2/done"), "item 3’s done");
    assert.equal(pathText(""), "the whole document");
    assert.equal(pathText("/budget/total"), "budget/total");
    assert.equal(pathText("/a~1b/c~0d"), "a/b/c~d");
  });

  it("shows a string or an item's text in quotes, even when the preview was cut", () => {
    assert.equal(valueText('"milk"'), "“milk”");
    assert.equal(valueText('{"id":"a1","text":"Tea","done":false}'), "“Tea”");
    assert.equal(valueText('{"id":"a1","text":"Tea","done":fa…'), "“Tea”", "the text is whole; what follows was cut");
    assert.equal(valueText('{"id":"a1","text":"A very long te…'), "“A very long te…”");
    assert.equal(valueText('"line\\nbreak and mo…'), "“line\nbreak and mo…”");
    assert.equal(valueText("450"), "450");
    assert.equal(valueText('{"a":[1,2,3],"b":"x…'), '{"a":[1,2,3],"b":"x…');
  });

  it("describes the page's own changes as a person would", () => {
    const test = { op: "test", path: "/items/0/id", value: '"a1"' };
    assert.equal(describeOp(test), null, "a test checks, it does not change");
    assert.equal(describeOp({ op: "replace", path: "/items/0/done", value: "true" }), "ticked item 1");
    assert.equal(describeOp({ op: "replace", path: "/items/0/done", value: "false" }), "unticked item 1");
    assert.equal(describeOp({ op: "replace", path: "/items/1/text", value: '"Oat milk"' }), "changed item 2 to “Oat milk”");
    assert.equal(describeOp({ op: "add", path: "/items/-", value: '{"id":"x","text":"Tea","done":false}' }), "added “Tea”");
    assert.equal(describeOp({ op: "remove", path: "/items/1" }), "removed item 2");
    assert.equal(describeOp({ op: "move", from: "/items/2", path: "/items/0" }), "moved item 3 to item 1");
    assert.equal(describeOp({ op: "replace", path: "/budget", value: "450" }), "set budget to 450");
    assert.equal(describeChange(change([test, { op: "remove", path: "/items/0" }])), "removed item 1");
    assert.equal(describeChange(change([test])), "checked the list (no change)");
  });

  it("says how many operations were not summarised, and names a restore", () => {
    const ops = Array.from({ length: 5 }, (_, i) => ({ op: "add", path: `/k${i}`, value: String(i) }));
    const text = describeChange(change(ops, { op_count: 12 }));
    assert.match(text, /^added k0: 0, added k1: 1, .*, 7 more operations$/);
    assert.equal(describeChange(change([{ op: "replace", path: "", value: "{…" }], { restored: 2 })), "restored revision 2");
  });
});
