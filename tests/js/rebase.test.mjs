// static/sessions/rebase.js: the cases it shares with the server's sessions_app/rebase.py
// (tests/rebase_cases.json), and random concurrent patches converging (tests/test_rebase_port.py
// checks, from the Python side, that both give the same operations on random cases).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";

import { applyPatch } from "../../static/sessions/jsonpatch.js";
import { RebaseConflict, RebaseTooCostly, formatPointer, parsePointer, rebase } from "../../static/sessions/rebase.js";

const { cases } = JSON.parse(readFileSync(new URL("../rebase_cases.json", import.meta.url), "utf8"));

describe("rebase: the shared cases", () => {
  for (const c of cases) {
    it(c.name, () => {
      const current = c.changes.reduce((doc, ops) => applyPatch(doc, ops), c.base);
      if (c.rebased === "conflict") {
        assert.throws(() => rebase(c.ops, c.changes, () => current), RebaseConflict);
        return;
      }
      const rebased = rebase(c.ops, c.changes, () => current);
      assert.deepEqual(rebased, c.rebased);
      assert.deepEqual(applyPatch(current, rebased), c.final);
    });
  }
});

describe("rebase", () => {
  it("round-trips escaped pointers and refuses malformed ones", () => {
    assert.deepEqual(parsePointer("/a~1b/c~0d/"), ["a/b", "c~d", ""]);
    assert.equal(formatPointer(["a/b", "c~d", ""]), "/a~1b/c~0d/");
    for (const bad of ["a", "/a~2", "/a~", 5, null]) assert.throws(() => parsePointer(bad), RebaseConflict);
  });

  it("bounds its work", () => {
    const changes = Array.from({ length: 200 }, (_, i) => [{ op: "add", path: `/k${i}`, value: i }]);
    const ops = Array.from({ length: 200 }, (_, i) => ({ op: "add", path: `/m${i}`, value: i }));
    assert.throws(() => rebase(ops, changes, () => ({}), { maxSteps: 10_000 }), RebaseTooCostly);
    assert.equal(rebase(ops, changes, () => ({}), { maxSteps: 1_000_000 }).length, 200);
  });

  it("never reads the document when nothing happened since", () => {
    const ops = [{ op: "add", path: "/a/0", value: 1 }];
    assert.deepEqual(rebase(ops, [], () => assert.fail("read")), ops);
  });
});

// A small seeded generator (xorshift32): the schedules are the same on every run.
function rng(seed) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
  return { next, int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)), pick: (list) => list[Math.floor(next() * list.length)] };
}

function randomPatch(r, data, counter) {
  const ops = [];
  for (let n = r.int(1, 3); n > 0; n -= 1) {
    const items = data.items;
    const kinds = ["append", "meta", ...(items.length ? ["toggle", "remove", "insert", "guard"] : [])];
    const kind = r.pick(kinds);
    const i = r.int(0, Math.max(0, items.length - 1));
    counter.n += 1;
    let made;
    if (kind === "append") made = [{ op: "add", path: "/items/-", value: { id: `n${counter.n}`, done: false } }];
    else if (kind === "meta") made = [{ op: "add", path: `/meta/${r.pick(["0", "1", "x"])}`, value: r.int(0, 9) }];
    else if (kind === "toggle") made = [{ op: "replace", path: `/items/${i}/done`, value: r.next() < 0.5 }];
    else if (kind === "remove") made = [{ op: "remove", path: `/items/${i}` }];
    else if (kind === "insert") made = [{ op: "add", path: `/items/${i}`, value: { id: `n${counter.n}`, done: false } }];
    else made = [{ op: "test", path: `/items/${i}/id`, value: items[i].id }, { op: "replace", path: `/items/${i}/done`, value: true }];
    data = applyPatch(data, made);
    ops.push(...made);
  }
  return ops;
}

describe("rebase: random schedules", () => {
  it("every client converges to the server's document, which is the initial one with the applied operations in order", () => {
    let accepted = 0;
    let conflicts = 0;
    for (let seed = 1; seed <= 2000; seed += 1) {
      const r = rng(seed);
      const initial = { items: Array.from({ length: r.int(0, 4) }, (_, n) => ({ id: `i${n}`, done: false })), meta: {} };
      const history = [initial];
      const log = [];
      const counter = { n: 0 };
      const seen = [0, 0, 0];
      for (let step = r.int(2, 8); step > 0; step -= 1) {
        const who = r.int(0, seen.length - 1);
        seen[who] = r.int(seen[who], log.length);
        const ops = randomPatch(r, history[seen[who]], counter);
        const current = history[history.length - 1];
        let applied;
        try {
          applied = rebase(ops, log.slice(seen[who]), () => current);
          history.push(applyPatch(current, applied));
        } catch (err) {
          if (!(err instanceof RebaseConflict)) throw err;
          conflicts += 1;
          continue;
        }
        log.push(applied);
        accepted += 1;
        seen[who] = log.length;
      }
      const replayed = log.reduce((doc, ops) => applyPatch(doc, ops), initial);
      assert.deepEqual(replayed, history[history.length - 1], `seed ${seed}`);
      for (const version of seen) {
        assert.deepEqual(log.slice(version).reduce((doc, ops) => applyPatch(doc, ops), history[version]), replayed, `seed ${seed}`);
      }
    }
    assert.ok(accepted > conflicts, `accepted ${accepted}, conflicts ${conflicts}`);
  });
});
