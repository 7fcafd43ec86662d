// The community RFC 6902 test suite (json-patch/json-patch-tests, vendored under
// tests/data/json_patch_tests) against static/sessions/jsonpatch.js, prepared exactly as
// tests/test_json_patch_suite.py prepares it for the server's patch path, so both ends agree case by
// case: a case on an object document runs as it is; one on another document, or expecting the
// whole document to become a non-object (a session document is always an object, and the server
// refuses it as it is), runs with its document under "d" and its valid pointers prefixed with /d;
// the cases of exceptions.json end as that file says (docs/protocol.md, section 7, "JSON Patch").
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { PatchError, applyPatch } from "../../static/sessions/jsonpatch.js";

const suite = join(dirname(fileURLToPath(import.meta.url)), "..", "data", "json_patch_tests");
const read = (name) => JSON.parse(readFileSync(join(suite, name), "utf8"));
const exceptions = read("exceptions.json");

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);
const wrapped = (c) => !isObject(c.doc) || ("expected" in c && !isObject(c.expected));
const prefixed = (pointer) => (typeof pointer === "string" && (pointer === "" || pointer.startsWith("/")) ? "/d" + pointer : pointer);

function wrap(c) {
  const patch = c.patch.map((op) => {
    const out = { ...op };
    for (const member of ["path", "from"]) if (member in out) out[member] = prefixed(out[member]);
    return out;
  });
  const out = { ...c, doc: { d: c.doc }, patch };
  if ("expected" in c) out.expected = { d: c.expected };
  return out;
}

function outcome(c) {
  try {
    return applyPatch(c.doc, c.patch);
  } catch (err) {
    if (err instanceof PatchError) return err;
    throw err;
  }
}

const cases = [];
for (const name of ["tests.json", "spec_tests.json"]) {
  read(name).forEach((c, index) => cases.push([`${name}:${index}:${(c.comment ?? "").slice(0, 50)}`, c]));
}

describe("json-patch-tests against jsonpatch.js", () => {
  it("has every case, and the same number needing the wrapper as the server's run", () => {
    assert.equal(cases.length, 112);
    assert.equal(cases.filter(([, c]) => wrapped(c)).length, 36);
  });

  for (const [id, original] of cases) {
    it(id, () => {
      const c = wrapped(original) ? wrap(original) : original;
      const result = outcome(c);
      const exception = exceptions[original.comment ?? ""];
      if (exception) {
        assert.deepEqual(result, wrapped(original) ? { d: exception.expected } : exception.expected);
      } else if ("error" in c) {
        assert.ok(result instanceof PatchError, `applied, but the suite expects: ${c.error}`);
      } else {
        assert.ok(!(result instanceof PatchError), String(result));
        if ("expected" in c) assert.deepEqual(result, c.expected);
      }
    });
  }
});
