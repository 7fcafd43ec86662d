// RFC 6902 apply, checked against the examples of RFC 6902 appendix A and RFC 6901 section 5.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { PatchError, applyPatch, deepEqual, formatPointer, getValue, parsePointer } from "../../static/sessions/jsonpatch.js";

describe("JSON Pointer (RFC 6901)", () => {
  const doc = { foo: ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3, "g|h": 4, "i\\j": 5, 'k"l': 6, " ": 7, "m~n": 8 };

  it("resolves the examples of section 5", () => {
    assert.deepEqual(getValue(doc, ""), doc);
    assert.deepEqual(getValue(doc, "/foo"), ["bar", "baz"]);
    assert.equal(getValue(doc, "/foo/0"), "bar");
    assert.equal(getValue(doc, "/"), 0);
    assert.equal(getValue(doc, "/a~1b"), 1);
    assert.equal(getValue(doc, "/m~0n"), 8);
    assert.equal(getValue(doc, "/ "), 7);
  });

  it("round-trips escaped tokens", () => {
    assert.deepEqual(parsePointer(formatPointer(["a/b", "m~n", "0"])), ["a/b", "m~n", "0"]);
  });

  it("refuses malformed pointers and indexes", () => {
    assert.throws(() => parsePointer("foo"), PatchError);
    assert.throws(() => parsePointer("/a~2"), PatchError);
    assert.throws(() => getValue(doc, "/foo/01"), PatchError);
    assert.throws(() => getValue(doc, "/foo/2"), PatchError);
    assert.throws(() => getValue(doc, "/nope"), PatchError);
  });
});

describe("applyPatch (RFC 6902 appendix A)", () => {
  const cases = [
    ["A.1 add an object member", { foo: "bar" }, [{ op: "add", path: "/baz", value: "qux" }], { baz: "qux", foo: "bar" }],
    ["A.2 add an array element", { foo: ["bar", "baz"] }, [{ op: "add", path: "/foo/1", value: "qux" }], { foo: ["bar", "qux", "baz"] }],
    ["A.3 remove an object member", { baz: "qux", foo: "bar" }, [{ op: "remove", path: "/baz" }], { foo: "bar" }],
    ["A.4 remove an array element", { foo: ["bar", "qux", "baz"] }, [{ op: "remove", path: "/foo/1" }], { foo: ["bar", "baz"] }],
    ["A.5 replace a value", { baz: "qux", foo: "bar" }, [{ op: "replace", path: "/baz", value: "boo" }], { baz: "boo", foo: "bar" }],
    [
      "A.6 move a value",
      { foo: { bar: "baz", waldo: "fred" }, qux: { corge: "grault" } },
      [{ op: "move", from: "/foo/waldo", path: "/qux/thud" }],
      { foo: { bar: "baz" }, qux: { corge: "grault", thud: "fred" } },
    ],
    ["A.7 move an array element", { foo: ["all", "grass", "cows", "eat"] }, [{ op: "move", from: "/foo/1", path: "/foo/3" }], { foo: ["all", "cows", "eat", "grass"] }],
    [
      "A.8 test a value (success)",
      { baz: "qux", foo: ["a", 2, "c"] },
      [{ op: "test", path: "/baz", value: "qux" }, { op: "test", path: "/foo/1", value: 2 }],
      { baz: "qux", foo: ["a", 2, "c"] },
    ],
    ["A.10 add a nested member object", { foo: "bar" }, [{ op: "add", path: "/child", value: { grandchild: {} } }], { foo: "bar", child: { grandchild: {} } }],
    ["A.11 ignore unrecognised elements", { foo: "bar" }, [{ op: "add", path: "/baz", value: "qux", xyz: 123 }], { foo: "bar", baz: "qux" }],
    ["A.14 ~ escape ordering", { "/": 9, "~1": 10 }, [{ op: "test", path: "/~01", value: 10 }], { "/": 9, "~1": 10 }],
    ["A.16 add an array value", { foo: ["bar"] }, [{ op: "add", path: "/foo/-", value: ["abc", "def"] }], { foo: ["bar", ["abc", "def"]] }],
    ["copy", { a: { b: 1 } }, [{ op: "copy", from: "/a", path: "/c" }], { a: { b: 1 }, c: { b: 1 } }],
    ["replace the whole document", { a: 1 }, [{ op: "replace", path: "", value: { b: 2 } }], { b: 2 }],
    ["falsy values are values", { a: 1 }, [{ op: "add", path: "/z", value: 0 }, { op: "add", path: "/e", value: "" }, { op: "add", path: "/f", value: false }], { a: 1, z: 0, e: "", f: false }],
  ];
  for (const [name, doc, ops, expected] of cases) {
    it(name, () => assert.deepEqual(applyPatch(doc, ops), expected));
  }

  const failures = [
    ["A.9 test a value (error)", { baz: "qux" }, [{ op: "test", path: "/baz", value: "bar" }]],
    ["A.12 add to a nonexistent target", { foo: "bar" }, [{ op: "add", path: "/baz/bat", value: "qux" }]],
    ["A.15 comparing strings and numbers", { "/": 9, "~1": 10 }, [{ op: "test", path: "/~01", value: "10" }]],
    ["remove a missing member", { a: 1 }, [{ op: "remove", path: "/b" }]],
    ["replace a missing member", { a: 1 }, [{ op: "replace", path: "/b", value: 2 }]],
    ["index past the end", { a: [1] }, [{ op: "add", path: "/a/2", value: 2 }]],
    ["move into its own child", { a: { b: {} } }, [{ op: "move", from: "/a", path: "/a/b/c" }]],
    ["unknown op", { a: 1 }, [{ op: "frobnicate", path: "/a" }]],
    ["missing value", { a: 1 }, [{ op: "add", path: "/b" }]],
  ];
  for (const [name, doc, ops] of failures) {
    it(`${name} throws PatchError`, () => assert.throws(() => applyPatch(doc, ops), PatchError));
  }

  it("is atomic: a failing op leaves the input untouched", () => {
    const doc = { items: [{ id: "a" }] };
    const before = structuredClone(doc);
    assert.throws(() => applyPatch(doc, [{ op: "add", path: "/items/-", value: { id: "b" } }, { op: "test", path: "/items/0/id", value: "x" }]), PatchError);
    assert.deepEqual(doc, before);
  });

  it("never mutates the input, even on success", () => {
    const doc = { items: [1, 2] };
    applyPatch(doc, [{ op: "remove", path: "/items/0" }]);
    assert.deepEqual(doc, { items: [1, 2] });
  });

  it("reports the index of the failing op", () => {
    assert.throws(() => applyPatch({}, [{ op: "add", path: "/a", value: 1 }, { op: "remove", path: "/b" }]), /operation 1/);
  });

  it("compares objects structurally in test", () => {
    assert.ok(deepEqual({ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 }));
    assert.ok(!deepEqual({ a: 1 }, { a: 1, b: undefined }));
    assert.ok(!deepEqual([1], { 0: 1 }));
  });
});
